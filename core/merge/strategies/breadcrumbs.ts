import { buildAdapter, countForDensity, keepMagnitudeBand, validateInputs } from '../common.ts';
import type { MergeStrategy } from '../types.ts';
import { addToBase, BASE_PARAM, combine, LAMBDA_PARAM, taskVectors, type Base, type Consensus } from './task-vectors.ts';

/**
 * breadcrumbs: Model Breadcrumbs (Davari & Belilovsky 2023). Per tensor, each task vector drops its largest
 * entries (the top `gamma` fraction by magnitude: outliers) and its smallest (everything below the next `density`
 * fraction), i.e. it keeps the entries whose magnitude rank (largest first, equal magnitudes by index) lies in
 * [⌊gamma·n⌉, ⌊gamma·n⌉ + ⌊density·n⌉). The masked task vectors are then combined linearly or with TIES consensus
 * (see task-vectors.ts).
 */
export const breadcrumbs: MergeStrategy = {
  name: 'breadcrumbs',
  description: 'drop the largest and the smallest task-vector entries, then combine (linear or TIES)',
  reference: 'https://arxiv.org/abs/2312.06795',
  params: [
    { name: 'density', type: 'number', default: 0.9, min: 0, max: 1, description: 'fraction of entries kept (below the dropped outliers)' },
    { name: 'gamma', type: 'number', default: 0.01, min: 0, max: 1, description: 'fraction of largest-magnitude entries dropped' },
    { name: 'consensus', type: 'string', default: 'linear', choices: ['linear', 'ties'], description: 'how the masked task vectors are combined' },
    BASE_PARAM,
    LAMBDA_PARAM,
  ],
  selfSpecial: true,
  output: 'factors',
  merge(inputs, params) {
    const weights = validateInputs(inputs);
    const base = params.base as Base;
    return buildAdapter(inputs[0].adapter, (ref, like) => {
      const taus = taskVectors(inputs, ref, base);
      const dropTop = countForDensity(like.length, params.gamma as number);
      const keep = countForDensity(like.length, params.density as number);
      for (const tau of taus) keepMagnitudeBand(tau, dropTop, keep);
      const combined = new Float32Array(like.length);
      combine(taus, weights, params.consensus as Consensus, combined);
      return addToBase(inputs, ref, base, params.lambda as number, combined);
    });
  },
};
