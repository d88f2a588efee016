import { validateInputs } from '../common.ts';
import type { MergeStrategy } from '../types.ts';
import { coordinatewise } from './coordinatewise.ts';

/**
 * trimmed-mean: coordinate-wise trimmed mean (Yin et al. 2018). Per coordinate, of the N inputs with weight > 0
 * sorted by value, drop the t = ⌊beta·N⌋ smallest and the t largest (t is capped so that at least one value
 * remains) and take the weighted mean of the rest with their weights renormalised. Equal values are ordered by
 * weight, so which of two equal values is dropped does not depend on input order.
 */
export const trimmedMean: MergeStrategy = {
  name: 'trimmed-mean',
  description: 'coordinate-wise mean after dropping the beta fraction of largest and of smallest values',
  reference: 'https://arxiv.org/abs/1803.01498',
  params: [{ name: 'beta', type: 'number', default: 0.1, min: 0, max: 0.5, description: 'fraction trimmed from each end' }],
  selfSpecial: false,
  output: 'factors',
  merge(inputs, params) {
    const weights = validateInputs(inputs);
    const beta = params.beta as number;
    return coordinatewise(inputs, weights, (values, ws, count) => trimmedMeanOfSorted(values, ws, count, beta));
  },
};

export function trimmedMeanOfSorted(values: Float64Array, weights: Float64Array, count: number, beta: number): number {
  const trim = Math.min(Math.floor(beta * count), Math.floor((count - 1) / 2));
  let sum = 0;
  let total = 0;
  for (let s = trim; s < count - trim; s++) {
    sum += weights[s] * values[s];
    total += weights[s];
  }
  return sum / total;
}
