/** Helpers every strategy shares: input validation, tensor walking, weighted sums, seeded randomness, top-k masks. */
import { assertAdapterShapes, moduleNames, schemaHash, type Adapter, type LoraPair } from '../model/adapter.ts';
import { MergeInputError, SchemaMismatchError } from './errors.ts';
import type { MergeInput } from './types.ts';
import { createRng } from '../util/random.ts';

export type FactorKind = 'a' | 'b';

/** A tensor of an adapter: the A or B factor of one module. */
export interface TensorRef {
  module: string;
  kind: FactorKind;
}

/** All tensors of an adapter in canonical order (sorted module names, A before B). */
export function tensorRefs(adapter: Adapter): TensorRef[] {
  const refs: TensorRef[] = [];
  for (const module of moduleNames(adapter)) refs.push({ module, kind: 'a' }, { module, kind: 'b' });
  return refs;
}

export function tensorOf(adapter: Adapter, ref: TensorRef): Float32Array {
  const pair = adapter.modules.get(ref.module)!;
  return ref.kind === 'a' ? pair.a : pair.b;
}

/**
 * A new adapter with the template's schema whose tensors come from `produce`, called once per tensor in canonical
 * order. `produce` must return a fresh array of the same length.
 */
export function buildAdapter(template: Adapter, produce: (ref: TensorRef, like: Float32Array) => Float32Array): Adapter {
  const modules = new Map<string, LoraPair>();
  for (const module of moduleNames(template)) {
    const pair = template.modules.get(module)!;
    const a = produce({ module, kind: 'a' }, pair.a);
    const b = produce({ module, kind: 'b' }, pair.b);
    modules.set(module, { a, b, inDim: pair.inDim, outDim: pair.outDim });
  }
  return adapterLike(template, modules);
}

export function adapterLike(template: Adapter, modules: Map<string, LoraPair>): Adapter {
  return {
    baseModelId: template.baseModelId,
    config: { ...template.config, targetModules: [...template.config.targetModules] },
    modules,
  };
}

/**
 * Checks what every strategy relies on and returns the weights normalised to sum to one.
 * `checkFinite: false` skips the scan of every value; only fedavg uses it, because it detects non-finite inputs
 * from its output (0·∞ and 0·NaN are NaN, so any non-finite input value makes some output value non-finite).
 */
export function validateInputs(inputs: readonly MergeInput[], options: { checkFinite?: boolean } = {}): Float64Array {
  if (inputs.length === 0) throw new MergeInputError('nothing to merge: no inputs');
  const first = schemaHash(inputs[0].adapter);
  for (let i = 0; i < inputs.length; i++) {
    const { adapter, meta } = inputs[i];
    try {
      assertAdapterShapes(adapter);
    } catch (err) {
      throw new MergeInputError(`input ${i} (${meta.peerId}): ${(err as Error).message}`);
    }
    if (i > 0) {
      const hash = schemaHash(adapter);
      if (hash !== first) {
        throw new SchemaMismatchError(
          `input ${i} (${meta.peerId}) has schema ${hash}, input 0 (${inputs[0].meta.peerId}) has ${first}: ` +
            `base model, rank, alpha, target modules or shapes differ (${describeSchema(adapter)} vs ${describeSchema(inputs[0].adapter)})`,
        );
      }
    }
  }
  const weights = new Float64Array(inputs.length);
  let total = 0;
  for (let i = 0; i < inputs.length; i++) {
    const w = inputs[i].weight;
    if (typeof w !== 'number' || !Number.isFinite(w) || w < 0) {
      throw new MergeInputError(`input ${i} (${inputs[i].meta.peerId}): weight must be a finite number >= 0, got ${w}`);
    }
    weights[i] = w;
    total += w;
  }
  if (!(total > 0)) throw new MergeInputError(`weights sum to ${total}; at least one weight must be > 0`);
  for (let i = 0; i < weights.length; i++) weights[i] /= total;
  if (options.checkFinite !== false) {
    for (let i = 0; i < inputs.length; i++) assertFiniteAdapter(inputs[i], i);
  }
  return weights;
}

function describeSchema(adapter: Adapter): string {
  return `${adapter.baseModelId} r=${adapter.config.r} alpha=${adapter.config.alpha} targets=[${[...adapter.config.targetModules].sort().join(',')}] ${adapter.modules.size} modules`;
}

export function assertFiniteAdapter(input: MergeInput, index: number): void {
  for (const ref of tensorRefs(input.adapter)) {
    const t = tensorOf(input.adapter, ref);
    for (let j = 0; j < t.length; j++) {
      const v = t[j];
      if (v - v !== 0) {
        throw new MergeInputError(`input ${index} (${input.meta.peerId}): ${ref.module} lora_${ref.kind.toUpperCase()}[${j}] is ${v}`);
      }
    }
  }
}

const CHUNK = 4096;

/**
 * out = Σ weights[i]·arrays[i] in float64, written once. Returns false when some output value is not finite.
 *
 * Inputs go four at a time, with their sum in registers, one L1-sized chunk of a float64 accumulator at a time.
 * The first group stores into the accumulator without reading it and the last group writes the output directly,
 * so with up to eight inputs (the usual swarm neighbourhood) every output value costs one accumulator store and
 * load at most: a separate zero fill and copy-out pass made fedavg about 1.3× slower. The sums run in the same
 * order as a plain left-to-right accumulation over groups of four (0 + s = s exactly), whatever the grouping.
 */
export function weightedSumInto(out: Float32Array, arrays: readonly Float32Array[], weights: ArrayLike<number>): boolean {
  const n = arrays.length;
  if (n === 0) {
    out.fill(0);
    return true;
  }
  const acc = n > 8 ? new Float64Array(Math.min(CHUNK, out.length)) : null;
  // A group short of four repeats its first input with weight 0: it adds ±0, which changes no sum that started at +0.
  const groups = Math.ceil(n / 4);
  const pick = (i: number) => (i < n ? arrays[i] : arrays[0]);
  const weightOf = (i: number) => (i < n ? weights[i] : 0);
  let finite = true;
  if (groups === 2) {
    // Up to eight inputs (the usual swarm neighbourhood) in one pass, no accumulator at all; the parentheses keep
    // the order of the grouped sums.
    const x0 = pick(0), x1 = pick(1), x2 = pick(2), x3 = pick(3), x4 = pick(4), x5 = pick(5), x6 = pick(6), x7 = pick(7);
    const w0 = weightOf(0), w1 = weightOf(1), w2 = weightOf(2), w3 = weightOf(3);
    const w4 = weightOf(4), w5 = weightOf(5), w6 = weightOf(6), w7 = weightOf(7);
    let check = 0;
    for (let k = 0; k < out.length; k++) {
      const v = Math.fround((w0 * x0[k] + w1 * x1[k] + w2 * x2[k] + w3 * x3[k]) + (w4 * x4[k] + w5 * x5[k] + w6 * x6[k] + w7 * x7[k]));
      out[k] = v;
      check += v - v;
    }
    return check === 0;
  }
  for (let start = 0; start < out.length; start += CHUNK) {
    const end = Math.min(out.length, start + CHUNK);
    for (let g = 0; g < groups; g++) {
      const i = 4 * g;
      const x0 = pick(i), x1 = pick(i + 1), x2 = pick(i + 2), x3 = pick(i + 3);
      const w0 = weightOf(i), w1 = weightOf(i + 1), w2 = weightOf(i + 2), w3 = weightOf(i + 3);
      const first = g === 0, last = g === groups - 1;
      if (first && last) {
        for (let k = start; k < end; k++) out[k] = w0 * x0[k] + w1 * x1[k] + w2 * x2[k] + w3 * x3[k];
      } else if (first) {
        for (let k = start; k < end; k++) acc![k - start] = w0 * x0[k] + w1 * x1[k] + w2 * x2[k] + w3 * x3[k];
      } else if (last) {
        for (let k = start; k < end; k++) out[k] = acc![k - start] + (w0 * x0[k] + w1 * x1[k] + w2 * x2[k] + w3 * x3[k]);
      } else {
        for (let k = start; k < end; k++) acc![k - start] += w0 * x0[k] + w1 * x1[k] + w2 * x2[k] + w3 * x3[k];
      }
    }
    // One NaN/∞ check per chunk on the float32 output: v − v is 0 for finite v and NaN otherwise.
    let check = 0;
    for (let k = start; k < end; k++) check += out[k] - out[k];
    if (check !== 0) finite = false;
  }
  return finite;
}

/** False when some value is NaN or ±∞ (a float64 sum can be finite and still overflow float32). */
function finiteFloat32(x: Float32Array): boolean {
  let check = 0;
  for (let k = 0; k < x.length; k++) check += x[k] - x[k];
  return check === 0;
}

/** Standard normal samples from a seeded uniform source (Box–Muller). */
export function gaussianRandom(seed: number): () => number {
  const uniform = createRng(seed);
  let spare: number | null = null;
  return () => {
    if (spare !== null) {
      const s = spare;
      spare = null;
      return s;
    }
    const u = 1 - uniform();
    const v = uniform();
    const radius = Math.sqrt(-2 * Math.log(u));
    spare = radius * Math.sin(2 * Math.PI * v);
    return radius * Math.cos(2 * Math.PI * v);
  };
}

/**
 * Zeroes all but the `keep` entries of largest magnitude, in place. Exactly `keep` entries survive when at
 * least that many are non-zero: entries strictly above the threshold magnitude, then entries equal to it in
 * increasing index order. Zeros never count as kept (they carry no sign). Runs in two histogram passes over the
 * IEEE-754 bit patterns (non-negative floats order like their bits), so no sort and no copy of the data.
 */
export function keepTopMagnitudes(x: Float32Array, keep: number): void {
  if (keep >= x.length) return;
  if (keep <= 0) {
    x.fill(0);
    return;
  }
  const bits = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const { threshold, above, equal } = kthLargestMagnitude(bits, keep);
  // Keep every magnitude ≥ threshold without a data-dependent branch (a kept/zeroed branch is mispredicted for a
  // large share of entries): (floor − m) >> 31 is all ones exactly when m > floor (both < 2³¹). Zeros are never
  // kept, so floor is at least 0 (this also turns a -0 into +0, as zeroing it would).
  const floor = Math.max(threshold, 1) - 1;
  for (let j = 0; j < bits.length; j++) bits[j] &= (floor - (bits[j] & 0x7fffffff)) >> 31;
  // Then, if more entries equal the threshold than may be kept, zero the surplus after the first allowed ones.
  let equalAllowed = keep - above;
  if (threshold === 0 || equal <= equalAllowed) return;
  for (let j = 0; j < bits.length; j++) {
    if ((bits[j] & 0x7fffffff) !== threshold) continue;
    if (equalAllowed > 0) equalAllowed--;
    else bits[j] = 0;
  }
}

/**
 * Zeroes, in place, the entries whose magnitude rank (largest = rank 0, ties by index) falls outside
 * [dropTop, dropTop + keep): model breadcrumbs' "drop the outliers and the small entries".
 */
export function keepMagnitudeBand(x: Float32Array, dropTop: number, keep: number): void {
  if (dropTop <= 0) return keepTopMagnitudes(x, keep);
  const n = x.length;
  const bits = new Uint32Array(x.buffer, x.byteOffset, n);
  const topCount = Math.min(n, dropTop); // ranks [0, topCount) are dropped as outliers
  const bandEnd = Math.min(n, dropTop + keep); // ranks [topCount, bandEnd) are kept
  if (bandEnd <= topCount) {
    x.fill(0);
    return;
  }
  const hi = kthLargestMagnitude(bits, topCount);
  const lo = kthLargestMagnitude(bits, bandEnd);
  // Entries at a threshold magnitude are split by index order; when every one of them falls on the same side, the
  // band is a plain magnitude interval and one branch-free pass does it ((a − b) >> 31 is all ones iff a < b).
  const allHiDropped = hi.equal <= topCount - hi.above;
  const allLoKept = lo.equal <= bandEnd - lo.above;
  if (hi.threshold !== lo.threshold && allHiDropped && allLoKept) {
    const loFloor = lo.threshold - 1; // keep m ≥ lo.threshold
    const hiCeiling = hi.threshold; // keep m < hi.threshold
    for (let j = 0; j < n; j++) {
      const m = bits[j] & 0x7fffffff;
      bits[j] &= ((loFloor - m) >> 31) & ((m - hiCeiling) >> 31);
    }
    return;
  }
  // General case: count the entries equal to each threshold in index order.
  let hiSeen = 0;
  let loSeen = 0;
  for (let j = 0; j < n; j++) {
    const m = bits[j] & 0x7fffffff;
    const inTop = m > hi.threshold || (m === hi.threshold && hiSeen++ < topCount - hi.above);
    const inBand = m > lo.threshold || (m === lo.threshold && loSeen++ < bandEnd - lo.above);
    if (inTop || !inBand) bits[j] = 0;
  }
}

/**
 * Bit pattern of the k-th largest magnitude (k ≥ 1), by radix selection (high 16 bits, then low 16 bits), how
 * many entries are strictly larger and how many equal it (read off the two histograms, no extra pass).
 */
export function kthLargestMagnitude(bits: Uint32Array, k: number): { threshold: number; above: number; equal: number } {
  const hist = new Uint32Array(65536);
  for (let j = 0; j < bits.length; j++) hist[(bits[j] & 0x7fffffff) >>> 16]++;
  let remaining = k;
  let high = 32767;
  for (; high > 0; high--) {
    if (hist[high] >= remaining) break;
    remaining -= hist[high];
  }
  hist.fill(0);
  for (let j = 0; j < bits.length; j++) {
    const m = bits[j] & 0x7fffffff;
    if (m >>> 16 === high) hist[m & 0xffff]++;
  }
  let low = 65535;
  for (; low > 0; low--) {
    if (hist[low] >= remaining) break;
    remaining -= hist[low];
  }
  return { threshold: ((high << 16) | low) >>> 0, above: k - remaining, equal: hist[low] };
}

/** Number of entries a density in [0, 1] keeps out of n (rounded to nearest, as "top k%" reads). */
export function countForDensity(n: number, density: number): number {
  return Math.min(n, Math.max(0, Math.round(density * n)));
}
