import type { OuterOptimizer } from './types.ts';

/** none: the peer takes the strategy's aggregate as its new adapter, with no outer step (the behaviour before outer optimisers). */
export const none: OuterOptimizer = {
  name: 'none',
  kind: 'outer optimiser',
  description: 'no outer step: the merged adapter replaces the own one',
  reference: 'https://arxiv.org/abs/1602.05629',
  params: [],
  usesMomentum: false,
  step: ({ merged }) => ({ adapter: merged, momentum: null }),
};
