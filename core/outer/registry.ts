/** The outer optimisers by name, and the checking of manifest- or user-supplied parameters against their declarations. */
import { resolveParams } from '../merge/registry.ts';
import type { MergeParams } from '../merge/types.ts';
import { nesterov } from './nesterov.ts';
import { none } from './none.ts';
import { sgd } from './sgd.ts';
import type { OuterOptimizer } from './types.ts';

export class UnknownOuterOptimizerError extends Error {
  static override readonly name = 'UnknownOuterOptimizerError';
  override readonly name = UnknownOuterOptimizerError.name;
}

const OPTIMIZERS: readonly OuterOptimizer[] = [none, sgd, nesterov];
const BY_NAME = new Map(OPTIMIZERS.map((o) => [o.name, o]));

/** The outer optimiser of a run whose manifest names none. */
export const DEFAULT_OUTER = 'none';

export function listOuterOptimizers(): OuterOptimizer[] {
  return [...OPTIMIZERS];
}

export function getOuterOptimizer(name: string): OuterOptimizer {
  const optimizer = BY_NAME.get(name);
  if (!optimizer) throw new UnknownOuterOptimizerError(`unknown outer optimiser '${name}' (known: ${[...BY_NAME.keys()].join(', ')})`);
  return optimizer;
}

/** Every declared parameter with its value (given ones checked by type and range, the rest defaulted); unknown names are refused. */
export function resolveOuterParams(optimizer: OuterOptimizer, given: Readonly<Record<string, unknown>> = {}): MergeParams {
  return resolveParams(optimizer, given);
}
