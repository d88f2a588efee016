import type { ParamSpec } from '../merge/types.ts';

/**
 * Bounds on what a run manifest may set for every peer that joins it. An outer learning rate above 2 overshoots
 * the aggregate by more than the distance to it (θ − 2Δ reflects the anchor through the merged point), which no
 * published setting uses (DiLoCo 0.7; FedOpt's server SGD ≤ 1 in most tasks); momentum is kept below 1 so the
 * buffer's geometric sum 1/(1 − β) stays finite (at most 100).
 */
export const MIN_OUTER_LR = 0.001;
export const MAX_OUTER_LR = 2;
export const MAX_OUTER_MOMENTUM = 0.99;
export const MAX_STALENESS_EXPONENT = 4;

export function outerLrParam(fallback: number): ParamSpec {
  return { name: 'lr', type: 'number', default: fallback, min: MIN_OUTER_LR, max: MAX_OUTER_LR, description: 'outer learning rate: the step from the anchor along the aggregated pseudo-gradient' };
}
