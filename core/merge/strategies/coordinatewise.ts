/**
 * Shared machinery of the coordinate-wise robust rules: for each coordinate, gather the inputs' values with their
 * weights, sort them, and reduce. Inputs with weight 0 take no part. Values are sorted by (value, weight), a total
 * order on what each input contributes, so the result does not depend on the order of the inputs.
 */
import { buildAdapter, tensorOf } from '../common.ts';
import type { Adapter } from '../../model/adapter.ts';
import type { MergeInput } from '../types.ts';

export type SortedReducer = (values: Float64Array, weights: Float64Array, count: number) => number;

export function coordinatewise(inputs: readonly MergeInput[], weights: Float64Array, reduce: SortedReducer): Adapter {
  const active: number[] = [];
  for (let i = 0; i < inputs.length; i++) if (weights[i] > 0) active.push(i);
  const count = active.length;
  const values = new Float64Array(count);
  const ws = new Float64Array(count);
  return buildAdapter(inputs[0].adapter, (ref, like) => {
    const tensors = active.map((i) => tensorOf(inputs[i].adapter, ref));
    const out = new Float32Array(like.length);
    for (let j = 0; j < out.length; j++) {
      // insertion sort: count is a handful of neighbours
      for (let s = 0; s < count; s++) {
        const v = tensors[s][j];
        const w = weights[active[s]];
        let p = s;
        while (p > 0 && (values[p - 1] > v || (values[p - 1] === v && ws[p - 1] > w))) {
          values[p] = values[p - 1];
          ws[p] = ws[p - 1];
          p--;
        }
        values[p] = v;
        ws[p] = w;
      }
      out[j] = reduce(values, ws, count);
    }
    return out;
  });
}
