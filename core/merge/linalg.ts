/**
 * The linear algebra the merge strategies need, on plain typed arrays (no tfjs): Gram matrices of tall factor
 * stacks, register-tiled products of contiguous rows, Householder QR, pivoted Cholesky, a symmetric eigensolver
 * (full, or the top few eigenpairs by inverse iteration), a one-sided Jacobi SVD for small matrices, a randomised
 * SVD with power iterations, and the Hungarian assignment.
 *
 * Conventions: small matrices are Float64Array row-major; a tall matrix given "by columns" is a flat array of
 * `cols` columns of length `rows` each (column j at offset j*rows), which keeps every inner loop contiguous.
 */
import { gaussianRandom } from './common.ts';
import { createRng } from '../util/random.ts';
import { sharedKernels, type Kernels } from './simd.ts';

export class LinalgError extends Error {
  static override readonly name = 'LinalgError';
  override readonly name = LinalgError.name;
}

/**
 * G = XᵀX (n×n, row-major, float64) for X given by n columns of length m. Blocks of 4×2 dot products share their
 * loads (6 loads per 8 multiply-adds), which measured 2.5× faster than 2×2 blocks in V8; leftovers go one by one.
 */
export function gramOfColumns(columns: Float32Array | Float64Array, m: number, n: number): Float64Array {
  const n4 = n - (n % 4);
  const n2 = n - (n % 2);
  const kernels = columns instanceof Float32Array ? sharedKernels() : null;
  const g = kernels ? gramTilesSimd(kernels, columns as Float32Array, m, n, n4, n2) : new Float64Array(n * n);
  for (let i = 0; kernels === null && i < n4; i += 4) {
    const x0 = i * m, x1 = x0 + m, x2 = x1 + m, x3 = x2 + m;
    for (let j = i; j < n2; j += 2) {
      const y0 = j * m, y1 = y0 + m;
      let s00 = 0, s01 = 0, s10 = 0, s11 = 0, s20 = 0, s21 = 0, s30 = 0, s31 = 0;
      for (let k = 0; k < m; k++) {
        const b0 = columns[y0 + k], b1 = columns[y1 + k];
        const a0 = columns[x0 + k], a1 = columns[x1 + k], a2 = columns[x2 + k], a3 = columns[x3 + k];
        s00 += a0 * b0; s01 += a0 * b1;
        s10 += a1 * b0; s11 += a1 * b1;
        s20 += a2 * b0; s21 += a2 * b1;
        s30 += a3 * b0; s31 += a3 * b1;
      }
      g[i * n + j] = s00; g[i * n + j + 1] = s01;
      g[(i + 1) * n + j] = s10; g[(i + 1) * n + j + 1] = s11;
      g[(i + 2) * n + j] = s20; g[(i + 2) * n + j + 1] = s21;
      g[(i + 3) * n + j] = s30; g[(i + 3) * n + j + 1] = s31;
    }
  }
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) {
      if (i < n4 && j < n2) continue;
      let s = 0;
      const xi = i * m, yj = j * m;
      for (let k = 0; k < m; k++) s += columns[xi + k] * columns[yj + k];
      g[i * n + j] = s;
    }
  }
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) g[j * n + i] = g[i * n + j];
  return g;
}

/** The 4×2 tiles of gramOfColumns on or above the diagonal, by the SIMD kernel (one call per row of tiles). */
function gramTilesSimd(kernels: Kernels, columns: Float32Array, m: number, n: number, n4: number, n2: number): Float64Array {
  kernels.reset(m * n * 4 + n * n * 8);
  const x = kernels.alloc(m * n * 4);
  const out = kernels.alloc(n * n * 8);
  kernels.f32(x, m * n).set(columns.subarray(0, m * n));
  kernels.f64(out, n * n).fill(0);
  for (let i = 0; i < n4; i += 4) {
    const column = x + i * m * 4;
    kernels.exports.dotsF32Cols(column, 4, m, column, n2 - i, out + (i * n + i) * 8, n * 8, 8);
  }
  return kernels.f64(out, n * n).slice();
}

/**
 * Thin Householder QR of an m×n matrix given by columns (m ≥ n). Returns Q by columns (m×n, orthonormal
 * columns) and R (n×n upper triangular, row-major) with X = Q·R. Does not modify its argument.
 */
export function householderQr(columns: Float64Array, m: number, n: number): { q: Float64Array; r: Float64Array } {
  if (m < n) throw new LinalgError(`householderQr needs rows >= columns, got ${m}x${n}`);
  const w = Float64Array.from(columns.subarray(0, m * n));
  const betas = new Float64Array(n);
  const r = new Float64Array(n * n);
  for (let k = 0; k < n; k++) {
    const col = k * m;
    let norm2 = 0;
    for (let i = k; i < m; i++) norm2 += w[col + i] * w[col + i];
    const norm = Math.sqrt(norm2);
    const x0 = w[col + k];
    const alpha = x0 >= 0 ? -norm : norm;
    // v = x - alpha e1 stored in place of column k below the diagonal; beta = 2 / vᵀv.
    const v0 = x0 - alpha;
    const vv = norm2 - x0 * x0 + v0 * v0;
    w[col + k] = v0;
    betas[k] = vv > 0 ? 2 / vv : 0;
    r[k * n + k] = alpha;
    const beta = betas[k];
    if (beta === 0) {
      for (let j = k + 1; j < n; j++) r[k * n + j] = w[j * m + k];
      continue;
    }
    for (let j = k + 1; j < n; j++) {
      const cj = j * m;
      let dot = 0;
      for (let i = k; i < m; i++) dot += w[col + i] * w[cj + i];
      const f = beta * dot;
      for (let i = k; i < m; i++) w[cj + i] -= f * w[col + i];
      r[k * n + j] = w[cj + k];
    }
  }
  // Q = H_0 H_1 ... H_{n-1} applied to the first n columns of the identity, last reflector first.
  const q = new Float64Array(m * n);
  for (let j = 0; j < n; j++) q[j * m + j] = 1;
  for (let k = n - 1; k >= 0; k--) {
    const beta = betas[k];
    if (beta === 0) continue;
    const col = k * m;
    for (let j = k; j < n; j++) {
      const cj = j * m;
      let dot = 0;
      for (let i = k; i < m; i++) dot += w[col + i] * q[cj + i];
      const f = beta * dot;
      if (f !== 0) for (let i = k; i < m; i++) q[cj + i] -= f * w[col + i];
    }
  }
  return { q, r };
}

/**
 * Pivoted Cholesky of a symmetric positive semi-definite n×n matrix: G ≈ L·Lᵀ with L n×rank (row-major, rows in
 * the original order). Stops when the largest remaining diagonal is ≤ relTol × the largest initial diagonal, so a
 * rank-deficient G (for example a stack of identical factors) yields rank < n instead of failing.
 * `pivots[k]` is the row chosen at step k; the k×k block of L on rows pivots[0..rank) is lower triangular.
 */
export function pivotedCholesky(g: Float64Array, n: number, relTol = 1e-13): { l: Float64Array; rank: number; pivots: Int32Array } {
  const diag = new Float64Array(n);
  let maxDiag = 0;
  for (let i = 0; i < n; i++) {
    diag[i] = g[i * n + i];
    if (diag[i] > maxDiag) maxDiag = diag[i];
  }
  const l = new Float64Array(n * n);
  const pivots = new Int32Array(n);
  const used = new Uint8Array(n);
  let rank = 0;
  const stop = maxDiag * relTol;
  for (let k = 0; k < n; k++) {
    let p = -1;
    let best = stop;
    for (let i = 0; i < n; i++) if (!used[i] && diag[i] > best) { best = diag[i]; p = i; }
    if (p < 0 || maxDiag === 0) break;
    used[p] = 1;
    pivots[k] = p;
    const root = Math.sqrt(diag[p]);
    l[p * n + k] = root;
    for (let i = 0; i < n; i++) {
      if (used[i]) continue;
      let s = g[i * n + p];
      for (let j = 0; j < k; j++) s -= l[i * n + j] * l[p * n + j];
      const v = s / root;
      l[i * n + k] = v;
      diag[i] -= v * v;
    }
    rank++;
  }
  // Compact to n×rank.
  const out = new Float64Array(n * rank);
  for (let i = 0; i < n; i++) for (let j = 0; j < rank; j++) out[i * rank + j] = l[i * n + j];
  return { l: out, rank, pivots: pivots.slice(0, rank) };
}

/**
 * Eigen-decomposition of a symmetric n×n matrix (row-major): Householder reduction to tridiagonal form, then
 * implicit QR steps with Wilkinson shifts. Returns eigenvalues in decreasing order and the matching orthonormal
 * eigenvectors as the columns of `vectors` (row-major n×n). Does not modify its argument.
 */
export function symmetricEigen(matrix: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  const a = Float64Array.from(matrix.subarray(0, n * n));
  const z = new Float64Array(n * n);
  for (let i = 0; i < n; i++) z[i * n + i] = 1;
  const d = new Float64Array(n);
  const e = new Float64Array(Math.max(0, n - 1));
  const v = new Float64Array(n);
  const p = new Float64Array(n);
  for (let k = 0; k + 2 < n; k++) {
    // Householder vector v for x = A[k+1.., k].
    let norm2 = 0;
    for (let i = k + 1; i < n; i++) norm2 += a[i * n + k] * a[i * n + k];
    const x0 = a[(k + 1) * n + k];
    const norm = Math.sqrt(norm2);
    const alpha = x0 >= 0 ? -norm : norm;
    const v0 = x0 - alpha;
    const vv = norm2 - x0 * x0 + v0 * v0;
    if (!(vv > 0) || norm2 === x0 * x0) {
      e[k] = x0;
      continue;
    }
    const beta = 2 / vv;
    v[k + 1] = v0;
    for (let i = k + 2; i < n; i++) v[i] = a[i * n + k];
    // p = beta A22 v ; w = p - (beta/2)(pᵀv) v ; A22 -= v wᵀ + w vᵀ
    let pv = 0;
    for (let i = k + 1; i < n; i++) {
      let s = 0;
      const row = i * n;
      for (let j = k + 1; j < n; j++) s += a[row + j] * v[j];
      p[i] = beta * s;
      pv += p[i] * v[i];
    }
    const half = (beta / 2) * pv;
    for (let i = k + 1; i < n; i++) p[i] -= half * v[i];
    for (let i = k + 1; i < n; i++) {
      const row = i * n, vi = v[i], wi = p[i];
      for (let j = k + 1; j < n; j++) a[row + j] -= vi * p[j] + wi * v[j];
    }
    e[k] = alpha;
    // Z = Z H_k
    for (let i = 0; i < n; i++) {
      const row = i * n;
      let s = 0;
      for (let j = k + 1; j < n; j++) s += z[row + j] * v[j];
      const f = beta * s;
      if (f !== 0) for (let j = k + 1; j < n; j++) z[row + j] -= f * v[j];
    }
  }
  for (let i = 0; i < n; i++) d[i] = a[i * n + i];
  if (n >= 2) e[n - 2] = a[(n - 1) * n + (n - 2)];
  // The QR sweeps rotate pairs of eigenvector columns; keep them as contiguous rows of zt.
  const zt = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) zt[j * n + i] = z[i * n + j];
  tridiagonalQr(d, e, zt, n);
  // Sort decreasing.
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => d[y] - d[x] || x - y);
  const values = new Float64Array(n);
  const vectors = new Float64Array(n * n);
  for (let c = 0; c < n; c++) {
    const src = order[c];
    values[c] = d[src];
    for (let i = 0; i < n; i++) vectors[i * n + c] = zt[src * n + i];
  }
  return { values, vectors };
}

/**
 * Implicit symmetric QR on the tridiagonal (d, e), accumulating the rotations into the rows of zt (= columns of Z),
 * each `vectorLength` long; with vectorLength 0 only the eigenvalues are computed (O(n²) instead of O(n³)).
 */
function tridiagonalQr(d: Float64Array, e: Float64Array, zt: Float64Array, n: number, vectorLength = n): void {
  const eps = 2.220446049250313e-16;
  let iterations = 0;
  let hi = n - 1;
  while (hi > 0) {
    for (let i = 0; i < hi; i++) {
      if (Math.abs(e[i]) <= eps * (Math.abs(d[i]) + Math.abs(d[i + 1]))) e[i] = 0;
    }
    while (hi > 0 && e[hi - 1] === 0) hi--;
    if (hi === 0) break;
    let lo = hi - 1;
    while (lo > 0 && e[lo - 1] !== 0) lo--;
    if (++iterations > 60 * n) throw new LinalgError('symmetricEigen did not converge');
    // Wilkinson shift from the trailing 2×2 block.
    const delta = (d[hi - 1] - d[hi]) / 2;
    const b = e[hi - 1];
    const denom = delta + (delta >= 0 ? 1 : -1) * Math.hypot(delta, b);
    const mu = denom === 0 ? d[hi] : d[hi] - (b * b) / denom;
    let x = d[lo] - mu;
    let y = e[lo];
    for (let k = lo; k < hi; k++) {
      const r = Math.hypot(x, y);
      const c = r === 0 ? 1 : x / r;
      const s = r === 0 ? 0 : y / r;
      if (k > lo) e[k - 1] = r;
      const dk = d[k], dk1 = d[k + 1], ek = e[k];
      d[k] = c * c * dk + 2 * c * s * ek + s * s * dk1;
      d[k + 1] = s * s * dk - 2 * c * s * ek + c * c * dk1;
      e[k] = c * s * (dk1 - dk) + (c * c - s * s) * ek;
      if (k + 1 < hi) {
        x = e[k];
        y = s * e[k + 1];
        e[k + 1] *= c;
      }
      const rk = k * vectorLength, rk1 = rk + vectorLength;
      for (let i = 0; i < vectorLength; i++) {
        const zk = zt[rk + i], zk1 = zt[rk1 + i];
        zt[rk + i] = c * zk + s * zk1;
        zt[rk1 + i] = -s * zk + c * zk1;
      }
    }
  }
}

/**
 * The `count` largest eigenvalues of a symmetric n×n matrix (row-major), in decreasing order, with orthonormal
 * eigenvectors as the columns of `vectors` (row-major n×count). Same reduction to tridiagonal form as
 * symmetricEigen, but the O(n³) parts that only serve the other n − count eigenvectors are skipped: the QR sweeps
 * compute eigenvalues only, each wanted eigenvector of the tridiagonal comes from inverse iteration (O(n) per
 * step, as LAPACK's dstein: close eigenvalues are separated by a few ulps and their vectors re-orthogonalised
 * against each other), and only those `count` vectors are carried back through the Householder reflectors.
 * For the 128×128 cores of exact-average with count 16 this is about 4× faster than the full decomposition.
 */
export function symmetricEigenTop(matrix: Float64Array, n: number, count: number): { values: Float64Array; vectors: Float64Array } {
  count = Math.min(count, n);
  const { d, e, reflectors, betas } = tridiagonalise(matrix, n);
  const eigenvalues = d.slice();
  tridiagonalQr(eigenvalues, e.slice(), new Float64Array(0), n, 0);
  eigenvalues.sort((x, y) => y - x);
  const values = eigenvalues.slice(0, count);
  let tnorm = 0;
  for (let i = 0; i < n; i++) tnorm = Math.max(tnorm, Math.abs(d[i]) + (i > 0 ? Math.abs(e[i - 1]) : 0) + (i < n - 1 ? Math.abs(e[i]) : 0));
  const eps = 2.220446049250313e-16;
  const vectorsT = new Float64Array(count * n); // row c = eigenvector c of the tridiagonal, then of the matrix
  if (tnorm === 0) {
    // The zero matrix: any orthonormal vectors are eigenvectors.
    const vectors = new Float64Array(n * count);
    for (let c = 0; c < count; c++) vectors[c * count + c] = 1;
    return { values, vectors };
  }
  const shifts = new Float64Array(count);
  const solver = new TridiagonalShiftedSolver(d, e, n, eps * tnorm);
  const random = createRng(0x5eed);
  let shift = 0;
  let clusterStart = 0;
  for (let c = 0; c < count; c++) {
    // Shift slightly below the previous shift when the eigenvalues coincide to rounding, so that the solves differ.
    shift = values[c];
    if (c > 0) {
      const pertol = 10 * eps * Math.max(Math.abs(values[c]), tnorm * eps);
      const previous = shifts[c - 1];
      if (previous - shift < pertol) shift = previous - pertol;
      if (values[c - 1] - values[c] > 1e-3 * tnorm) clusterStart = c;
    }
    shifts[c] = shift;
    solver.factor(shift);
    const x = vectorsT.subarray(c * n, (c + 1) * n);
    for (let i = 0; i < n; i++) x[i] = random() - 0.5;
    for (let iteration = 0; iteration < 4; iteration++) {
      normalise(x);
      solver.solve(x);
      // Two passes of Gram–Schmidt against the vectors of the same cluster keep them orthogonal to working precision.
      for (let pass = 0; pass < 2; pass++) {
        for (let q = clusterStart; q < c; q++) {
          const y = vectorsT.subarray(q * n, (q + 1) * n);
          let dot = 0;
          for (let i = 0; i < n; i++) dot += x[i] * y[i];
          for (let i = 0; i < n; i++) x[i] -= dot * y[i];
        }
      }
    }
    normalise(x);
  }
  // Carry the tridiagonal's eigenvectors back: v = H_0 H_1 … H_{n−3} x, the last reflector first.
  for (let c = 0; c < count; c++) {
    const x = vectorsT.subarray(c * n, (c + 1) * n);
    for (let k = n - 3; k >= 0; k--) {
      const beta = betas[k];
      if (beta === 0) continue;
      const v = k * n;
      let dot = 0;
      for (let i = k + 1; i < n; i++) dot += reflectors[v + i] * x[i];
      const f = beta * dot;
      for (let i = k + 1; i < n; i++) x[i] -= f * reflectors[v + i];
    }
  }
  const vectors = new Float64Array(n * count);
  for (let c = 0; c < count; c++) for (let i = 0; i < n; i++) vectors[i * count + c] = vectorsT[c * n + i];
  return { values, vectors };
}

function normalise(x: Float64Array): void {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * x[i];
  const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
  for (let i = 0; i < x.length; i++) x[i] *= inv;
}

/**
 * Householder reduction of a symmetric n×n matrix to tridiagonal form (d, e), keeping the reflectors: row k of
 * `reflectors` holds v_k in columns k+1…n−1 and H_k = I − betas[k]·v_k·v_kᵀ (betas[k] = 0: no reflection).
 */
function tridiagonalise(matrix: Float64Array, n: number) {
  // With SIMD, the working matrix and the two vectors of each step live in the kernels' memory, where the
  // matrix-vector product and the rank-2 update (the O(n³) part) run two lanes at a time.
  const kernels = n >= 8 ? sharedKernels() : null;
  let ap = 0, vp = 0, pp = 0;
  if (kernels) {
    kernels.reset(n * n * 8 + 2 * n * 8);
    ap = kernels.alloc(n * n * 8);
    vp = kernels.alloc(n * 8);
    pp = kernels.alloc(n * 8);
  }
  const a = kernels ? kernels.f64(ap, n * n) : new Float64Array(n * n);
  a.set(matrix.subarray(0, n * n));
  const vs = kernels ? kernels.f64(vp, n) : null;
  const d = new Float64Array(n);
  const e = new Float64Array(Math.max(0, n - 1));
  const reflectors = new Float64Array(n * n);
  const betas = new Float64Array(n);
  const p = kernels ? kernels.f64(pp, n) : new Float64Array(n);
  for (let k = 0; k + 2 < n; k++) {
    let norm2 = 0;
    for (let i = k + 1; i < n; i++) norm2 += a[i * n + k] * a[i * n + k];
    const x0 = a[(k + 1) * n + k];
    const norm = Math.sqrt(norm2);
    const alpha = x0 >= 0 ? -norm : norm;
    const v0 = x0 - alpha;
    const vv = norm2 - x0 * x0 + v0 * v0;
    if (!(vv > 0) || norm2 === x0 * x0) {
      e[k] = x0;
      continue;
    }
    const beta = 2 / vv;
    betas[k] = beta;
    const v = reflectors.subarray(k * n, (k + 1) * n);
    v[k + 1] = v0;
    for (let i = k + 2; i < n; i++) v[i] = a[i * n + k];
    // p = beta A22 v ; w = p - (beta/2)(pᵀv) v ; A22 -= v wᵀ + w vᵀ
    let pv = 0;
    if (kernels) {
      vs!.set(v.subarray(k + 1), k + 1);
      kernels.exports.matvecRows(ap, n, k + 1, vp, pp);
      for (let i = k + 1; i < n; i++) {
        p[i] = beta * p[i];
        pv += p[i] * v[i];
      }
    } else {
      for (let i = k + 1; i < n; i++) {
        let s = 0;
        const row = i * n;
        for (let j = k + 1; j < n; j++) s += a[row + j] * v[j];
        p[i] = beta * s;
        pv += p[i] * v[i];
      }
    }
    const half = (beta / 2) * pv;
    for (let i = k + 1; i < n; i++) p[i] -= half * v[i];
    if (kernels) kernels.exports.rank2Update(ap, n, k + 1, vp, pp);
    else {
      for (let i = k + 1; i < n; i++) {
        const row = i * n, vi = v[i], wi = p[i];
        for (let j = k + 1; j < n; j++) a[row + j] -= vi * p[j] + wi * v[j];
      }
    }
    e[k] = alpha;
  }
  for (let i = 0; i < n; i++) d[i] = a[i * n + i];
  if (n >= 2) e[n - 2] = a[(n - 1) * n + (n - 2)];
  return { d, e, reflectors, betas };
}

/**
 * Solves (T − λI)·x = b for a symmetric tridiagonal T (diagonal d, off-diagonal e) by Gaussian elimination with
 * partial pivoting (row swaps give U a second superdiagonal), as inverse iteration needs: λ is an eigenvalue to
 * rounding, so T − λI is nearly singular and a zero pivot is replaced by `tiny` (the solve then just grows large
 * in the eigenvector's direction, which is the point).
 */
class TridiagonalShiftedSolver {
  private readonly u0: Float64Array;
  private readonly u1: Float64Array;
  private readonly u2: Float64Array;
  private readonly multipliers: Float64Array;
  private readonly swapped: Uint8Array;

  constructor(private readonly d: Float64Array, private readonly e: Float64Array, private readonly n: number, private readonly tiny: number) {
    this.u0 = new Float64Array(n);
    this.u1 = new Float64Array(n);
    this.u2 = new Float64Array(n);
    this.multipliers = new Float64Array(n);
    this.swapped = new Uint8Array(n);
  }

  factor(lambda: number): void {
    const { d, e, n, u0, u1, u2, multipliers, swapped, tiny } = this;
    let diag = d[0] - lambda;
    let sup = n > 1 ? e[0] : 0;
    for (let i = 0; i + 1 < n; i++) {
      const sub = e[i];
      const nextDiag = d[i + 1] - lambda;
      const nextSup = i + 2 < n ? e[i + 1] : 0;
      if (Math.abs(diag) >= Math.abs(sub)) {
        if (diag === 0) diag = tiny;
        const m = sub / diag;
        u0[i] = diag; u1[i] = sup; u2[i] = 0;
        multipliers[i] = m; swapped[i] = 0;
        diag = nextDiag - m * sup;
        sup = nextSup;
      } else {
        const m = diag / sub;
        u0[i] = sub; u1[i] = nextDiag; u2[i] = nextSup;
        multipliers[i] = m; swapped[i] = 1;
        diag = sup - m * nextDiag;
        sup = -m * nextSup;
      }
    }
    u0[n - 1] = diag === 0 ? tiny : diag;
  }

  /** x ← (T − λI)⁻¹·x for the λ of the last factor() call. */
  solve(x: Float64Array): void {
    const { n, u0, u1, u2, multipliers, swapped } = this;
    for (let i = 0; i + 1 < n; i++) {
      if (swapped[i]) {
        const t = x[i];
        x[i] = x[i + 1];
        x[i + 1] = t;
      }
      x[i + 1] -= multipliers[i] * x[i];
    }
    // Rescale on the way up when a nearly-zero pivot would overflow; the direction is what matters.
    for (let i = n - 1; i >= 0; i--) {
      let s = x[i];
      if (i + 1 < n) s -= u1[i] * x[i + 1];
      if (i + 2 < n) s -= u2[i] * x[i + 2];
      x[i] = s / u0[i];
      if (!(Math.abs(x[i]) < 1e150)) {
        for (let j = i; j < n; j++) x[j] *= 1e-150;
      }
    }
  }
}

/**
 * SVD of a small m×n matrix (row-major, m ≥ n) by one-sided Jacobi rotations (Hestenes): orthogonalise the
 * columns, then σ_j = ‖column j‖. Returns U by columns (m×n), singular values (decreasing) and V (n×n row-major,
 * columns are right singular vectors) with X = U·diag(s)·Vᵀ. Accurate for small matrices; cost grows as m·n² per sweep.
 */
export function jacobiSvd(matrix: Float64Array, m: number, n: number): { u: Float64Array; s: Float64Array; v: Float64Array } {
  if (m < n) throw new LinalgError(`jacobiSvd needs rows >= columns, got ${m}x${n}`);
  const cols = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) cols[j * m + i] = matrix[i * n + j];
  const vcols = new Float64Array(n * n);
  for (let j = 0; j < n; j++) vcols[j * n + j] = 1;
  const tol = 1e-15;
  for (let sweep = 0; sweep < 80; sweep++) {
    let rotated = false;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const cp = p * m, cq = q * m;
        let alpha = 0, beta = 0, gamma = 0;
        for (let i = 0; i < m; i++) {
          const x = cols[cp + i], y = cols[cq + i];
          alpha += x * x;
          beta += y * y;
          gamma += x * y;
        }
        if (gamma === 0 || Math.abs(gamma) <= tol * Math.sqrt(alpha * beta)) continue;
        rotated = true;
        const zeta = (beta - alpha) / (2 * gamma);
        const t = (zeta >= 0 ? 1 : -1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = c * t;
        for (let i = 0; i < m; i++) {
          const x = cols[cp + i], y = cols[cq + i];
          cols[cp + i] = c * x - s * y;
          cols[cq + i] = s * x + c * y;
        }
        const vp = p * n, vq = q * n;
        for (let i = 0; i < n; i++) {
          const x = vcols[vp + i], y = vcols[vq + i];
          vcols[vp + i] = c * x - s * y;
          vcols[vq + i] = s * x + c * y;
        }
      }
    }
    if (!rotated) break;
  }
  const norms = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    let s = 0;
    for (let i = 0; i < m; i++) s += cols[j * m + i] * cols[j * m + i];
    norms[j] = Math.sqrt(s);
  }
  const order = Array.from({ length: n }, (_, j) => j).sort((x, y) => norms[y] - norms[x] || x - y);
  const u = new Float64Array(m * n);
  const s = new Float64Array(n);
  const v = new Float64Array(n * n);
  for (let c = 0; c < n; c++) {
    const j = order[c];
    s[c] = norms[j];
    const inv = norms[j] > 0 ? 1 / norms[j] : 0;
    for (let i = 0; i < m; i++) u[c * m + i] = cols[j * m + i] * inv;
    for (let i = 0; i < n; i++) v[i * n + c] = vcols[j * n + i];
  }
  return { u, s, v };
}

/**
 * Rank-`rank` truncated SVD of a dense m×n float32 matrix (row-major) by randomised range finding (Halko,
 * Martinsson & Tropp 2011) with `oversample` extra columns and `powerIterations` rounds of re-orthonormalised power
 * iteration. Exact (up to rounding) when the matrix has rank ≤ rank + oversample. The Gaussian sketch is seeded, so
 * the result is deterministic. Returns U by columns (m×rank), s (decreasing) and V by columns (n×rank).
 */
export function randomizedSvd(
  matrix: Float32Array,
  m: number,
  n: number,
  rank: number,
  options: { oversample: number; powerIterations: number; seed: number; kernels?: Kernels | null },
): { u: Float64Array; s: Float64Array; v: Float64Array } {
  const l = Math.min(rank + options.oversample, m, n);
  const gauss = gaussianRandom(options.seed);
  const omega = new Float64Array(l * n);
  for (let i = 0; i < omega.length; i++) omega[i] = gauss();
  const kernels = options.kernels === undefined ? sharedKernels() : options.kernels;
  const op = kernels ? simdOperator(kernels, matrix, m, n, l) : null;
  const times = (x: Float64Array) => (op ? op.times(x) : multiplyRows(matrix, m, n, x, l));
  const transposeTimes = (x: Float64Array) => (op ? op.transposeTimes(x) : multiplyTransposed(matrix, m, n, x, l));
  const qr = (y: Float64Array, rows: number) => (op ? choleskyQr2(y, rows, l, op.gram) ?? householderQr(y, rows, l) : householderQr(y, rows, l));
  let q = qr(times(omega), m).q;
  for (let it = 0; it < options.powerIterations; it++) {
    const zq = qr(transposeTimes(q), n).q;
    q = qr(times(zq), m).q;
  }
  // Mᵀ Q = Q2 R2  ⇒  M ≈ Q Qᵀ M = Q R2ᵀ Q2ᵀ ; SVD(R2ᵀ) = Us S Vsᵀ  ⇒  M ≈ (Q Us) S (Q2 Vs)ᵀ.
  const { q: q2, r: r2 } = qr(transposeTimes(q), n);
  const r2t = new Float64Array(l * l);
  for (let i = 0; i < l; i++) for (let j = 0; j < l; j++) r2t[i * l + j] = r2[j * l + i];
  const small = jacobiSvd(r2t, l, l);
  const k = Math.min(rank, l);
  const u = new Float64Array(m * k);
  const v = new Float64Array(n * k);
  for (let c = 0; c < k; c++) {
    for (let j = 0; j < l; j++) {
      const fu = small.u[c * l + j];
      if (fu !== 0) for (let i = 0; i < m; i++) u[c * m + i] += fu * q[j * m + i];
      const fv = small.v[j * l + c];
      if (fv !== 0) for (let i = 0; i < n; i++) v[c * n + i] += fv * q2[j * n + i];
    }
  }
  return { u, s: small.s.slice(0, k), v };
}

/**
 * Thin QR of a tall m×n matrix given by columns by Cholesky-QR, twice (CholeskyQR2: Y = Q₁R₁ from the Cholesky
 * factor of YᵀY, then the same on Q₁, which brings Q's orthogonality to working precision), or null when Y is too
 * ill-conditioned for it and Householder QR must do. With the Gram from the SIMD kernel, this is a few times
 * faster than householderQr on the 3072×24 sketches of product-space TIES: the Householder loops are
 * dependent JS dot products and updates, here only the triangular solve is. R has a positive diagonal.
 */
export function choleskyQr2(y: Float64Array, m: number, n: number, gram: (columns: Float64Array, m: number, n: number) => Float64Array): { q: Float64Array; r: Float64Array } | null {
  const first = choleskyQrStep(y, m, n, gram);
  if (!first) return null;
  const second = choleskyQrStep(first.q, m, n, gram);
  if (!second) return null;
  // R = R₂·R₁ (both upper triangular).
  const r = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) {
      let s = 0;
      for (let p = i; p <= j; p++) s += second.r[i * n + p] * first.r[p * n + j];
      r[i * n + j] = s;
    }
  }
  return { q: second.q, r };
}

/**
 * One Cholesky-QR step: YᵀY = RᵀR, Q = Y·R⁻¹. Null when a pivot falls below 1e-10 of its column's squared norm:
 * Y's condition number is then near or beyond 1e5 and the squared one in the Gram would cost too much accuracy.
 */
function choleskyQrStep(y: Float64Array, m: number, n: number, gram: (columns: Float64Array, m: number, n: number) => Float64Array) {
  const g = gram(y, m, n);
  const r = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let d = g[j * n + j];
    for (let p = 0; p < j; p++) d -= r[p * n + j] * r[p * n + j];
    if (!(d > 1e-10 * g[j * n + j])) return null;
    const root = Math.sqrt(d);
    r[j * n + j] = root;
    for (let k = j + 1; k < n; k++) {
      let s = g[j * n + k];
      for (let p = 0; p < j; p++) s -= r[p * n + j] * r[p * n + k];
      r[j * n + k] = s / root;
    }
  }
  // q_j = (y_j − Σ_{p<j} R[p][j]·q_p) / R[j][j], column by column (contiguous), four earlier columns per pass
  // so that q_j is loaded and stored once per four multiply-adds.
  const q = Float64Array.from(y.subarray(0, m * n));
  for (let j = 0; j < n; j++) {
    const qj = j * m;
    let p = 0;
    for (; p + 4 <= j; p += 4) {
      const f0 = r[p * n + j], f1 = r[(p + 1) * n + j], f2 = r[(p + 2) * n + j], f3 = r[(p + 3) * n + j];
      const q0 = p * m, q1 = q0 + m, q2 = q1 + m, q3 = q2 + m;
      for (let i = 0; i < m; i++) q[qj + i] -= f0 * q[q0 + i] + f1 * q[q1 + i] + f2 * q[q2 + i] + f3 * q[q3 + i];
    }
    for (; p < j; p++) {
      const f = r[p * n + j];
      const qp = p * m;
      for (let i = 0; i < m; i++) q[qj + i] -= f * q[qp + i];
    }
    const inv = 1 / r[j * n + j];
    for (let i = 0; i < m; i++) q[qj + i] *= inv;
  }
  return { q, r };
}

/**
 * M·X and Mᵀ·X for the randomised SVD by the SIMD dot kernel: M and its transpose are copied into the kernels'
 * memory once per SVD (the transpose costs one pass; afterwards both products read contiguous rows), and the
 * sketch columns (l of them) go in and out per product. Leftover rows (m or n not a multiple of 4) and the last
 * column (l odd) are summed in JS from the same copies.
 */
function simdOperator(kernels: Kernels, matrix: Float32Array, m: number, n: number, l: number) {
  const big = Math.max(m, n);
  kernels.reset(2 * m * n * 4 + 2 * big * l * 8);
  const mp = kernels.alloc(m * n * 4), tp = kernels.alloc(m * n * 4), xp = kernels.alloc(big * l * 8), yp = kernels.alloc(big * l * 8);
  const rowsM = kernels.f32(mp, m * n), rowsT = kernels.f32(tp, m * n);
  rowsM.set(matrix.subarray(0, m * n));
  // Blocked transpose: 32×32 tiles keep both the reads and the strided writes within a few cache lines each.
  for (let i0 = 0; i0 < m; i0 += 32) {
    const i1 = Math.min(m, i0 + 32);
    for (let j0 = 0; j0 < n; j0 += 32) {
      const j1 = Math.min(n, j0 + 32);
      for (let i = i0; i < i1; i++) for (let j = j0; j < j1; j++) rowsT[j * m + i] = rowsM[i * n + j];
    }
  }
  const apply = (rp: number, rows: Float32Array, count: number, len: number, x: Float64Array): Float64Array => {
    const xs = kernels.f64(xp, len * l);
    xs.set(x.subarray(0, len * l));
    const count4 = count - (count % 4), l2 = l - (l % 2);
    // Output by columns of length count: entry (i, c) at i + c·count.
    kernels.exports.dotsF64Cols(rp, count4, len, xp, l2, yp, 8, count * 8);
    const y = kernels.f64(yp, count * l).slice();
    for (let i = 0; i < count; i++) {
      for (let c = i < count4 ? l2 : 0; c < l; c++) y[c * count + i] = dotRange(rows, i * len, xs, c * len, len);
    }
    return y;
  };
  // XᵀX for a sketch X (by columns, at most big × l) in the same memory: the upper 4×2 tiles by the kernel, the
  // rest in JS, mirrored.
  const gram = (x: Float64Array, rows: number, cols: number): Float64Array => {
    kernels.f64(xp, rows * cols).set(x.subarray(0, rows * cols));
    const c4 = cols - (cols % 4), c2 = cols - (cols % 2);
    const tiles = kernels.f64(yp, cols * cols);
    for (let i = 0; i < c4; i += 4) kernels.exports.dotsF64Rows(xp + i * rows * 8, 4, rows, xp + i * rows * 8, c2 - i, yp + (i * cols + i) * 8, cols * 8, 8);
    const g = new Float64Array(cols * cols);
    for (let i = 0; i < cols; i++) {
      for (let j = i; j < cols; j++) {
        if (i < c4 && j < c2) g[i * cols + j] = tiles[i * cols + j];
        else {
          let s = 0;
          for (let t = 0; t < rows; t++) s += x[i * rows + t] * x[j * rows + t];
          g[i * cols + j] = s;
        }
        g[j * cols + i] = g[i * cols + j];
      }
    }
    return g;
  };
  return {
    times: (x: Float64Array) => apply(mp, rowsM, m, n, x),
    transposeTimes: (x: Float64Array) => apply(tp, rowsT, n, m, x),
    gram,
  };
}

/** Y = M·X for M (m×n row-major, float32) and X given by l columns of length n; Y by l columns of length m. */
function multiplyRows(matrix: Float32Array, m: number, n: number, xCols: Float64Array, l: number): Float64Array {
  const y = new Float64Array(m * l);
  rowsDotColumns(matrix, m, n, xCols, l, y, 1, m);
  return y;
}

/**
 * out[i·rowStride + c·colStride] = Σ_t rows[i·len + t]·cols[c·len + t] for `rowCount` rows and `colCount` columns,
 * both contiguous of length `len` (a product P·C with P row-major and C by columns). Tiles of 4 rows × 2 columns
 * share their loads (6 loads per 8 multiply-adds, 8 accumulators: what fits the 16 floating-point registers V8
 * has on x64), which is about 1.5× the throughput of one row against 8 columns; leftover rows and columns go one
 * tile size down. Each sum runs over t in increasing order, so the result does not depend on the tiling.
 */
export function rowsDotColumns(
  rows: Float32Array,
  rowCount: number,
  len: number,
  cols: Float64Array,
  colCount: number,
  out: Float64Array,
  rowStride: number,
  colStride: number,
): void {
  const rows4 = rowCount - (rowCount % 4);
  const cols2 = colCount - (colCount % 2);
  const kernels = sharedKernels();
  if (kernels) {
    kernels.reset(rowCount * len * 4 + colCount * len * 8 + rows4 * cols2 * 8);
    const r = kernels.alloc(rowCount * len * 4), c = kernels.alloc(colCount * len * 8), o = kernels.alloc(rows4 * cols2 * 8);
    kernels.f32(r, rowCount * len).set(rows.subarray(0, rowCount * len));
    kernels.f64(c, colCount * len).set(cols.subarray(0, colCount * len));
    kernels.exports.dotsF64Cols(r, rows4, len, c, cols2, o, cols2 * 8, 8);
    const tiles = kernels.f64(o, rows4 * cols2);
    for (let i = 0; i < rows4; i++) for (let j = 0; j < cols2; j++) out[i * rowStride + j * colStride] = tiles[i * cols2 + j];
  }
  for (let i = 0; kernels === null && i < rows4; i += 4) {
    const p0 = i * len, p1 = p0 + len, p2 = p1 + len, p3 = p2 + len;
    const o0 = i * rowStride, o1 = o0 + rowStride, o2 = o1 + rowStride, o3 = o2 + rowStride;
    for (let c = 0; c < cols2; c += 2) {
      const q0 = c * len, q1 = q0 + len;
      let s00 = 0, s01 = 0, s10 = 0, s11 = 0, s20 = 0, s21 = 0, s30 = 0, s31 = 0;
      for (let t = 0; t < len; t++) {
        const b0 = cols[q0 + t], b1 = cols[q1 + t];
        const a0 = rows[p0 + t], a1 = rows[p1 + t], a2 = rows[p2 + t], a3 = rows[p3 + t];
        s00 += a0 * b0; s01 += a0 * b1;
        s10 += a1 * b0; s11 += a1 * b1;
        s20 += a2 * b0; s21 += a2 * b1;
        s30 += a3 * b0; s31 += a3 * b1;
      }
      const c0 = c * colStride, c1 = c0 + colStride;
      out[o0 + c0] = s00; out[o0 + c1] = s01;
      out[o1 + c0] = s10; out[o1 + c1] = s11;
      out[o2 + c0] = s20; out[o2 + c1] = s21;
      out[o3 + c0] = s30; out[o3 + c1] = s31;
    }
  }
  // Leftovers: the last rowCount % 4 rows against every column, then every row against the last column.
  for (let i = rows4; i < rowCount; i++) {
    for (let c = 0; c < colCount; c++) out[i * rowStride + c * colStride] = dotRange(rows, i * len, cols, c * len, len);
  }
  if (cols2 < colCount) {
    for (let i = 0; i < rows4; i++) out[i * rowStride + cols2 * colStride] = dotRange(rows, i * len, cols, cols2 * len, len);
  }
}

function dotRange(x: Float32Array, xOffset: number, y: Float64Array, yOffset: number, len: number): number {
  let s = 0;
  for (let t = 0; t < len; t++) s += x[xOffset + t] * y[yOffset + t];
  return s;
}

/**
 * out[i·yCount + j] = x row i · y row j, for row-major x (xCount × len) and y (yCount × len), float64. Tiles of
 * 4 × 2 rows keep 8 independent sums in registers (a single running sum is bound by the add latency, about 3×
 * slower here), by the SIMD kernel where there is one; leftovers go one dot product at a time.
 */
export function rowsDotRows(x: Float64Array, xCount: number, y: Float64Array, yCount: number, len: number, out: Float64Array): void {
  const x4 = xCount - (xCount % 4);
  const y2 = yCount - (yCount % 2);
  const kernels = sharedKernels();
  if (kernels) {
    kernels.reset((xCount + yCount) * len * 8 + xCount * yCount * 8);
    const xp = kernels.alloc(xCount * len * 8), yp = kernels.alloc(yCount * len * 8), o = kernels.alloc(xCount * yCount * 8);
    kernels.f64(xp, xCount * len).set(x.subarray(0, xCount * len));
    kernels.f64(yp, yCount * len).set(y.subarray(0, yCount * len));
    kernels.exports.dotsF64Rows(xp, x4, len, yp, y2, o, yCount * 8, 8);
    const tiles = kernels.f64(o, xCount * yCount);
    for (let i = 0; i < x4; i++) for (let j = 0; j < y2; j++) out[i * yCount + j] = tiles[i * yCount + j];
  }
  for (let i = 0; kernels === null && i < x4; i += 4) {
    const p0 = i * len, p1 = p0 + len, p2 = p1 + len, p3 = p2 + len;
    for (let j = 0; j < y2; j += 2) {
      const q0 = j * len, q1 = q0 + len;
      let s00 = 0, s01 = 0, s10 = 0, s11 = 0, s20 = 0, s21 = 0, s30 = 0, s31 = 0;
      for (let t = 0; t < len; t++) {
        const b0 = y[q0 + t], b1 = y[q1 + t];
        const a0 = x[p0 + t], a1 = x[p1 + t], a2 = x[p2 + t], a3 = x[p3 + t];
        s00 += a0 * b0; s01 += a0 * b1;
        s10 += a1 * b0; s11 += a1 * b1;
        s20 += a2 * b0; s21 += a2 * b1;
        s30 += a3 * b0; s31 += a3 * b1;
      }
      out[i * yCount + j] = s00; out[i * yCount + j + 1] = s01;
      out[(i + 1) * yCount + j] = s10; out[(i + 1) * yCount + j + 1] = s11;
      out[(i + 2) * yCount + j] = s20; out[(i + 2) * yCount + j + 1] = s21;
      out[(i + 3) * yCount + j] = s30; out[(i + 3) * yCount + j + 1] = s31;
    }
  }
  const dot = (i: number, j: number) => {
    let s = 0;
    for (let t = 0; t < len; t++) s += x[i * len + t] * y[j * len + t];
    out[i * yCount + j] = s;
  };
  for (let i = x4; i < xCount; i++) for (let j = 0; j < yCount; j++) dot(i, j);
  if (y2 < yCount) for (let i = 0; i < x4; i++) dot(i, y2);
}

/**
 * Z = Mᵀ·Q for M (m×n row-major, float32) and Q given by l columns of length m; Z by l columns of length n.
 * M is read row by row (its columns are strided), so each row is added into the l output columns; two rows and
 * four output columns per pass halve the output loads and stores per multiply-add against one row at a time.
 * Each output still sums the rows in increasing order, so the tiling does not change the result.
 */
function multiplyTransposed(matrix: Float32Array, m: number, n: number, qCols: Float64Array, l: number): Float64Array {
  const z = new Float64Array(n * l);
  const m2 = m - (m % 2);
  const l4 = l - (l % 4);
  for (let row = 0; row < m2; row += 2) {
    const r0 = row * n, r1 = r0 + n;
    for (let c = 0; c < l4; c += 4) {
      const f00 = qCols[c * m + row], f10 = qCols[(c + 1) * m + row], f20 = qCols[(c + 2) * m + row], f30 = qCols[(c + 3) * m + row];
      const f01 = qCols[c * m + row + 1], f11 = qCols[(c + 1) * m + row + 1], f21 = qCols[(c + 2) * m + row + 1], f31 = qCols[(c + 3) * m + row + 1];
      const z0 = c * n, z1 = z0 + n, z2 = z1 + n, z3 = z2 + n;
      for (let j = 0; j < n; j++) {
        const x0 = matrix[r0 + j], x1 = matrix[r1 + j];
        z[z0 + j] = z[z0 + j] + f00 * x0 + f01 * x1;
        z[z1 + j] = z[z1 + j] + f10 * x0 + f11 * x1;
        z[z2 + j] = z[z2 + j] + f20 * x0 + f21 * x1;
        z[z3 + j] = z[z3 + j] + f30 * x0 + f31 * x1;
      }
    }
    for (let c = l4; c < l; c++) {
      const f0 = qCols[c * m + row], f1 = qCols[c * m + row + 1];
      const z0 = c * n;
      for (let j = 0; j < n; j++) z[z0 + j] = z[z0 + j] + f0 * matrix[r0 + j] + f1 * matrix[r1 + j];
    }
  }
  for (let row = m2; row < m; row++) {
    const r0 = row * n;
    for (let c = 0; c < l; c++) {
      const f = qCols[c * m + row];
      const z0 = c * n;
      for (let j = 0; j < n; j++) z[z0 + j] += f * matrix[r0 + j];
    }
  }
  return z;
}

/**
 * Minimum-cost assignment of n rows to n columns (Hungarian method with potentials and shortest augmenting
 * paths, O(n³)). `cost` is n×n row-major. Returns assignment[row] = column. Equal costs resolve to the lower
 * column index, so the result is deterministic.
 */
export function hungarian(cost: Float64Array, n: number): Int32Array {
  const INF = Number.POSITIVE_INFINITY;
  // 1-based potentials; column 0 is a virtual start.
  const u = new Float64Array(n + 1);
  const v = new Float64Array(n + 1);
  const matchOfColumn = new Int32Array(n + 1);
  const way = new Int32Array(n + 1);
  const minSlack = new Float64Array(n + 1);
  const visited = new Uint8Array(n + 1);
  for (let row = 1; row <= n; row++) {
    matchOfColumn[0] = row;
    let col0 = 0;
    minSlack.fill(INF);
    visited.fill(0);
    do {
      visited[col0] = 1;
      const r0 = matchOfColumn[col0];
      let delta = INF;
      let col1 = 0;
      for (let col = 1; col <= n; col++) {
        if (visited[col]) continue;
        const reduced = cost[(r0 - 1) * n + (col - 1)] - u[r0] - v[col];
        if (reduced < minSlack[col]) {
          minSlack[col] = reduced;
          way[col] = col0;
        }
        if (minSlack[col] < delta) {
          delta = minSlack[col];
          col1 = col;
        }
      }
      if (!Number.isFinite(delta)) throw new LinalgError('hungarian: cost matrix must be finite');
      for (let col = 0; col <= n; col++) {
        if (visited[col]) {
          u[matchOfColumn[col]] += delta;
          v[col] -= delta;
        } else {
          minSlack[col] -= delta;
        }
      }
      col0 = col1;
    } while (matchOfColumn[col0] !== 0);
    do {
      const col1 = way[col0];
      matchOfColumn[col0] = matchOfColumn[col1];
      col0 = col1;
    } while (col0 !== 0);
  }
  const assignment = new Int32Array(n);
  for (let col = 1; col <= n; col++) assignment[matchOfColumn[col] - 1] = col - 1;
  return assignment;
}
