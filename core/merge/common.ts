/** Helpers every strategy shares: input validation, tensor walking, weighted sums, seeded randomness, top-k masks. */
import { assertAdapterShapes, moduleNames, schemaHash, type Adapter, type LoraPair } from '../model/adapter.ts';
import { MergeInputError, SchemaMismatchError } from './errors.ts';
import type { MergeInput } from './types.ts';

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
 * out = Σ weights[i]·arrays[i], accumulated in float64 one cache-sized chunk at a time and written once.
 * Returns false when some output value is not finite.
 */
export function weightedSumInto(out: Float32Array, arrays: readonly Float32Array[], weights: ArrayLike<number>): boolean {
  const acc = new Float64Array(Math.min(CHUNK, out.length));
  let finite = true;
  for (let start = 0; start < out.length; start += CHUNK) {
    const len = Math.min(CHUNK, out.length - start);
    acc.fill(0, 0, len);
    let i = 0;
    // four inputs per pass over the accumulator: a quarter of the accumulator loads and stores
    for (; i + 4 <= arrays.length; i += 4) {
      const w0 = weights[i], w1 = weights[i + 1], w2 = weights[i + 2], w3 = weights[i + 3];
      const x0 = arrays[i], x1 = arrays[i + 1], x2 = arrays[i + 2], x3 = arrays[i + 3];
      for (let j = 0; j < len; j++) {
        const k = start + j;
        acc[j] += w0 * x0[k] + w1 * x1[k] + w2 * x2[k] + w3 * x3[k];
      }
    }
    for (; i < arrays.length; i++) {
      const w = weights[i];
      if (w === 0) continue;
      const x = arrays[i];
      for (let j = 0; j < len; j++) acc[j] += w * x[start + j];
    }
    for (let j = 0; j < len; j++) {
      const v = acc[j];
      if (v - v !== 0) finite = false;
      out[start + j] = v;
    }
  }
  return finite;
}

/** FNV-1a over the strings, mixed with a numeric seed: stable 32-bit seeds for named things (peer, tensor). */
export function deriveSeed(seed: number, ...parts: string[]): number {
  let h = (0x811c9dc5 ^ (seed >>> 0)) >>> 0;
  h = Math.imul(h, 0x01000193) >>> 0;
  for (const part of parts) {
    for (let i = 0; i < part.length; i++) {
      h ^= part.charCodeAt(i);
      h = Math.imul(h, 0x01000193) >>> 0;
    }
    h ^= 0xff;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** A small, fast, seedable generator of uniform numbers in [0, 1) (mulberry32). */
export function uniformRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal samples from a seeded uniform source (Box–Muller). */
export function gaussianRandom(seed: number): () => number {
  const uniform = uniformRandom(seed);
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
