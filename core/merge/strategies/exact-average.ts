import { adapterLike, validateInputs } from '../common.ts';
import { gramOfColumns, pivotedCholesky, symmetricEigen } from '../linalg.ts';
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
  // Columns of Asᵀ (length inDim) and of Bs (length outDim), one per stacked rank unit.
  const aCols = new Float32Array(n * inDim);
  const bCols = new Float32Array(n * outDim);
  active.forEach((input, slot) => {
    const { a, b } = pairs[input];
    const w = weights[input];
    aCols.set(a, slot * r * inDim); // rows of A are the columns of Aᵀ
    for (let k = 0; k < r; k++) {
      const col = (slot * r + k) * outDim;
      for (let o = 0; o < outDim; o++) bCols[col + o] = w * b[o * r + k];
    }
  });
  const gA = gramOfColumns(aCols, inDim, n);
  const gB = gramOfColumns(bCols, outDim, n);
  const { l, rank: k, pivots } = pivotedCholesky(gA, n);
  const outA = new Float32Array(r * inDim);
  const outB = new Float32Array(outDim * r);
  if (k === 0) return { a: outA, b: outB, inDim, outDim };
  // core = Lᵀ G_B L (k × k)
  const gbl = new Float64Array(n * k);
  for (let i = 0; i < n; i++) {
    for (let t = 0; t < n; t++) {
      const g = gB[i * n + t];
      if (g === 0) continue;
      for (let j = 0; j < k; j++) gbl[i * k + j] += g * l[t * k + j];
    }
  }
  const core = new Float64Array(k * k);
  for (let i = 0; i < n; i++) {
    for (let p = 0; p < k; p++) {
      const lip = l[i * k + p];
      if (lip === 0) continue;
      for (let j = 0; j < k; j++) core[p * k + j] += lip * gbl[i * k + j];
    }
  }
  const { values, vectors } = symmetricEigen(core, k);
  const keep = Math.min(r, k);
  const top = values[0];
  // T = L·Z_r·M^(-1/4) (n × keep) gives B' = Bs·T;  R = M^(1/4)·Z_rᵀ·L₁₁⁻¹ (keep × k) gives A' = R·As[pivot rows].
  const tMat = new Float64Array(n * keep);
  const rMat = new Float64Array(keep * k);
  for (let c = 0; c < keep; c++) {
    const mu = values[c];
    if (!(mu > top * 1e-13) || !(mu > 0)) continue;
    const quarter = Math.sqrt(Math.sqrt(mu));
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < k; j++) s += l[i * k + j] * vectors[j * k + c];
      tMat[i * keep + c] = s / quarter;
    }
    // Solve yᵀ·L₁₁ = zᵀ, i.e. L₁₁ᵀ·y = z, where L₁₁[p][j] = l[pivots[p]][j] is lower triangular.
    const y = new Float64Array(k);
    for (let p = k - 1; p >= 0; p--) {
      let s = vectors[p * k + c];
      for (let q = p + 1; q < k; q++) s -= l[pivots[q] * k + p] * y[q];
      y[p] = s / l[pivots[p] * k + p];
    }
    for (let p = 0; p < k; p++) rMat[c * k + p] = quarter * y[p];
  }
  // B'[o][c] = Σ_i Bs[o][i]·T[i][c]
  for (let i = 0; i < n; i++) {
    const col = i * outDim;
    for (let c = 0; c < keep; c++) {
      const t = tMat[i * keep + c];
      if (t === 0) continue;
      for (let o = 0; o < outDim; o++) outB[o * r + c] += bCols[col + o] * t;
    }
  }
  // A'[c][:] = Σ_p R[c][p]·As[pivots[p]][:]
  for (let c = 0; c < keep; c++) {
    const row = c * inDim;
    const acc = new Float64Array(inDim);
    for (let p = 0; p < k; p++) {
      const f = rMat[c * k + p];
      if (f === 0) continue;
      const src = pivots[p] * inDim;
      for (let j = 0; j < inDim; j++) acc[j] += f * aCols[src + j];
    }
    for (let j = 0; j < inDim; j++) outA[row + j] = acc[j];
  }
  return { a: outA, b: outB, inDim, outDim };
}
