/**
 * The outer optimiser: what a peer does with the aggregate of a round, orthogonal to the merge strategy.
 *
 * At an H boundary the strategy (core/merge) aggregates the peer's own adapter and its guarded neighbours' into
 * `merged`, exactly as without an outer optimiser. The outer optimiser then treats Δ = anchor − merged, where the
 * anchor is the adapter the round started from, as one step's pseudo-gradient and takes its own step from the
 * anchor (DiLoCo, Douillard et al. 2023, arXiv:2311.08105; FedOpt, Reddi et al. 2021, arXiv:2003.00295). `none`
 * takes `merged` as it is: today's behaviour.
 *
 * Optimisers are pure functions over plain Float32Arrays (no tfjs), like the strategies, and never mutate inputs.
 */
import type { Adapter } from '../model/adapter.ts';
import type { MergeParams, ParamSpec } from '../merge/types.ts';

export interface OuterStepInput {
  /** θ: the adapter this peer's round started from (the engine's round anchor). */
  anchor: Adapter;
  /** The merge strategy's aggregate of the peer's own adapter and its neighbours'. */
  merged: Adapter;
  /** The momentum buffer of the previous outer step; null is the zero buffer (fresh start, late joiner). */
  momentum: Adapter | null;
  /**
   * In [0, 1]: the share of this round's aggregate that is fresh (see roundFreshness in freshness.ts); only
   * this share is added to a momentum buffer, the stale rest is applied without momentum.
   */
  freshness: number;
}

export interface OuterStepResult {
  adapter: Adapter;
  /** The buffer to keep for the next step (null: this optimiser keeps none). */
  momentum: Adapter | null;
}

export interface OuterOptimizer {
  /** Registry key, kebab-case. */
  name: string;
  /** Read by core/merge's resolveParams to word its errors. */
  kind: 'outer optimiser';
  /** One line. */
  description: string;
  /** The paper whose method this follows. */
  reference: string;
  params: ParamSpec[];
  /** Whether step() keeps a momentum buffer (saved in the peer's checkpoint). */
  usesMomentum: boolean;
  /** Params must already be resolved (registry.resolveOuterParams). Never mutates its input. */
  step(input: OuterStepInput, params: MergeParams): OuterStepResult;
}
