export type { OuterOptimizer, OuterStepInput, OuterStepResult } from './types.ts';
export { DEFAULT_OUTER, getOuterOptimizer, listOuterOptimizers, resolveOuterParams, UnknownOuterOptimizerError } from './registry.ts';
export { roundFreshness, roundsOld, stalenessDiscount } from './freshness.ts';
