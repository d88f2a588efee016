import { adapterLike, buildAdapter, countForDensity, keepTopMagnitudes, kthLargestMagnitude, validateInputs } from '../common.ts';
import { createRng, deriveSeed } from '../../util/random.ts';
import { randomizedSvd } from '../linalg.ts';
import { createKernels, denseEntryF32, type Kernels } from '../simd.ts';
import { loraScale, moduleNames, type LoraPair } from '../../model/adapter.ts';
import type { MergeContext, MergeInput, MergeParams, MergeStrategy } from '../types.ts';
import { addToBase, BASE_PARAM, combine, LAMBDA_PARAM, taskVectors, type Base } from './task-vectors.ts';

/**
 * ties: TIES-Merging (Yadav et al. 2023, "Resolving Interference When Merging Models"), per tensor:
 *   1. trim: each task vector τᵢ keeps its k = round(density·size) entries of largest magnitude. Equal magnitudes
 *      at the threshold are kept in increasing index order until exactly k are kept; zeros are never "kept".
 *   2. elect: per entry, the sign of Σ wᵢ·τ̂ᵢ (weighted, normalised weights).
 *   3. disjoint mean: Σ wᵢ·τ̂ᵢ / Σ wᵢ over the inputs whose trimmed value is non-zero with the elected sign.
 *      A zero sign sum elects nothing and the entry is 0.
 *   4. out = base + lambda·merged.
 * (Task vectors, base 'self' | 'zero' and the consensus rule are described in task-vectors.ts.)
 *
 * space 'factors': steps 1–4 on each A and each B separately (PEFT's "ties" on adapters).
 * space 'products': steps 1–4 on the dense ΔWᵢ = (alpha/r)·BᵢAᵢ of each module, then the merged ΔW is
 *   re-factorised to rank r by randomised SVD (seeded Gaussian sketch, `oversample` extra columns,
 *   `powerIterations` rounds), with the singular values split evenly between B and A. Modules are processed one at
 *   a time through reusable out×in buffers sized for the largest module (one per input with a non-zero weight
 *   and task vector, plus the base and the result), so the extra memory is bounded by one module, not the
 *   adapter. Only ΔW is meaningful in this output.
 */
export const ties: MergeStrategy = {
  name: 'ties',
  description: 'TIES-Merging: trim to top-k magnitudes, elect signs, average agreeing entries (factors or products)',
  reference: 'https://arxiv.org/abs/2306.01708',
  params: [
    { name: 'density', type: 'number', default: 0.2, min: 0, max: 1, description: 'fraction of entries each task vector keeps' },
    BASE_PARAM,
    LAMBDA_PARAM,
    { name: 'space', type: 'string', default: 'factors', choices: ['factors', 'products'], description: 'merge the A/B factors or the products B·A' },
    { name: 'oversample', type: 'number', default: 8, min: 0, integer: true, description: "products space: randomised SVD's extra sketch columns" },
    { name: 'powerIterations', type: 'number', default: 1, min: 0, integer: true, description: "products space: randomised SVD's power iterations" },
  ],
  selfSpecial: true,
  output: (params) => (params.space === 'products' ? 'product' : 'factors'),
  merge(inputs, params, ctx) {
    const weights = validateInputs(inputs);
    if (params.space === 'products') return tiesProducts(inputs, weights, params, ctx);
    const base = params.base as Base;
    return buildAdapter(inputs[0].adapter, (ref, like) => {
      const taus = taskVectors(inputs, ref, base);
      const keep = countForDensity(like.length, params.density as number);
      for (const tau of taus) keepTopMagnitudes(tau, keep);
      const merged = new Float32Array(like.length);
      combine(taus, weights, 'ties', merged);
      return addToBase(inputs, ref, base, params.lambda as number, merged);
    });
  },
};

function tiesProducts(inputs: readonly MergeInput[], weights: Float64Array, params: MergeParams, ctx: MergeContext) {
  const template = inputs[0].adapter;
  const scale = loraScale(template.config);
  const r = template.config.r;
  const base = params.base as Base;
  const lambda = params.lambda as number;
  const names = moduleNames(template);
  let largest = 0;
  let largestDim = 0;
  for (const name of names) {
    const p = template.modules.get(name)!;
    largest = Math.max(largest, p.inDim * p.outDim);
    largestDim = Math.max(largestDim, p.inDim, p.outDim);
  }
  // Inputs whose task vector is zero (the merging peer itself under base 'self') or whose weight is zero add
  // exactly nothing to any TIES sum, so they get no dense buffer and no pass at all.
  const active: number[] = [];
  for (let i = 0; i < inputs.length; i++) if (weights[i] > 0 && !(base === 'self' && i === 0)) active.push(i);
  const activeWeights = active.map((i) => weights[i]);
  // With SIMD, the dense buffers live in the memory of a kernels instance made for this merge (freed with it), so
  // the products are written where the trim and the consensus read them; the SVD gets an instance of its own.
  const kernels = createKernels();
  const svdKernels = kernels ? createKernels() : null;
  // Up to eight task vectors (the usual neighbourhood) take the fused path: each dense product is scanned once for
  // its top-k threshold and never rewritten; one kernel pass then trims, elects, averages and scales all of them.
  const fused = kernels !== null && active.length >= 1 && active.length <= 8;
  let factorScratch = 0;
  let trim: TrimScratch | null = null;
  let tables = 0;
  const dense = (length: number): Float32Array => (kernels ? kernels.f32(kernels.alloc(length * 4), length) : new Float32Array(length));
  if (kernels) {
    const r4 = r * 4;
    const bandCapacity = fused ? bandCapacityFor(largest) : 0;
    kernels.reset((active.length + 2) * (largest * 4 + 16) + 2 * r4 * (largestDim + 4) + (bandCapacity + 1) * 4 + 256);
    factorScratch = kernels.alloc(2 * r4 * (largestDim + 4));
    if (fused) {
      trim = { band: kernels.alloc((bandCapacity + 1) * 4), capacity: bandCapacity, counts: kernels.alloc(16) };
      tables = kernels.alloc(128);
    }
  }
  const taus = active.map(() => dense(largest));
  const selfDense = dense(base === 'self' ? largest : 0);
  const merged = dense(largest);
  const product = (pair: LoraPair, out: Float32Array, minus: Float32Array | null) =>
    kernels ? denseProductSimd(kernels, factorScratch, pair, r, scale, out, minus) : denseProduct(pair, r, scale, out, minus);
  const thresholds = new Int32Array(8);
  const modules = new Map<string, LoraPair>();
  for (const name of names) {
    const { inDim, outDim } = template.modules.get(name)!;
    const size = inDim * outDim;
    const views = taus.map((t) => t.subarray(0, size));
    const selfView = selfDense.subarray(0, base === 'self' ? size : 0);
    if (base === 'self') product(template.modules.get(name)!, selfView, null);
    const keep = countForDensity(size, params.density as number);
    // Trim each product right after computing it, while it is still in cache (all N together exceed L3).
    for (let slot = 0; slot < active.length; slot++) {
      product(inputs[active[slot]].adapter.modules.get(name)!, views[slot], base === 'self' ? selfView : null);
      if (trim) thresholds[slot] = trimThreshold(kernels!, trim, views[slot], keep);
      else keepTopMagnitudes(views[slot], keep);
    }
    const out = merged.subarray(0, size);
    if (fused) {
      tiesFused(kernels!, tables, views, thresholds, activeWeights, out, base === 'self' ? selfView : null, lambda, scale);
    } else {
      combine(views, activeWeights, 'ties', out);
      // out ← (base + lambda·merged) / scale: the factors carry ΔW / (alpha/r).
      for (let j = 0; j < size; j++) out[j] = ((base === 'self' ? selfView[j] : 0) + lambda * out[j]) / scale;
    }
    modules.set(name, refactorise(out, outDim, inDim, r, {
      oversample: params.oversample as number,
      powerIterations: params.powerIterations as number,
      seed: deriveSeed(ctx.seed ?? 0, name),
      kernels: svdKernels,
    }));
  }
  return adapterLike(template, modules);
}

/** Where the band scan of trimThreshold stores the magnitudes near the threshold (kernel memory). */
export interface TrimScratch {
  band: number;
  capacity: number;
  counts: number;
}

const SAMPLE = 4096;

/** Room for the band of a product of `size` entries: a margin over what the sample's bounds let through. */
export function bandCapacityFor(size: number): number {
  return Math.min(size, Math.ceil(size / 8) + 4096);
}

/**
 * The magnitude bit pattern t such that keeping the entries of x whose magnitude bits are ≥ t keeps exactly the
 * entries keepTopMagnitudes(x, keep) keeps (x lives in the kernels' memory). In the rare case where more entries
 * equal the k-th largest magnitude than may be kept, the surplus (the later indices) is zeroed in x first, as
 * keepTopMagnitudes would; otherwise x is left as it is. Always ≥ 1, so zeros are never kept.
 *
 * The k-th largest magnitude is found in one pass instead of the two (or three, with the mask) of the radix
 * select: the order statistics of a sample of 4096 entries bracket it, with a margin of about 4 binomial standard
 * deviations, in [lo, hi]; the SIMD scan counts the entries above hi and collects the few in [lo, hi], and the
 * radix select runs on those alone. When the bracket misses (the k-th largest outside it, or more entries in it
 * than there is room for, as with many equal values), the radix select runs on all of x: the sample can only make
 * this slower, never change the result.
 */
export function trimThreshold(kernels: Kernels, scratch: TrimScratch, x: Float32Array, keep: number): number {
  const n = x.length;
  if (keep >= n) return 1;
  if (keep <= 0) {
    x.fill(0);
    return 1;
  }
  const bits = new Uint32Array(x.buffer, x.byteOffset, n);
  let selected: { threshold: number; above: number; equal: number } | null = null;
  if (n >= 4 * SAMPLE) {
    // Sample positions come from a fixed seed: they only decide how fast the answer comes.
    const random = createRng(n);
    const sample = new Uint32Array(SAMPLE);
    for (let i = 0; i < SAMPLE; i++) sample[i] = bits[Math.floor(random() * n)] & 0x7fffffff;
    sample.sort();
    const p = keep / n;
    const at = SAMPLE - p * SAMPLE; // where the k-th largest falls in the ascending sample, in expectation
    const margin = 4 * Math.sqrt(SAMPLE * p * (1 - p)) + 4;
    const loAt = Math.floor(at - margin), hiAt = Math.ceil(at + margin);
    const lo = loAt <= 0 ? 0 : sample[loAt];
    const hi = hiAt >= SAMPLE ? 0x7fffffff : sample[hiAt];
    const count4 = n - (n % 4);
    kernels.exports.magnitudeBand(x.byteOffset, count4, lo, hi, scratch.band, scratch.capacity, scratch.counts);
    const counts = new Int32Array(kernels.memory, scratch.counts, 2);
    let above = counts[0];
    let inBand = counts[1];
    const band = new Uint32Array(kernels.memory, scratch.band, scratch.capacity + 1);
    for (let j = count4; j < n; j++) {
      const m = bits[j] & 0x7fffffff;
      if (m > hi) above++;
      else if (m >= lo) {
        if (inBand < scratch.capacity) band[inBand] = m;
        inBand++;
      }
    }
    const rank = keep - above; // the k-th largest overall is the rank-th largest in the band
    if (inBand <= scratch.capacity && rank >= 1 && rank <= inBand) {
      const inner = kthLargestMagnitude(band.subarray(0, inBand), rank);
      selected = { threshold: inner.threshold, above: above + inner.above, equal: inner.equal };
    }
  }
  const { threshold, above, equal } = selected ?? kthLargestMagnitude(bits, keep);
  if (threshold === 0) return 1; // fewer than keep non-zero entries: all of them stay
  let equalAllowed = keep - above;
  if (equal > equalAllowed) {
    for (let j = 0; j < n; j++) {
      if ((bits[j] & 0x7fffffff) !== threshold) continue;
      if (equalAllowed > 0) equalAllowed--;
      else bits[j] = 0;
    }
  }
  return threshold;
}

/**
 * out = fround((self + lambda·TIES(trimmed τ)) / scale) for up to eight task vectors in the kernels' memory, each
 * trimmed to the magnitudes ≥ its threshold: the tiesFused8 kernel for the first multiple of four entries, then
 * tiesFusedEntries for the rest. Missing inputs repeat the first with weight 0, as tiesConsensusUpTo8 does.
 */
export function tiesFused(
  kernels: Kernels,
  tables: number,
  taus: readonly Float32Array[],
  thresholds: ArrayLike<number>,
  weights: ArrayLike<number>,
  out: Float32Array,
  self: Float32Array | null,
  lambda: number,
  scale: number,
): void {
  const pointers = new Int32Array(kernels.memory, tables, 8);
  const limits = new Int32Array(kernels.memory, tables + 32, 8);
  const w = new Float64Array(kernels.memory, tables + 64, 8);
  const all: Float32Array[] = [];
  for (let i = 0; i < 8; i++) {
    const slot = i < taus.length ? i : 0;
    all.push(taus[slot]);
    pointers[i] = taus[slot].byteOffset;
    limits[i] = thresholds[slot];
    w[i] = i < taus.length ? weights[i] : 0;
  }
  const size = out.length;
  const count4 = size - (size % 4);
  kernels.exports.tiesFused8(tables, tables + 32, tables + 64, count4, out.byteOffset, self ? self.byteOffset : 0, lambda, scale);
  tiesFusedEntries(all, limits, w, count4, size, out, self, lambda, scale);
}

/**
 * tiesFused8 in JS for entries [from, to) of exactly eight task vectors (the kernel's leftovers, and its
 * reference in the tests): the same operations in the same order.
 */
export function tiesFusedEntries(
  taus: readonly Float32Array[],
  thresholds: ArrayLike<number>,
  weights: ArrayLike<number>,
  from: number,
  to: number,
  out: Float32Array,
  self: Float32Array | null,
  lambda: number,
  scale: number,
): void {
  const bits = taus.map((t) => new Uint32Array(t.buffer, t.byteOffset, t.length));
  for (let k = from; k < to; k++) {
    let sum = 0, positive = 0, negative = 0, positiveWeight = 0, negativeWeight = 0;
    for (let i = 0; i < 8; i++) {
      const v = (bits[i][k] & 0x7fffffff) >= thresholds[i] ? taus[i][k] : 0;
      const x = weights[i] * v;
      sum += x;
      positive += v > 0 ? x : 0;
      negative += v < 0 ? x : 0;
      positiveWeight += v > 0 ? weights[i] : 0;
      negativeWeight += v < 0 ? weights[i] : 0;
    }
    let merged = 0;
    if (sum > 0 && positiveWeight > 0) merged = positive / positiveWeight;
    else if (sum < 0 && negativeWeight > 0) merged = negative / negativeWeight;
    out[k] = ((self ? self[k] : 0) + lambda * Math.fround(merged)) / scale;
  }
}

/**
 * out[o][j] = scale·(B·A)[o][j] − (minus ? minus[o][j] : 0).
 *
 * This is the hot loop of product-space TIES (out·in·r multiply-adds per input and module), written as a
 * register-tiled matrix product: a tile of 4 output rows × 2 output columns keeps its 8 sums in registers while
 * k runs over the r rank units, loading 4 values of B and 2 of A per 8 multiply-adds. For those loads to be
 * contiguous, A is first transposed to in×r; both factors are widened to float64 once per call so the inner loop
 * does no float32 conversions. The sums run over k in increasing order in float64, as a naive loop would.
 */
export function denseProduct(pair: LoraPair, r: number, scale: number, out: Float32Array, minus: Float32Array | null): void {
  const { a, b, inDim, outDim } = pair;
  const at = new Float64Array(inDim * r);
  for (let k = 0; k < r; k++) for (let j = 0; j < inDim; j++) at[j * r + k] = a[k * inDim + j];
  const bw = Float64Array.from(b);
  const outDim4 = outDim - (outDim % 4);
  const inDim2 = inDim - (inDim % 2);
  for (let o = 0; o < outDim4; o += 4) {
    const b0 = o * r, b1 = b0 + r, b2 = b1 + r, b3 = b2 + r;
    const row0 = o * inDim, row1 = row0 + inDim, row2 = row1 + inDim, row3 = row2 + inDim;
    for (let j = 0; j < inDim2; j += 2) {
      const x0 = j * r, x1 = x0 + r;
      let s00 = 0, s01 = 0, s10 = 0, s11 = 0, s20 = 0, s21 = 0, s30 = 0, s31 = 0;
      for (let k = 0; k < r; k++) {
        const a0 = at[x0 + k], a1 = at[x1 + k];
        const c0 = bw[b0 + k], c1 = bw[b1 + k], c2 = bw[b2 + k], c3 = bw[b3 + k];
        s00 += c0 * a0; s01 += c0 * a1;
        s10 += c1 * a0; s11 += c1 * a1;
        s20 += c2 * a0; s21 += c2 * a1;
        s30 += c3 * a0; s31 += c3 * a1;
      }
      if (minus) {
        out[row0 + j] = scale * s00 - minus[row0 + j]; out[row0 + j + 1] = scale * s01 - minus[row0 + j + 1];
        out[row1 + j] = scale * s10 - minus[row1 + j]; out[row1 + j + 1] = scale * s11 - minus[row1 + j + 1];
        out[row2 + j] = scale * s20 - minus[row2 + j]; out[row2 + j + 1] = scale * s21 - minus[row2 + j + 1];
        out[row3 + j] = scale * s30 - minus[row3 + j]; out[row3 + j + 1] = scale * s31 - minus[row3 + j + 1];
      } else {
        out[row0 + j] = scale * s00; out[row0 + j + 1] = scale * s01;
        out[row1 + j] = scale * s10; out[row1 + j + 1] = scale * s11;
        out[row2 + j] = scale * s20; out[row2 + j + 1] = scale * s21;
        out[row3 + j] = scale * s30; out[row3 + j + 1] = scale * s31;
      }
    }
  }
  // Leftovers: the last outDim % 4 rows (every column), then the last column when inDim is odd (the other rows).
  const entry = (o: number, j: number) => {
    let s = 0;
    for (let k = 0; k < r; k++) s += bw[o * r + k] * at[j * r + k];
    out[o * inDim + j] = minus ? scale * s - minus[o * inDim + j] : scale * s;
  };
  for (let o = outDim4; o < outDim; o++) for (let j = 0; j < inDim; j++) entry(o, j);
  if (inDim2 < inDim) for (let o = 0; o < outDim4; o++) entry(o, inDim2);
}

/**
 * denseProduct by the float32 SIMD kernel: out[o][j] = fround(fround(scale·Σ_k b[o][k]·a[k][j]) − minus[o][j]),
 * the sum in float32 in increasing k (see simd.ts). `out` and `minus` must be views of the kernels' memory;
 * `scratch` holds room for both factors. Float32 sums lose nothing that matters here: the products are rounded to
 * float32 anyway, r is 16, and TIES only ranks and averages them. Leftover rows and columns come from
 * denseEntryF32, bit-identical to the kernel.
 */
export function denseProductSimd(kernels: Kernels, scratch: number, pair: LoraPair, r: number, scale: number, out: Float32Array, minus: Float32Array | null): void {
  const { a, b, inDim, outDim } = pair;
  const ap = scratch, bp = (scratch + a.length * 4 + 15) & ~15;
  kernels.f32(ap, a.length).set(a);
  kernels.f32(bp, b.length).set(b);
  const out4 = outDim - (outDim % 4), in8 = inDim - (inDim % 8);
  kernels.exports.denseF32(ap, bp, r, inDim, out4, in8, out.byteOffset, minus ? minus.byteOffset : 0, scale);
  for (let o = 0; o < outDim; o++) {
    for (let j = o < out4 ? in8 : 0; j < inDim; j++) out[o * inDim + j] = denseEntryF32(a, b, r, inDim, o, j, scale, minus ? minus[o * inDim + j] : 0);
  }
}

/** Balanced rank-r factors of a dense out×in matrix: B = U·√S, A = √S·Vᵀ. */
export function refactorise(
  dense: Float32Array,
  outDim: number,
  inDim: number,
  r: number,
  options: { oversample: number; powerIterations: number; seed: number; kernels?: Kernels | null },
): LoraPair {
  const { u, s, v } = randomizedSvd(dense, outDim, inDim, r, options);
  const a = new Float32Array(r * inDim);
  const b = new Float32Array(outDim * r);
  for (let c = 0; c < s.length; c++) {
    const root = Math.sqrt(s[c]);
    for (let o = 0; o < outDim; o++) b[o * r + c] = u[c * outDim + o] * root;
    for (let j = 0; j < inDim; j++) a[c * inDim + j] = v[c * inDim + j] * root;
  }
  return { a, b, inDim, outDim };
}
