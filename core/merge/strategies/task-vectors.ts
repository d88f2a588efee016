/**
 * Shared core of the sparsifying merges (ties, dare, breadcrumbs): task vectors relative to a base, a sparsifier
 * applied to each, a combination rule, and base + lambda·combined.
 *
 * base 'self' (default): τᵢ = xᵢ − x₀, the deltas of every input from the merging peer's own tensor (τ₀ = 0).
 *   Sparsifying deltas keeps the peer's own knowledge whole; merging one adapter, or N identical ones, returns it.
 * base 'zero': τᵢ = xᵢ, the adapters themselves are the task vectors (a LoRA already is a delta from the base model).
 *   This is what PEFT's add_weighted_adapter and mergekit do with adapters; use it for offline merges with `merge`.
 *
 * Combination (weights normalised over all inputs, so with base 'self' the self weight is how much of the peer stays):
 *   'linear': Σ wᵢ·τ̂ᵢ.
 *   'ties' (TIES sign election and disjoint mean, Yadav et al. 2023): per entry, the elected sign is the sign of
 *     Σ wᵢ·τ̂ᵢ; the entry is Σ_{agree} wᵢ·τ̂ᵢ / Σ_{agree} wᵢ over the inputs whose trimmed value is non-zero and has
 *     the elected sign. An exact zero sum elects no sign and the entry merges to 0 (no majority to follow); zeros
 *     (trimmed or genuine) never vote and never count in the denominator.
 */
import { tensorOf, weightedSumInto, type TensorRef } from '../common.ts';
import type { MergeInput, ParamSpec } from '../types.ts';

export type Base = 'self' | 'zero';
export type Consensus = 'linear' | 'ties';

export const BASE_PARAM: ParamSpec = {
  name: 'base',
  type: 'string',
  default: 'self',
  choices: ['self', 'zero'],
  description: "task vectors relative to the merging peer's adapter ('self') or to zero, as PEFT/mergekit ('zero')",
};
export const LAMBDA_PARAM: ParamSpec = {
  name: 'lambda',
  type: 'number',
  default: 1,
  min: 0,
  description: 'scale of the combined task vector added to the base',
};

/** Fresh task vectors τᵢ of one tensor for every input (never views of the inputs). */
export function taskVectors(inputs: readonly MergeInput[], ref: TensorRef, base: Base): Float32Array[] {
  const self = tensorOf(inputs[0].adapter, ref);
  return inputs.map((input, i) => {
    const x = tensorOf(input.adapter, ref);
    if (base === 'zero') return x.slice();
    const tau = new Float32Array(x.length);
    if (i === 0) return tau;
    for (let j = 0; j < x.length; j++) tau[j] = x[j] - self[j];
    return tau;
  });
}

/** out = combination of the (sparsified) task vectors; see the file comment. */
export function combine(taus: readonly Float32Array[], weights: ArrayLike<number>, consensus: Consensus, out: Float32Array): void {
  if (consensus === 'linear') {
    weightedSumInto(out, taus, weights);
    return;
  }
  tiesConsensusInto(out, taus, weights);
}

/**
 * TIES sign election and disjoint mean in one pass over the inputs. The agreeing entries need no second pass:
 * with x = wᵢ·τᵢ, the entries agreeing with a positive sum are exactly the positive x, so per entry it is enough to
 * accumulate the sum, the positive part Σ max(x, 0) with its weight, and the negative part with its weight, then
 * pick by the sign of the sum. max(x, 0) = (x + |x|)/2 holds exactly in floating point (x + |x| is 2x or 0), and
 * adding a 0 changes no sum, so every accumulator sees the same values in the same order as the two-pass
 * definition: the result is bit-identical to it, without branches on the data in the inner loop.
 * Inputs go four at a time with their accumulators in registers; the chunk keeps the per-entry accumulators
 * in L1 from one group of four to the next.
 */
function tiesConsensusInto(out: Float32Array, taus: readonly Float32Array[], weights: ArrayLike<number>): void {
  if (taus.length <= 8) return tiesConsensusUpTo8(out, taus, weights);
  const chunk = Math.min(CHUNK, out.length);
  const sum = new Float64Array(chunk);
  const positive = new Float64Array(chunk);
  const negative = new Float64Array(chunk);
  const positiveWeight = new Float64Array(chunk);
  const negativeWeight = new Float64Array(chunk);
  const n = taus.length;
  for (let start = 0; start < out.length; start += CHUNK) {
    const len = Math.min(CHUNK, out.length - start);
    sum.fill(0);
    positive.fill(0);
    negative.fill(0);
    positiveWeight.fill(0);
    negativeWeight.fill(0);
    for (let i = 0; i < n; i += 4) {
      // A group short of four repeats its first input with weight 0, which adds exactly nothing (0·v = ±0).
      const t0 = taus[i], w0 = weights[i];
      const t1 = i + 1 < n ? taus[i + 1] : t0, w1 = i + 1 < n ? weights[i + 1] : 0;
      const t2 = i + 2 < n ? taus[i + 2] : t0, w2 = i + 2 < n ? weights[i + 2] : 0;
      const t3 = i + 3 < n ? taus[i + 3] : t0, w3 = i + 3 < n ? weights[i + 3] : 0;
      for (let j = 0; j < len; j++) {
        const k = start + j;
        const v0 = t0[k], v1 = t1[k], v2 = t2[k], v3 = t3[k];
        const x0 = w0 * v0, x1 = w1 * v1, x2 = w2 * v2, x3 = w3 * v3;
        const a0 = Math.abs(x0), a1 = Math.abs(x1), a2 = Math.abs(x2), a3 = Math.abs(x3);
        sum[j] = sum[j] + x0 + x1 + x2 + x3;
        positive[j] = positive[j] + 0.5 * (x0 + a0) + 0.5 * (x1 + a1) + 0.5 * (x2 + a2) + 0.5 * (x3 + a3);
        negative[j] = negative[j] + 0.5 * (x0 - a0) + 0.5 * (x1 - a1) + 0.5 * (x2 - a2) + 0.5 * (x3 - a3);
        positiveWeight[j] = positiveWeight[j] + w0 * +(v0 > 0) + w1 * +(v1 > 0) + w2 * +(v2 > 0) + w3 * +(v3 > 0);
        negativeWeight[j] = negativeWeight[j] + w0 * +(v0 < 0) + w1 * +(v1 < 0) + w2 * +(v2 < 0) + w3 * +(v3 < 0);
      }
    }
    for (let j = 0; j < len; j++) {
      const s = sum[j];
      let merged = 0;
      if (s > 0 && positiveWeight[j] > 0) merged = positive[j] / positiveWeight[j];
      else if (s < 0 && negativeWeight[j] > 0) merged = negative[j] / negativeWeight[j];
      out[start + j] = merged;
    }
  }
}

/**
 * tiesConsensusInto for up to eight inputs (the usual neighbourhood): all inputs per entry with the five
 * accumulators in registers, so no accumulator arrays, fills or second pass (about 1.5× faster for product-space
 * TIES). Missing inputs repeat the first with weight 0, which adds +0 or −0 to sums that start at +0 and so can
 * never be −0: the same values, in the same order, as the grouped loop above.
 */
function tiesConsensusUpTo8(out: Float32Array, taus: readonly Float32Array[], weights: ArrayLike<number>): void {
  const n = taus.length;
  if (n === 0) {
    out.fill(0);
    return;
  }
  const t = (i: number) => (i < n ? taus[i] : taus[0]);
  const w = (i: number) => (i < n ? weights[i] : 0);
  const t0 = t(0), t1 = t(1), t2 = t(2), t3 = t(3), t4 = t(4), t5 = t(5), t6 = t(6), t7 = t(7);
  const w0 = w(0), w1 = w(1), w2 = w(2), w3 = w(3), w4 = w(4), w5 = w(5), w6 = w(6), w7 = w(7);
  for (let k = 0; k < out.length; k++) {
    const v0 = t0[k], v1 = t1[k], v2 = t2[k], v3 = t3[k], v4 = t4[k], v5 = t5[k], v6 = t6[k], v7 = t7[k];
    const x0 = w0 * v0, x1 = w1 * v1, x2 = w2 * v2, x3 = w3 * v3, x4 = w4 * v4, x5 = w5 * v5, x6 = w6 * v6, x7 = w7 * v7;
    const a0 = Math.abs(x0), a1 = Math.abs(x1), a2 = Math.abs(x2), a3 = Math.abs(x3);
    const a4 = Math.abs(x4), a5 = Math.abs(x5), a6 = Math.abs(x6), a7 = Math.abs(x7);
    const sum = 0 + x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7;
    let merged = 0;
    if (sum > 0) {
      const weight = 0 + w0 * +(v0 > 0) + w1 * +(v1 > 0) + w2 * +(v2 > 0) + w3 * +(v3 > 0) + w4 * +(v4 > 0) + w5 * +(v5 > 0) + w6 * +(v6 > 0) + w7 * +(v7 > 0);
      if (weight > 0) {
        merged = (0 + 0.5 * (x0 + a0) + 0.5 * (x1 + a1) + 0.5 * (x2 + a2) + 0.5 * (x3 + a3) + 0.5 * (x4 + a4) + 0.5 * (x5 + a5) + 0.5 * (x6 + a6) + 0.5 * (x7 + a7)) / weight;
      }
    } else if (sum < 0) {
      const weight = 0 + w0 * +(v0 < 0) + w1 * +(v1 < 0) + w2 * +(v2 < 0) + w3 * +(v3 < 0) + w4 * +(v4 < 0) + w5 * +(v5 < 0) + w6 * +(v6 < 0) + w7 * +(v7 < 0);
      if (weight > 0) {
        merged = (0 + 0.5 * (x0 - a0) + 0.5 * (x1 - a1) + 0.5 * (x2 - a2) + 0.5 * (x3 - a3) + 0.5 * (x4 - a4) + 0.5 * (x5 - a5) + 0.5 * (x6 - a6) + 0.5 * (x7 - a7)) / weight;
      }
    }
    out[k] = merged;
  }
}

const CHUNK = 2048;

/** base + lambda·combined, written into `combined`'s place in a fresh array. */
export function addToBase(inputs: readonly MergeInput[], ref: TensorRef, base: Base, lambda: number, combined: Float32Array): Float32Array {
  const out = new Float32Array(combined.length);
  if (base === 'zero') {
    for (let j = 0; j < out.length; j++) out[j] = lambda * combined[j];
  } else {
    const self = tensorOf(inputs[0].adapter, ref);
    for (let j = 0; j < out.length; j++) out[j] = self[j] + lambda * combined[j];
  }
  return out;
}
