import { buildAdapter, validateInputs } from '../common.ts';
import { createRng, deriveSeed } from '../../util/random.ts';
import type { MergeStrategy } from '../types.ts';
import { addToBase, BASE_PARAM, combine, LAMBDA_PARAM, taskVectors, type Base, type Consensus } from './task-vectors.ts';

/**
 * dare: drop-and-rescale (Yu et al. 2023, "Language Models are Super Mario"). Each input's task vector keeps each
 * entry with probability `density` and multiplies the survivors by 1/density (so its expectation is unchanged),
 * then the task vectors are combined linearly or with TIES consensus (see task-vectors.ts for base/consensus).
 * The mask of an input is drawn from a generator seeded by (ctx.seed, peer id, module, factor), so it does not
 * depend on the input's position and the same seed gives the same merge.
 */
export const dare: MergeStrategy = {
  name: 'dare',
  description: 'randomly drop task-vector entries and rescale the rest, then combine (linear or TIES)',
  reference: 'https://arxiv.org/abs/2311.03099',
  params: [
    { name: 'density', type: 'number', default: 0.5, min: 0, max: 1, description: 'probability that an entry is kept' },
    { name: 'consensus', type: 'string', default: 'linear', choices: ['linear', 'ties'], description: 'how the dropped task vectors are combined' },
    BASE_PARAM,
    LAMBDA_PARAM,
  ],
  selfSpecial: true,
  output: 'factors',
  merge(inputs, params, ctx) {
    const weights = validateInputs(inputs);
    const density = params.density as number;
    const base = params.base as Base;
    return buildAdapter(inputs[0].adapter, (ref, like) => {
      const taus = taskVectors(inputs, ref, base);
      taus.forEach((tau, i) => dropAndRescale(tau, density, deriveSeed(ctx.seed ?? 0, inputs[i].meta.peerId, ref.module, ref.kind)));
      const combined = new Float32Array(like.length);
      combine(taus, weights, params.consensus as Consensus, combined);
      return addToBase(inputs, ref, base, params.lambda as number, combined);
    });
  },
};

/**
 * tau[j] ← tau[j]/density with probability density, else 0, drawing one uniform number per entry from
 * createRng(seed). The generator (mulberry32) is inlined here with its state in a local, the same sequence as
 * createRng's closure, because a call per entry was most of this strategy's time.
 */
export function dropAndRescale(tau: Float32Array, density: number, seed: number): void {
  const rescale = density > 0 ? 1 / density : 0;
  let state = seed >>> 0;
  for (let j = 0; j < tau.length; j++) {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const uniform = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    tau[j] = uniform < density ? tau[j] * rescale : 0;
  }
}
