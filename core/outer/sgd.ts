import { buildAdapter, tensorOf } from '../merge/common.ts';
import { outerLrParam } from './bounds.ts';
import type { OuterOptimizer } from './types.ts';

/**
 * sgd: θ' = θ − η·Δ with Δ = θ − merged (FedAvgM without momentum / FedOpt's server SGD). η = 1 gives the
 * merged adapter; η < 1 stays closer to the anchor; η > 1 extrapolates past the aggregate. Stale inputs count
 * less through their merge weights (the neighbour table's age weights); there is no buffer for them to echo in.
 */
export const sgd: OuterOptimizer = {
  name: 'sgd',
  kind: 'outer optimiser',
  description: 'outer SGD on the pseudo-gradient anchor − merged',
  reference: 'https://arxiv.org/abs/2003.00295',
  params: [outerLrParam(1)],
  usesMomentum: false,
  step({ anchor, merged }, params) {
    const lr = params.lr as number;
    const adapter = buildAdapter(merged, (ref, like) => {
      const theta = tensorOf(anchor, ref);
      const out = new Float32Array(like.length);
      for (let j = 0; j < out.length; j++) out[j] = theta[j] - lr * (theta[j] - like[j]);
      return out;
    });
    return { adapter, momentum: null };
  },
};
