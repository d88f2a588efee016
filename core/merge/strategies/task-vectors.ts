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
  // Chunked so that each pass runs over one input at a time (long, monomorphic inner loops).
  const chunk = Math.min(CHUNK, out.length);
  const sum = new Float64Array(chunk);
  const agreeing = new Float64Array(chunk);
  const agreeingWeight = new Float64Array(chunk);
  for (let start = 0; start < out.length; start += CHUNK) {
    const len = Math.min(CHUNK, out.length - start);
    sum.fill(0);
    agreeing.fill(0);
    agreeingWeight.fill(0);
    for (let i = 0; i < taus.length; i++) {
      const w = weights[i], t = taus[i];
      for (let j = 0; j < len; j++) sum[j] += w * t[start + j];
    }
    for (let i = 0; i < taus.length; i++) {
      const w = weights[i], t = taus[i];
      for (let j = 0; j < len; j++) {
        const v = t[start + j];
        // same sign as the elected one, both non-zero: v·sum > 0
        if (v * sum[j] > 0) {
          agreeing[j] += w * v;
          agreeingWeight[j] += w;
        }
      }
    }
    for (let j = 0; j < len; j++) out[start + j] = agreeingWeight[j] > 0 ? agreeing[j] / agreeingWeight[j] : 0;
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
