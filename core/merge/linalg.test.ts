import { describe, expect, it } from 'vitest';
import { createRng } from '../util/random.ts';
import { keepMagnitudeBand, keepTopMagnitudes } from './common.ts';
import { gramOfColumns, householderQr, hungarian, jacobiSvd, pivotedCholesky, randomizedSvd, symmetricEigen } from './linalg.ts';

function randomMatrix(rows: number, cols: number, seed: number): Float64Array {
  const random = createRng(seed);
  return Float64Array.from({ length: rows * cols }, () => random() * 2 - 1);
}

/** Naive row-major product. */
function matmul(x: Float64Array, y: Float64Array, m: number, k: number, n: number): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
    let s = 0;
    for (let t = 0; t < k; t++) s += x[i * k + t] * y[t * n + j];
    out[i * n + j] = s;
  }
  return out;
}

function transpose(x: Float64Array, m: number, n: number): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) out[j * m + i] = x[i * n + j];
  return out;
}

function maxDiff(x: ArrayLike<number>, y: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - y[i]));
  return m;
}

const identity = (n: number) => Float64Array.from({ length: n * n }, (_, i) => (i % (n + 1) === 0 ? 1 : 0));

describe('linalg', () => {
  it('gramOfColumns equals XᵀX computed naively (odd and even column counts)', () => {
    for (const n of [4, 5, 6, 7, 9]) {
      const m = 7;
      const cols = randomMatrix(n, m, n); // n columns of length m = Xᵀ row-major
      const x = transpose(cols, n, m); // m×n
      const expected = matmul(cols, x, n, m, n);
      expect(maxDiff(gramOfColumns(Float32Array.from(cols), m, n), matmul(transpose(x, m, n), x, n, m, n))).toBeLessThan(1e-6);
      expect(maxDiff(gramOfColumns(cols, m, n), expected)).toBeLessThan(1e-12);
    }
  });

  it('householderQr: Q has orthonormal columns, R is upper triangular, QR = X', () => {
    const m = 9, n = 4;
    const cols = randomMatrix(n, m, 3);
    const { q, r } = householderQr(cols, m, n);
    const qRowMajor = transpose(q, n, m); // m×n
    expect(maxDiff(matmul(q, qRowMajor, n, m, n), identity(n))).toBeLessThan(1e-12);
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) expect(r[i * n + j]).toBe(0);
    expect(maxDiff(matmul(qRowMajor, r, m, n, n), transpose(cols, n, m))).toBeLessThan(1e-12);
  });

  it('symmetricEigen: AV = VΛ, VᵀV = I, values decreasing, including repeated eigenvalues', () => {
    for (const n of [1, 2, 7, 40]) {
      const x = randomMatrix(n, n, n + 11);
      const a = new Float64Array(n * n);
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) a[i * n + j] = x[i * n + j] + x[j * n + i];
      const { values, vectors } = symmetricEigen(a, n);
      const av = matmul(a, vectors, n, n, n);
      const vl = new Float64Array(n * n);
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) vl[i * n + j] = vectors[i * n + j] * values[j];
      expect(maxDiff(av, vl)).toBeLessThan(1e-10);
      expect(maxDiff(matmul(transpose(vectors, n, n), vectors, n, n, n), identity(n))).toBeLessThan(1e-12);
      for (let i = 1; i < n; i++) expect(values[i]).toBeLessThanOrEqual(values[i - 1]);
    }
    // diag(3, 3, 1) rotated: a repeated eigenvalue
    const { values } = symmetricEigen(Float64Array.from([2, 1, 0, 1, 2, 0, 0, 0, 3]), 3);
    expect(maxDiff(values, [3, 3, 1])).toBeLessThan(1e-12);
  });

  it('jacobiSvd reconstructs X with orthonormal U and V', () => {
    const m = 6, n = 4;
    const x = randomMatrix(m, n, 5);
    const { u, s, v } = jacobiSvd(x, m, n);
    const uRow = transpose(u, n, m); // m×n
    const us = new Float64Array(m * n);
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) us[i * n + j] = uRow[i * n + j] * s[j];
    expect(maxDiff(matmul(us, transpose(v, n, n), m, n, n), x)).toBeLessThan(1e-12);
    expect(maxDiff(matmul(u, uRow, n, m, n), identity(n))).toBeLessThan(1e-12);
    expect(maxDiff(matmul(transpose(v, n, n), v, n, n, n), identity(n))).toBeLessThan(1e-12);
  });

  it('pivotedCholesky: LLᵀ = G and detects the rank of a semi-definite G', () => {
    const n = 6, k = 3;
    const f = randomMatrix(n, k, 9);
    const g = matmul(f, transpose(f, n, k), n, k, n); // rank 3
    const { l, rank } = pivotedCholesky(g, n);
    expect(rank).toBe(3);
    expect(maxDiff(matmul(l, transpose(l, n, rank), n, rank, n), g)).toBeLessThan(1e-12);
  });

  it('randomizedSvd recovers a rank-3 matrix exactly and its singular values', () => {
    const m = 30, n = 20;
    const left = randomMatrix(m, 3, 1), right = randomMatrix(3, n, 2);
    const x = matmul(left, right, m, 3, n);
    const { u, s, v } = randomizedSvd(Float32Array.from(x), m, n, 3, { oversample: 2, powerIterations: 1, seed: 4 });
    const rebuilt = new Float64Array(m * n);
    for (let c = 0; c < 3; c++) for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) rebuilt[i * n + j] += u[c * m + i] * s[c] * v[c * n + j];
    expect(maxDiff(rebuilt, Float32Array.from(x))).toBeLessThan(1e-5);
    // singular values of X from the eigenvalues of XᵀX
    const eig = symmetricEigen(matmul(transpose(x, m, n), x, n, m, n), n).values;
    for (let c = 0; c < 3; c++) expect(Math.abs(s[c] - Math.sqrt(eig[c])) / s[c]).toBeLessThan(1e-5);
  });

  it('hungarian finds the minimum-cost assignment found by brute force', () => {
    const permutations = (n: number): number[][] =>
      n === 0 ? [[]] : permutations(n - 1).flatMap((p) => Array.from({ length: n }, (_, i) => [...p.slice(0, i), n - 1, ...p.slice(i)]));
    for (let trial = 0; trial < 20; trial++) {
      const n = 1 + (trial % 6);
      const cost = randomMatrix(n, n, 100 + trial);
      let best = Infinity;
      for (const p of permutations(n)) best = Math.min(best, p.reduce((s, c, row) => s + cost[row * n + c], 0));
      const assignment = hungarian(cost, n);
      expect(new Set(assignment).size).toBe(n);
      const total = Array.from(assignment).reduce((s, c, row) => s + cost[row * n + c], 0);
      expect(total).toBeCloseTo(best, 12);
    }
  });

  it('keepTopMagnitudes keeps exactly the k largest magnitudes, equal ones by index', () => {
    const x = Float32Array.from([0.5, -3, 2, -2, 0, 1, 2, -0.25]);
    keepTopMagnitudes(x, 3); // 3 is kept, then the first two of the three |2|: indices 2 and 3
    expect(Array.from(x)).toEqual([0, -3, 2, -2, 0, 0, 0, 0]);
    const random = createRng(7);
    const y = Float32Array.from({ length: 1000 }, () => random() * 2 - 1);
    const sorted = Array.from(y, Math.abs).sort((p, q) => q - p);
    const kept = y.slice();
    keepTopMagnitudes(kept, 137);
    const survivors = Array.from(kept).filter((v) => v !== 0);
    expect(survivors.length).toBe(137);
    expect(Math.min(...survivors.map(Math.abs))).toBe(sorted[136]);
    const band = Float32Array.from([5, -4, 3, -2, 1]);
    keepMagnitudeBand(band, 1, 2); // drop the largest (5), keep the next two (-4, 3)
    expect(Array.from(band)).toEqual([0, -4, 3, 0, 0]);
  });
});
