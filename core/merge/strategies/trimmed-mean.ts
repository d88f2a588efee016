import { validateInputs } from '../common.ts';
import type { MergeStrategy } from '../types.ts';
import { coordinatewise } from './coordinatewise.ts';

/**
 * trimmed-mean: coordinate-wise trimmed mean (Yin et al. 2018). Per coordinate, of the N inputs with weight > 0
 * sorted by value, drop the t = max(1, ⌊beta·N⌋) smallest and the t largest once N ≥ 3 (t = 0 below; t is
 * capped so that at least one value remains). The floor of one matters in a swarm: a peer usually merges 3–8
 * inputs, where ⌊0.1·N⌋ = 0 would trim nothing and one attacker would move every coordinate (so beta = 0 still
 * trims one from each end). The weighted mean of the rest is taken with their weights renormalised. Equal values
 * are ordered by weight, so which of two equal values is dropped does not depend on input order.
 */
export const trimmedMean: MergeStrategy = {
  name: 'trimmed-mean',
  description: 'coordinate-wise mean after dropping the beta fraction of largest and of smallest values',
  reference: 'https://arxiv.org/abs/1803.01498',
  params: [{ name: 'beta', type: 'number', default: 0.1, min: 0, max: 0.5, description: 'fraction trimmed from each end (at least one value each end once 3 or more inputs)' }],
  selfSpecial: false,
  output: 'factors',
  merge(inputs, params) {
    const weights = validateInputs(inputs);
    const beta = params.beta as number;
    return coordinatewise(inputs, weights, (values, ws, count) => trimmedMeanOfSorted(values, ws, count, beta));
  },
};

export function trimmedMeanOfSorted(values: Float64Array, weights: Float64Array, count: number, beta: number): number {
  const trim = count >= 3 ? Math.min(Math.max(1, Math.floor(beta * count)), Math.floor((count - 1) / 2)) : 0;
  let sum = 0;
  let total = 0;
  for (let s = trim; s < count - trim; s++) {
    sum += weights[s] * values[s];
    total += weights[s];
  }
  return sum / total;
}
