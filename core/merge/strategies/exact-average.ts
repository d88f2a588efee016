import { adapterLike, validateInputs } from '../common.ts';
import { gramOfColumns, pivotedCholesky, rowsDotColumns, rowsDotRows, symmetricEigenTop } from '../linalg.ts';
import type { LoraPair } from '../../model/adapter.ts';
import type { MergeStrategy } from '../types.ts';

/**
 * exact-average: the weighted mean of the products, ΔW̄ = Σ wᵢ·(alpha/r)·BᵢAᵢ, returned as its best rank-r
 * factorisation (Eckart–Young); exactly ΔW̄ when its rank is ≤ r (for example when all peers share A, or N·r ≤ r).
 *
 * Per module, without ever forming an out×in matrix:
 *   Bs = [w₁B₁ | … | w_N B_N]  (out × Nr),  As = [A₁; …; A_N]  (Nr × in),  ΔW̄/scale = Bs·As.
 *   G_A = As·Asᵀ = L·Lᵀ (pivoted Cholesky; rank deficiency, e.g. identical inputs, just lowers L's width k),
 *   so As = L·Qᵀ with Q (in × k) orthonormal and Bs·As = (Bs·L)·Qᵀ.
 *   (Bs·L)ᵀ(Bs·L) = Lᵀ·G_B·L = Z·M·Zᵀ (symmetric eigen, k × k), G_B = Bsᵀ·Bs, so Bs·L = U·√M·Zᵀ.
 *   Keep the r largest: B' = Bs·L·Z_r·M_r^(-1/4)… written as B' = U_r·M_r^(1/4), A' = M_r^(1/4)·Z_rᵀ·Qᵀ, i.e. the
 *   singular values are split evenly between the factors (a balanced, canonical factorisation).
 * This is the "QR both stacks, SVD the small core" construction with the orthonormal bases taken from the Gram
 * matrices: the Grams cost (out + in)·(Nr)²/2 multiply-adds, half of Householder QR on the stacks, and with
 * float32 inputs the squared condition number of a float64 Gram loses nothing that the inputs had. Directions whose
 * eigenvalue is below 1e-13 of the largest are treated as zero (the output factor rows/columns are zero there).
 *
 * Only ΔW is meaningful in the output (`output: 'product'`): the factors are a re-factorisation, not an average of
 * the inputs' factors.
 */
export const exactAverage: MergeStrategy = {
  name: 'exact-average',
  description: 'weighted mean of the products (alpha/r)·B·A, re-factorised to rank r exactly without a dense matrix',
  reference: 'https://arxiv.org/abs/2410.01463',
  params: [],
  selfSpecial: false,
  output: 'product',
  merge(inputs) {
    const weights = validateInputs(inputs);
    const template = inputs[0].adapter;
    const r = template.config.r;
    const modules = new Map<string, LoraPair>();
    for (const name of [...template.modules.keys()].sort()) {
      const pairs = inputs.map((input) => input.adapter.modules.get(name)!);
      modules.set(name, averageProducts(pairs, weights, r));
    }
    return adapterLike(template, modules);
  },
};

/** Rank-r balanced factors of Σ wᵢ BᵢAᵢ (scale excluded: the output keeps the inputs' alpha and r). */
export function averageProducts(pairs: readonly LoraPair[], weights: ArrayLike<number>, r: number): LoraPair {
  const { inDim, outDim } = pairs[0];
  const active: number[] = [];
  for (let i = 0; i < pairs.length; i++) if (weights[i] !== 0) active.push(i);
  const n = active.length * r;
  // As (n × in) row by row, and Bs (out × n) both by columns (for its Gram) and by rows (for B' = Bs·T).
  const aRows = new Float32Array(n * inDim);
  const bCols = new Float32Array(n * outDim);
  const bRows = new Float32Array(outDim * n);
  active.forEach((input, slot) => {
    const { a, b } = pairs[input];
    const w = weights[input];
    aRows.set(a, slot * r * inDim);
    for (let o = 0; o < outDim; o++) {
      for (let k = 0; k < r; k++) {
        const v = w * b[o * r + k];
        bRows[o * n + slot * r + k] = v;
        bCols[(slot * r + k) * outDim + o] = v;
      }
    }
  });
  const gA = gramOfColumns(aRows, inDim, n);
  const gB = gramOfColumns(bCols, outDim, n);
  const { l, rank: k, pivots } = pivotedCholesky(gA, n);
  const outA = new Float32Array(r * inDim);
  const outB = new Float32Array(outDim * r);
  if (k === 0) return { a: outA, b: outB, inDim, outDim };
  const core = congruence(l, n, k, gB);
  const keep = Math.min(r, k);
  const { values, vectors } = symmetricEigenTop(core, k, keep);
  const top = values[0];
  // T = L·Z_r·M^(-1/4) (n × keep, stored by columns) gives B' = Bs·T;
  // R = M^(1/4)·Z_rᵀ·L₁₁⁻¹ (keep × k, row-major) gives A' = R·As[pivot rows].
  const tCols = new Float64Array(keep * n);
  const rMat = new Float64Array(keep * k);
  // Eigenvector c as a contiguous row, and L₁₁ᵀ[p][q] = l[pivots[q]][p] row-major, so both loops below are contiguous.
  const z = new Float64Array(k);
  const l11t = new Float64Array(k * k);
  for (let q = 0; q < k; q++) for (let p = 0; p <= q; p++) l11t[p * k + q] = l[pivots[q] * k + p];
  const y = new Float64Array(k);
  for (let c = 0; c < keep; c++) {
    const mu = values[c];
    if (!(mu > top * 1e-13) || !(mu > 0)) continue;
    const quarter = Math.sqrt(Math.sqrt(mu));
    for (let j = 0; j < k; j++) z[j] = vectors[j * keep + c];
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < k; j++) s += l[i * k + j] * z[j];
      tCols[c * n + i] = s / quarter;
    }
    // Solve yᵀ·L₁₁ = zᵀ, i.e. L₁₁ᵀ·y = z (upper triangular), where L₁₁[p][j] = l[pivots[p]][j].
    for (let p = k - 1; p >= 0; p--) {
      let s = z[p];
      for (let q = p + 1; q < k; q++) s -= l11t[p * k + q] * y[q];
      y[p] = s / l11t[p * k + p];
    }
    for (let p = 0; p < k; p++) rMat[c * k + p] = quarter * y[p];
  }
  // B'[o][c] = Σ_i Bs[o][i]·T[i][c]: rows of Bs against columns of T.
  const b64 = new Float64Array(outDim * r);
  rowsDotColumns(bRows, outDim, n, tCols, keep, b64, r, 1);
  outB.set(b64);
  // A'[c][j] = Σ_p R[c][p]·As[pivots[p]][j]: the pivot rows of As, transposed so that each column j is contiguous,
  // against the rows of R.
  const asPivotT = new Float32Array(inDim * k);
  for (let p = 0; p < k; p++) {
    const src = pivots[p] * inDim;
    for (let j = 0; j < inDim; j++) asPivotT[j * k + p] = aRows[src + j];
  }
  const a64 = new Float64Array(r * inDim);
  rowsDotColumns(asPivotT, inDim, k, rMat, keep, a64, 1, inDim);
  outA.set(a64);
  return { a: outA, b: outB, inDim, outDim };
}

/**
 * Lᵀ·G·L (k × k, symmetric) for L (n × k, row-major) and a symmetric G (n × n), as two products of contiguous
 * rows: (G·L)ᵀ = rows of Lᵀ against rows of G (G's rows are its columns), then Lᵀ against (G·L)ᵀ.
 */
function congruence(l: Float64Array, n: number, k: number, g: Float64Array): Float64Array {
  const lt = new Float64Array(k * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) lt[j * n + i] = l[i * k + j];
  const glT = new Float64Array(k * n);
  rowsDotRows(lt, k, g, n, n, glT);
  const core = new Float64Array(k * k);
  rowsDotRows(lt, k, glT, k, n, core);
  // Both triangles were computed separately; make the result exactly symmetric for the eigensolver.
  for (let p = 0; p < k; p++) for (let q = p + 1; q < k; q++) core[q * k + p] = core[p * k + q];
  return core;
}
