import { validateInputs } from '../common.ts';
import type { MergeStrategy } from '../types.ts';
import { coordinatewise } from './coordinatewise.ts';

/**
 * median: coordinate-wise weighted median (Yin et al. 2018). Per coordinate, with the values sorted ascending
 * and normalised weights accumulated in that order, the result is the first value at which the cumulative weight
 * reaches 1/2; when it lands exactly on 1/2 (within 1e-12) the result is the midpoint of that value and the next.
 * With equal weights this is the textbook median (middle value for odd N, mean of the two middle values for even N).
 */
export const median: MergeStrategy = {
  name: 'median',
  description: 'coordinate-wise weighted median (robust to a minority of arbitrary inputs)',
  reference: 'https://arxiv.org/abs/1803.01498',
  params: [],
  selfSpecial: false,
  output: 'factors',
  merge(inputs) {
    const weights = validateInputs(inputs);
    return coordinatewise(inputs, weights, weightedMedianOfSorted);
  },
};

export function weightedMedianOfSorted(values: Float64Array, weights: Float64Array, count: number): number {
  let total = 0;
  for (let s = 0; s < count; s++) total += weights[s];
  const half = total / 2;
  let cumulative = 0;
  for (let s = 0; s < count; s++) {
    cumulative += weights[s];
    if (cumulative >= half - 1e-12 * total) {
      if (Math.abs(cumulative - half) <= 1e-12 * total && s + 1 < count) return (values[s] + values[s + 1]) / 2;
      return values[s];
    }
  }
  return values[count - 1];
}
