/**
 * The performance kernels against naive references written out here: tiled products (every leftover shape),
 * the top-eigenpair solver (including repeated eigenvalues), the dense LoRA product, the one-pass TIES consensus
 * (bit-identical to the two-pass definition), the branch-free top-k trim, the one-pass trim threshold and fused
 * trim + consensus of product-space TIES, and the inlined DARE generator.
 */
import { describe, expect, it } from 'vitest';
import { createRng } from '../util/random.ts';
import { keepMagnitudeBand, keepTopMagnitudes, weightedSumInto } from './common.ts';
import { choleskyQr2, gramOfColumns, householderQr, randomizedSvd, rowsDotColumns, rowsDotRows, symmetricEigen, symmetricEigenTop } from './linalg.ts';
import { createKernels, denseEntryF32, disableSimd, kernelModuleBytes } from './simd.ts';
import { dropAndRescale } from './strategies/dare.ts';
import { combine } from './strategies/task-vectors.ts';
import { bandCapacityFor, denseProduct, denseProductSimd, tiesFused, tiesFusedEntries, trimThreshold } from './strategies/ties.ts';

function randomArray(length: number, seed: number): Float64Array {
  const random = createRng(seed);
  return Float64Array.from({ length }, () => random() * 2 - 1);
}

function maxDiff(x: ArrayLike<number>, y: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - y[i]));
  return m;
}

/** A symmetric matrix Q·diag(spectrum)·Qᵀ with a random orthogonal Q. */
function withSpectrum(spectrum: number[], seed: number): Float64Array {
  const n = spectrum.length;
  const q = householderQr(randomArray(n * n, seed), n, n).q; // by columns
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
    let s = 0;
    for (let k = 0; k < n; k++) s += q[k * n + i] * spectrum[k] * q[k * n + j];
    a[i * n + j] = s;
  }
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) a[i * n + j] = a[j * n + i];
  return a;
}

describe('tiled products', () => {
  it('rowsDotColumns equals naive dot products for every leftover shape and output stride', () => {
    for (let rows = 1; rows <= 9; rows++) for (let cols = 1; cols <= 5; cols++) {
      const len = 7;
      const p = Float32Array.from(randomArray(rows * len, rows * 10 + cols));
      const c = randomArray(cols * len, rows + 100 * cols);
      // row-major output (stride cols, 1) and column-major output (stride 1, rows)
      for (const [rowStride, colStride] of [[cols, 1], [1, rows]]) {
        const out = new Float64Array(rows * cols);
        rowsDotColumns(p, rows, len, c, cols, out, rowStride, colStride);
        for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) {
          let s = 0;
          for (let t = 0; t < len; t++) s += p[i * len + t] * c[j * len + t];
          expect(Math.abs(out[i * rowStride + j * colStride] - s)).toBeLessThan(1e-12);
        }
      }
    }
  });

  it('rowsDotRows equals naive dot products for every leftover shape', () => {
    for (let xs = 1; xs <= 9; xs++) for (let ys = 1; ys <= 5; ys++) {
      const len = 5;
      const x = randomArray(xs * len, xs);
      const y = randomArray(ys * len, 50 + ys);
      const out = new Float64Array(xs * ys);
      rowsDotRows(x, xs, y, ys, len, out);
      for (let i = 0; i < xs; i++) for (let j = 0; j < ys; j++) {
        let s = 0;
        for (let t = 0; t < len; t++) s += x[i * len + t] * y[j * len + t];
        expect(Math.abs(out[i * ys + j] - s)).toBeLessThan(1e-12);
      }
    }
  });

  it('randomizedSvd recovers an exactly low-rank matrix of odd shape (tile leftovers in every product)', () => {
    const m = 13, n = 9, rank = 3;
    const x = lowRankMatrix(m, n, rank, 1, 2);
    const rebuilt = rebuildFromSvd(randomizedSvd(x, m, n, rank, { oversample: 2, powerIterations: 2, seed: 5 }), m, n, rank);
    expect(maxDiff(rebuilt, x)).toBeLessThan(1e-5);
  });
});

describe('choleskyQr2', () => {
  it('gives Y = Q·R with orthonormal Q and upper-triangular R, and declines a rank-deficient Y', () => {
    for (const [m, n] of [[7, 1], [40, 6], [3072, 24], [9, 9]]) {
      const y = randomArray(m * n, m + n);
      // a wide spread of column scales (condition number ~1e3) on top of the random directions
      for (let j = 0; j < n; j++) for (let i = 0; i < m; i++) y[j * m + i] *= 10 ** (-3 * j / Math.max(1, n - 1));
      const { q, r } = choleskyQr2(y, m, n, gramOfColumns)!;
      for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) {
        let dot = 0;
        for (let i = 0; i < m; i++) dot += q[a * m + i] * q[b * m + i];
        expect(Math.abs(dot - (a === b ? 1 : 0)), `${m}x${n} QᵀQ`).toBeLessThan(1e-13);
        if (a > b) expect(r[a * n + b]).toBe(0);
      }
      let err = 0;
      for (let j = 0; j < n; j++) for (let i = 0; i < m; i++) {
        let s = 0;
        for (let p = 0; p <= j; p++) s += q[p * m + i] * r[p * n + j];
        err = Math.max(err, Math.abs(s - y[j * m + i]));
      }
      expect(err, `${m}x${n} QR − Y`).toBeLessThan(1e-13);
    }
    const deficient = randomArray(30 * 3, 4);
    deficient.copyWithin(60, 0, 30); // third column = first
    expect(choleskyQr2(deficient, 30, 3, gramOfColumns)).toBeNull();
  });
});

describe('symmetricEigenTop', () => {
  const check = (a: Float64Array, n: number, count: number) => {
    const full = symmetricEigen(a, n);
    const top = symmetricEigenTop(a, n, count);
    const scale = Math.max(1, Math.abs(full.values[0]));
    expect(top.values.length).toBe(count);
    for (let c = 0; c < count; c++) {
      expect(Math.abs(top.values[c] - full.values[c])).toBeLessThan(1e-12 * scale);
      // A·v = λ·v
      for (let i = 0; i < n; i++) {
        let s = 0;
        for (let j = 0; j < n; j++) s += a[i * n + j] * top.vectors[j * count + c];
        expect(Math.abs(s - top.values[c] * top.vectors[i * count + c])).toBeLessThan(1e-11 * scale);
      }
      // orthonormal columns
      for (let d = 0; d < count; d++) {
        let s = 0;
        for (let i = 0; i < n; i++) s += top.vectors[i * count + c] * top.vectors[i * count + d];
        expect(Math.abs(s - (c === d ? 1 : 0))).toBeLessThan(1e-11);
      }
    }
  };

  it('matches the full decomposition on a random Gram matrix', () => {
    const n = 40, m = 60;
    const x = randomArray(m * n, 3);
    const g = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
      let s = 0;
      for (let t = 0; t < m; t++) s += x[t * n + i] * x[t * n + j];
      g[i * n + j] = s;
    }
    check(g, n, 8);
  });

  it('gives orthonormal eigenvectors for repeated and nearly repeated eigenvalues', () => {
    check(withSpectrum([5, 5, 5, 3, 3, 1, 0, 0, 0, 0], 7), 10, 6);
    check(withSpectrum([2, 2, 2, 2, 2, 2, 2, 2], 8), 8, 8);
    check(withSpectrum([7, 7 + 1e-14, 3, 2, 1e-8, 1e-8, 0, 0], 9), 8, 5);
    check(withSpectrum(Array.from({ length: 30 }, (_, i) => (i < 12 ? 1 : 0)), 10), 30, 14);
  });

  it('handles diagonal, 1×1 and zero matrices', () => {
    const diag = new Float64Array(36);
    [6, 1, 4, 3, 5, 2].forEach((v, i) => (diag[i * 6 + i] = v));
    check(diag, 6, 4);
    check(Float64Array.from([4]), 1, 1);
    const zero = symmetricEigenTop(new Float64Array(9), 3, 2);
    expect(Array.from(zero.values)).toEqual([0, 0]);
    expect(Array.from(zero.vectors)).toEqual([1, 0, 0, 1, 0, 0]);
  });
});

describe('denseProduct', () => {
  it('equals scale·B·A − minus computed naively, for shapes with tile leftovers', () => {
    for (const [r, inDim, outDim] of [[3, 5, 7], [16, 7, 9], [1, 1, 1], [4, 2, 4], [2, 6, 8]]) {
      const a = Float32Array.from(randomArray(r * inDim, r + inDim));
      const b = Float32Array.from(randomArray(outDim * r, outDim));
      const minus = Float32Array.from(randomArray(inDim * outDim, 77));
      for (const m of [null, minus]) {
        const out = new Float32Array(inDim * outDim);
        denseProduct({ a, b, inDim, outDim }, r, 1.5, out, m);
        for (let o = 0; o < outDim; o++) for (let j = 0; j < inDim; j++) {
          let s = 0;
          for (let k = 0; k < r; k++) s += b[o * r + k] * a[k * inDim + j];
          expect(Math.abs(out[o * inDim + j] - (1.5 * s - (m ? m[o * inDim + j] : 0)))).toBeLessThan(1e-6);
        }
      }
    }
  });
});

describe('TIES consensus', () => {
  /** The two-pass definition: elect the sign of Σ wᵢτᵢ, then average the agreeing entries by their weights. */
  const naive = (taus: Float32Array[], weights: number[]) =>
    Float32Array.from({ length: taus[0].length }, (_, j) => {
      let sum = 0;
      for (let i = 0; i < taus.length; i++) sum += weights[i] * taus[i][j];
      let agreeing = 0, weight = 0;
      for (let i = 0; i < taus.length; i++) {
        if (taus[i][j] * sum > 0) {
          agreeing += weights[i] * taus[i][j];
          weight += weights[i];
        }
      }
      return weight > 0 ? agreeing / weight : 0;
    });

  it('is bit-identical to the two-pass definition, with cancellations, zeros and zero weights, for 1 to 9 inputs', () => {
    for (let count = 1; count <= 9; count++) {
      const random = createRng(count);
      // values on a coarse grid so that weighted sums cancel exactly and often
      const taus = Array.from({ length: count }, () => Float32Array.from({ length: 5000 }, () => Math.round((random() - 0.5) * 6) / 4));
      const weights = Array.from({ length: count }, (_, i) => (i === 1 ? 0 : [1, 2, 3][i % 3] / 6));
      const out = new Float32Array(5000);
      combine(taus, weights, 'ties', out);
      const expected = naive(taus, weights);
      for (let j = 0; j < out.length; j++) expect(Object.is(out[j], expected[j]) || out[j] === expected[j]).toBe(true);
    }
  });
});

describe('keepTopMagnitudes', () => {
  it('matches a sort-based reference with equal magnitudes at the threshold, zeros and negative zeros', () => {
    const random = createRng(11);
    for (let trial = 0; trial < 60; trial++) {
      const n = 1 + Math.floor(random() * 40);
      const x = Float32Array.from({ length: n }, () => {
        const u = random();
        return u < 0.2 ? 0 : u < 0.3 ? -0 : Math.round((random() - 0.5) * 6);
      });
      for (let keep = 0; keep <= n; keep++) {
        // reference: order by magnitude (desc), then index; zeros are never kept (keeping all leaves x as it is)
        const order = Array.from(x.keys()).sort((i, j) => Math.abs(x[j]) - Math.abs(x[i]) || i - j);
        const expected = new Float32Array(n);
        for (const i of order.slice(0, keep)) if (x[i] !== 0) expected[i] = x[i];
        if (keep === n) expected.set(x);
        const got = x.slice();
        keepTopMagnitudes(got, keep);
        for (let j = 0; j < n; j++) expect(Object.is(got[j], expected[j]), `n=${n} keep=${keep} j=${j}`).toBe(true);
      }
    }
  });
});

describe('dropAndRescale', () => {
  it('draws the same mask as createRng with the same seed', () => {
    const tau = Float32Array.from(randomArray(1000, 4));
    const got = tau.slice();
    dropAndRescale(got, 0.3, 12345);
    const random = createRng(12345);
    const expected = tau.map((v) => (random() < 0.3 ? v / 0.3 : 0));
    expect(maxDiff(got, expected)).toBe(0);
    expect(got.filter((v) => v !== 0).length).toBeGreaterThan(200);
  });
});

describe('keepMagnitudeBand', () => {
  it('matches a sort-based reference (ranks [dropTop, dropTop + keep), ties by index, zeros included)', () => {
    const random = createRng(21);
    for (let trial = 0; trial < 80; trial++) {
      const n = 1 + Math.floor(random() * 30);
      const coarse = trial % 2 === 0;
      const x = Float32Array.from({ length: n }, () => (coarse ? Math.round((random() - 0.5) * 5) : random() - 0.5));
      for (let dropTop = 1; dropTop <= n; dropTop += 2) {
        for (let keep = 0; keep <= n; keep += 3) {
          const order = Array.from(x.keys()).sort((i, j) => Math.abs(x[j]) - Math.abs(x[i]) || i - j);
          const expected = new Float32Array(n);
          for (const i of order.slice(dropTop, dropTop + keep)) expected[i] = x[i];
          const got = x.slice();
          keepMagnitudeBand(got, dropTop, keep);
          for (let j = 0; j < n; j++) expect(Object.is(got[j], expected[j]) || got[j] === expected[j], `n=${n} drop=${dropTop} keep=${keep} j=${j}`).toBe(true);
        }
      }
    }
  });
});

describe('weightedSumInto', () => {
  it('equals a left-to-right sum over groups of four for 1 to 13 inputs and every chunk leftover', () => {
    for (let count = 1; count <= 13; count++) {
      for (const length of [1, 7, 4096, 4096 * 2 + 3]) {
        const arrays = Array.from({ length: count }, (_, i) => Float32Array.from(randomArray(length, 31 * count + i)));
        const weights = Array.from({ length: count }, (_, i) => (i + 1) / (count * 3));
        const out = new Float32Array(length);
        expect(weightedSumInto(out, arrays, weights)).toBe(true);
        let mismatches = 0;
        for (let k = 0; k < length; k++) {
          let acc = 0;
          for (let g = 0; g < count; g += 4) {
            let s = 0;
            for (let i = g; i < Math.min(count, g + 4); i++) s += weights[i] * arrays[i][k];
            acc += s;
          }
          if (out[k] !== Math.fround(acc)) mismatches++;
        }
        expect(mismatches, `count=${count} length=${length}`).toBe(0);
      }
    }
  });

  it('reports NaN, infinities and float32 overflow', () => {
    for (const count of [3, 8, 11]) {
      for (const bad of [NaN, Infinity, 3e38]) {
        const arrays = Array.from({ length: count }, () => new Float32Array(5000).fill(1));
        arrays[count - 1][4321] = bad;
        if (bad === 3e38) arrays[0][4321] = 3e38;
        const weights = Array.from({ length: count }, () => (bad === 3e38 ? 1 : 1 / count));
        expect(weightedSumInto(new Float32Array(5000), arrays, weights), `count=${count} bad=${bad}`).toBe(false);
      }
    }
  });
});

describe('SIMD kernels (and the JS paths they replace)', () => {
  it('assembles the same valid module every time', () => {
    const bytes = kernelModuleBytes();
    expect(Array.from(kernelModuleBytes())).toEqual(Array.from(bytes));
    expect(WebAssembly.validate(bytes)).toBe(true);
    expect(createKernels()).not.toBeNull();
  });

  for (const simd of [true, false]) {
    const label = simd ? 'SIMD' : 'JS';
    const withSimd = (fn: () => void) => {
      disableSimd(!simd);
      try {
        fn();
      } finally {
        disableSimd(false);
      }
    };

    it(`${label}: gramOfColumns equals naive dot products for float32 and float64 columns, every leftover shape`, () => withSimd(() => {
      for (let n = 1; n <= 9; n++) for (const m of [1, 2, 7, 8]) {
        const x64 = randomArray(m * n, 13 * n + m);
        for (const x of [Float32Array.from(x64), x64]) {
          const g = gramOfColumns(x, m, n);
          for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
            let s = 0;
            for (let t = 0; t < m; t++) s += x[i * m + t] * x[j * m + t];
            expect(Math.abs(g[i * n + j] - s), `n=${n} m=${m} (${i},${j})`).toBeLessThan(1e-12);
          }
        }
      }
    }));

    it(`${label}: rowsDotColumns equals naive dot products for odd and even lengths`, () => withSimd(() => {
      for (const len of [1, 2, 5, 8]) for (let rows = 1; rows <= 9; rows += 2) for (let cols = 1; cols <= 4; cols++) {
        const p = Float32Array.from(randomArray(rows * len, rows + 7 * len));
        const c = randomArray(cols * len, cols + 3 * len);
        const out = new Float64Array(rows * cols);
        rowsDotColumns(p, rows, len, c, cols, out, 1, rows);
        for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) {
          let s = 0;
          for (let t = 0; t < len; t++) s += p[i * len + t] * c[j * len + t];
          expect(Math.abs(out[i + j * rows] - s)).toBeLessThan(1e-12);
        }
      }
    }));

    it(`${label}: rowsDotRows equals naive dot products for odd and even lengths, every leftover shape`, () => withSimd(() => {
      for (const len of [1, 2, 5, 8]) for (let xs = 1; xs <= 9; xs += 2) for (let ys = 1; ys <= 4; ys++) {
        const x = randomArray(xs * len, xs + 11 * len);
        const y = randomArray(ys * len, ys + 5 * len);
        const out = new Float64Array(xs * ys);
        rowsDotRows(x, xs, y, ys, len, out);
        for (let i = 0; i < xs; i++) for (let j = 0; j < ys; j++) {
          let s = 0;
          for (let t = 0; t < len; t++) s += x[i * len + t] * y[j * len + t];
          expect(Math.abs(out[i * ys + j] - s)).toBeLessThan(1e-12);
        }
      }
    }));

    it(`${label}: symmetricEigenTop (tridiagonalisation kernels) matches the full decomposition for odd and even n`, () => withSimd(() => {
      for (const n of [8, 9, 13, 40, 41]) {
        const x = randomArray(n * (n + 3), n);
        const g = new Float64Array(n * n);
        for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
          let s = 0;
          for (let t = 0; t < n + 3; t++) s += x[t * n + i] * x[t * n + j];
          g[i * n + j] = s;
        }
        const count = Math.min(6, n);
        const full = symmetricEigen(g, n);
        const top = symmetricEigenTop(g, n, count);
        const scale = Math.abs(full.values[0]);
        for (let c = 0; c < count; c++) {
          expect(Math.abs(top.values[c] - full.values[c]), `n=${n} λ${c}`).toBeLessThan(1e-12 * scale);
          for (let i = 0; i < n; i++) {
            let s = 0;
            for (let j = 0; j < n; j++) s += g[i * n + j] * top.vectors[j * count + c];
            expect(Math.abs(s - top.values[c] * top.vectors[i * count + c]), `n=${n} A·v${c}`).toBeLessThan(1e-11 * scale);
          }
        }
      }
    }));

    it(`${label}: randomizedSvd recovers exactly low-rank matrices, tall and wide, with every leftover`, () => withSimd(() => {
      for (const [m, n, rank] of [[13, 9, 3], [6, 11, 2], [40, 33, 5]]) {
        const x = lowRankMatrix(m, n, rank, m, n);
        const rebuilt = rebuildFromSvd(randomizedSvd(x, m, n, rank, { oversample: 3, powerIterations: 1, seed: 5 }), m, n, rank);
        expect(maxDiff(rebuilt, x), `${m}x${n}`).toBeLessThan(1e-5);
      }
    }));
  }

  it('denseProductSimd is bit-identical to the float32 entry formula and within float32 rounding of the exact product', () => {
    for (const [r, inDim, outDim] of [[3, 5, 7], [16, 17, 9], [1, 1, 1], [4, 8, 4], [2, 24, 13], [16, 64, 12]]) {
      const a = Float32Array.from(randomArray(r * inDim, r + inDim));
      const b = Float32Array.from(randomArray(outDim * r, outDim));
      const kernels = createKernels()!;
      const size = inDim * outDim;
      kernels.reset(2 * size * 4 + 2 * r * 4 * (Math.max(inDim, outDim) + 4) + 64);
      const scratch = kernels.alloc(2 * r * 4 * (Math.max(inDim, outDim) + 4));
      const out = kernels.f32(kernels.alloc(size * 4), size);
      const minus = kernels.f32(kernels.alloc(size * 4), size);
      minus.set(Float32Array.from(randomArray(size, 77)));
      for (const m of [null, minus]) {
        denseProductSimd(kernels, scratch, { a, b, inDim, outDim }, r, 1.5, out, m);
        let mismatches = 0;
        for (let o = 0; o < outDim; o++) for (let j = 0; j < inDim; j++) {
          const want = denseEntryF32(a, b, r, inDim, o, j, 1.5, m ? m[o * inDim + j] : 0);
          if (!Object.is(out[o * inDim + j], want)) mismatches++;
          let s = 0, bound = 0;
          for (let k = 0; k < r; k++) {
            s += b[o * r + k] * a[k * inDim + j];
            bound += Math.abs(b[o * r + k] * a[k * inDim + j]);
          }
          // float32 summation error ≤ r·u·Σ|terms| (u = 2⁻²⁴), then the scaling and the subtraction round once each
          const exact = 1.5 * s - (m ? m[o * inDim + j] : 0);
          expect(Math.abs(out[o * inDim + j] - exact)).toBeLessThanOrEqual(1.5 * (r + 1) * 2 ** -24 * bound + 2 * 2 ** -24 * Math.abs(exact) + 1e-30);
        }
        expect(mismatches, `r=${r} ${outDim}x${inDim}`).toBe(0);
      }
    }
  });

  /** Values with many exact ties and zeros (coarse grid), or continuous ones, of either sign. */
  const sampleValues = (n: number, seed: number, coarse: boolean) => {
    const random = createRng(seed);
    return Float32Array.from({ length: n }, () => {
      const u = random();
      if (u < 0.05) return 0;
      if (u < 0.07) return -0;
      return coarse ? Math.round((random() - 0.5) * 12) / 4 : (random() - 0.5) * 2 ** (8 * random() - 4);
    });
  };

  it('trimThreshold keeps exactly what keepTopMagnitudes keeps (sampled band, its fallbacks, leftovers)', () => {
    const kernels = createKernels()!;
    for (const [n, coarse, capacity] of [
      [7, false, 0], [5000, true, 0], [16384, false, 0], [40001, false, 0], [40003, true, 0], [65536, false, 0],
      [40002, false, 64], // a band larger than its room: the full radix select
    ] as Array<[number, boolean, number]>) {
      const room = capacity || bandCapacityFor(n);
      kernels.reset(n * 4 + (room + 1) * 4 + 64);
      const x = kernels.f32(kernels.alloc(n * 4), n);
      const scratch = { band: kernels.alloc((room + 1) * 4), capacity: room, counts: kernels.alloc(16) };
      const original = sampleValues(n, n, coarse);
      for (const keep of [0, 1, 2, Math.round(n * 0.2), Math.round(n * 0.5), n - 1, n]) {
        x.set(original);
        const expected = original.slice();
        keepTopMagnitudes(expected, keep);
        const threshold = trimThreshold(kernels, scratch, x, keep);
        expect(threshold).toBeGreaterThanOrEqual(1);
        let kept = 0;
        for (let j = 0; j < n; j++) {
          const got = (new Uint32Array(x.buffer, x.byteOffset + 4 * j, 1)[0] & 0x7fffffff) >= threshold ? x[j] : 0;
          if (got !== 0) kept++;
          // ±0 differ only where keep ≥ n leaves a −0 in place; both mean "no vote"
          if (got !== expected[j]) expect.fail(`n=${n} keep=${keep} j=${j}: ${got} vs ${expected[j]}`);
        }
        expect(kept).toBeLessThanOrEqual(Math.max(keep, 0));
      }
    }
  });

  it('tiesFused is bit-identical to keepTopMagnitudes + the TIES consensus + the output scaling, 1 to 8 inputs', () => {
    for (let count = 1; count <= 8; count++) for (const size of [4, 13, 4099]) for (const withSelf of [false, true]) {
      const kernels = createKernels()!;
      kernels.reset((count + 2) * (size * 4 + 16) + bandCapacityFor(size) * 4 + 256);
      const coarse = count % 2 === 0;
      const taus = Array.from({ length: count }, (_, i) => {
        const t = kernels.f32(kernels.alloc(size * 4), size);
        t.set(sampleValues(size, 31 * count + i + size, coarse));
        return t;
      });
      const self = withSelf ? kernels.f32(kernels.alloc(size * 4), size) : null;
      self?.set(sampleValues(size, 999 + size, false));
      const out = kernels.f32(kernels.alloc(size * 4), size);
      const scratch = { band: kernels.alloc((bandCapacityFor(size) + 1) * 4), capacity: bandCapacityFor(size), counts: kernels.alloc(16) };
      const tables = kernels.alloc(128);
      const weights = Array.from({ length: count }, (_, i) => (i === 1 ? 0 : [1, 2, 3][i % 3] / 7));
      const keep = Math.round(size * 0.3);
      // reference: the JS path of tiesProducts
      const trimmed = taus.map((t) => {
        const c = t.slice();
        keepTopMagnitudes(c, keep);
        return c;
      });
      const expected = new Float32Array(size);
      combine(trimmed, weights, 'ties', expected);
      for (let j = 0; j < size; j++) expected[j] = ((self ? self[j] : 0) + 0.75 * expected[j]) / 2;
      const thresholds = taus.map((t) => trimThreshold(kernels, scratch, t, keep));
      tiesFused(kernels, tables, taus, thresholds, weights, out, self, 0.75, 2);
      let mismatches = 0;
      for (let j = 0; j < size; j++) if (!Object.is(out[j], expected[j])) mismatches++;
      expect(mismatches, `count=${count} size=${size} self=${withSelf}`).toBe(0);
      // and the JS leftover path over the whole range
      const all = Array.from({ length: 8 }, (_, i) => (i < count ? taus[i] : taus[0]));
      const js = new Float32Array(size);
      tiesFusedEntries(all, all.map((_, i) => thresholds[i < count ? i : 0]), all.map((_, i) => (i < count ? weights[i] : 0)), 0, size, js, self, 0.75, 2);
      for (let j = 0; j < size; j++) if (!Object.is(js[j], expected[j])) mismatches++;
      expect(mismatches, `JS entries: count=${count} size=${size} self=${withSelf}`).toBe(0);
    }
  });
});

/** An m×n matrix of exactly rank `rank`: the product of two seeded random factors. */
function lowRankMatrix(m: number, n: number, rank: number, leftSeed: number, rightSeed: number): Float32Array {
  const left = randomArray(m * rank, leftSeed), right = randomArray(rank * n, rightSeed);
  const x = new Float32Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
    let sum = 0;
    for (let k = 0; k < rank; k++) sum += left[i * rank + k] * right[k * n + j];
    x[i * n + j] = sum;
  }
  return x;
}

/** Σ_c s_c · u_c v_cᵀ, the matrix a truncated SVD stands for. */
function rebuildFromSvd(svd: { u: ArrayLike<number>; s: ArrayLike<number>; v: ArrayLike<number> }, m: number, n: number, rank: number): Float64Array {
  const { u, s, v } = svd;
  const rebuilt = new Float64Array(m * n);
  for (let c = 0; c < rank; c++) for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) rebuilt[i * n + j] += u[c * m + i] * s[c] * v[c * n + j];
  return rebuilt;
}
