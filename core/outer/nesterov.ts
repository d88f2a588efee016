import { buildAdapter, tensorOf } from '../merge/common.ts';
import { MAX_OUTER_MOMENTUM, MAX_STALENESS_EXPONENT, outerLrParam } from './bounds.ts';
import type { OuterOptimizer } from './types.ts';

/**
 * nesterov: DiLoCo's outer step (Douillard et al. 2023, arXiv:2311.08105: SGD with Nesterov momentum on the
 * pseudo-gradient, outer lr 0.7 and momentum 0.9 there), per peer as in SlowMo (Wang et al. 2020, "SlowMo:
 * Improving Communication-Efficient Distributed SGD with Slow Momentum", arXiv:1910.00643), whose slow momentum
 * runs on every worker over gossip-averaged iterates. With Δ = θ − merged and freshness f (freshness.ts):
 *     m' = β·m + f·Δ
 *     θ' = θ − η·(Δ + β·m')
 * For f = 1 this is PyTorch's SGD(nesterov=True) step on gradient Δ. The stale share (1 − f)·Δ is applied once
 * (it is in Δ) but never enters the buffer, so momentum cannot echo a stale pseudo-gradient into later rounds
 * (the delayed-Nesterov argument of Liu et al. 2024, arXiv:2401.09135). A peer starts from m = 0.
 */
export const nesterov: OuterOptimizer = {
  name: 'nesterov',
  kind: 'outer optimiser',
  description: 'outer SGD with Nesterov momentum on the pseudo-gradient (DiLoCo); stale inputs kept out of the momentum',
  reference: 'https://arxiv.org/abs/2311.08105',
  params: [
    outerLrParam(0.7),
    { name: 'momentum', type: 'number', default: 0.9, min: 0, max: MAX_OUTER_MOMENTUM, description: 'β: the share of the buffer kept from one outer step to the next' },
    {
      name: 'stalenessExponent', type: 'number', default: 0.5, min: 0, max: MAX_STALENESS_EXPONENT,
      description: 'a in s(τ) = (1 + τ)^(−a), how fast an input τ rounds old stops counting as fresh (0: never)',
    },
  ],
  usesMomentum: true,
  step({ anchor, merged, momentum, freshness }, params) {
    const lr = params.lr as number;
    const beta = params.momentum as number;
    const f = Math.min(1, Math.max(0, Number.isFinite(freshness) ? freshness : 1));
    const nextMomentum = buildAdapter(merged, (ref, like) => {
      const theta = tensorOf(anchor, ref);
      const previous = momentum ? tensorOf(momentum, ref) : null;
      const out = new Float32Array(like.length);
      for (let j = 0; j < out.length; j++) out[j] = beta * (previous ? previous[j] : 0) + f * (theta[j] - like[j]);
      return out;
    });
    const adapter = buildAdapter(merged, (ref, like) => {
      const theta = tensorOf(anchor, ref);
      const m = tensorOf(nextMomentum, ref);
      const out = new Float32Array(like.length);
      for (let j = 0; j < out.length; j++) out[j] = theta[j] - lr * (theta[j] - like[j] + beta * m[j]);
      return out;
    });
    return { adapter, momentum: nextMomentum };
  },
};
