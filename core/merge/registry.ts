/** The strategies by name, and the checking of user- or manifest-supplied parameters against their declarations. */
import { MergeParamError, UnknownStrategyError } from './errors.ts';
import { breadcrumbs } from './strategies/breadcrumbs.ts';
import { dare } from './strategies/dare.ts';
import { dimat } from './strategies/dimat.ts';
import { exactAverage } from './strategies/exact-average.ts';
import { fedavg } from './strategies/fedavg.ts';
import { median } from './strategies/median.ts';
import { multiKrum } from './strategies/multi-krum.ts';
import { similarityWeighting } from './strategies/similarity.ts';
import { ties } from './strategies/ties.ts';
import { trimmedMean } from './strategies/trimmed-mean.ts';
import { varianceCorrected } from './strategies/variance-corrected.ts';
import { overflowSafe } from './overflow.ts';
import type { MergeContext, MergeInput, MergeParams, MergeStrategy, OutputKind, ParamSpec, ParamValue } from './types.ts';
import type { Adapter } from '../model/adapter.ts';

export { MergeParamError, UnknownStrategyError } from './errors.ts';

/** Each wrapped by overflowSafe, so legal but extreme finite inputs give a finite result (see overflow.ts). */
const STRATEGIES: readonly MergeStrategy[] = [
  fedavg,
  exactAverage,
  varianceCorrected,
  ties,
  dimat,
  median,
  trimmedMean,
  multiKrum,
  similarityWeighting,
  dare,
  breadcrumbs,
].map(overflowSafe);

const BY_NAME = new Map(STRATEGIES.map((s) => [s.name, s]));

export function listStrategies(): MergeStrategy[] {
  return [...STRATEGIES];
}

export function getStrategy(name: string): MergeStrategy {
  const strategy = BY_NAME.get(name);
  if (!strategy) throw new UnknownStrategyError(`unknown merge strategy '${name}' (known: ${[...BY_NAME.keys()].join(', ')})`);
  return strategy;
}

/** Anything with declared parameters: a merge strategy, or an outer optimiser (core/outer), which says its kind. */
export interface ParamOwner {
  name: string;
  kind?: string;
  params: readonly ParamSpec[];
}

/**
 * Every declared parameter with its value: given ones checked (type, integer, range, choices), the rest defaulted.
 * Unknown names are refused, so a typo never silently falls back to a default.
 */
export function resolveParams(strategy: ParamOwner, given: Readonly<Record<string, unknown>> = {}): MergeParams {
  const specs = new Map(strategy.params.map((p) => [p.name, p]));
  for (const name of Object.keys(given)) {
    if (!specs.has(name)) {
      const known = strategy.params.map((p) => p.name).join(', ') || 'none';
      throw new MergeParamError(`${strategy.kind ?? 'strategy'} '${strategy.name}' has no parameter '${name}' (parameters: ${known})`);
    }
  }
  const resolved: MergeParams = {};
  for (const spec of strategy.params) {
    const value = given[spec.name];
    if (value === undefined) {
      resolved[spec.name] = spec.default;
      continue;
    }
    const where = `${strategy.name}: parameter '${spec.name}'`;
    if (typeof value !== spec.type) throw new MergeParamError(`${where} must be a ${spec.type}, got ${JSON.stringify(value)}`);
    if (spec.type === 'number') {
      const n = value as number;
      if (!Number.isFinite(n)) throw new MergeParamError(`${where} must be a finite number, got ${n}`);
      if (spec.integer && !Number.isInteger(n)) throw new MergeParamError(`${where} must be a whole number, got ${n}`);
      if (spec.min !== undefined && n < spec.min) throw new MergeParamError(`${where} must be >= ${spec.min}, got ${n}`);
      if (spec.max !== undefined && n > spec.max) throw new MergeParamError(`${where} must be <= ${spec.max}, got ${n}`);
    }
    if (spec.type === 'string' && spec.choices && !spec.choices.includes(value as string)) {
      throw new MergeParamError(`${where} must be one of ${spec.choices.join(', ')}, got '${value}'`);
    }
    resolved[spec.name] = value as ParamValue;
  }
  return resolved;
}

export function outputKind(strategy: MergeStrategy, params: MergeParams): OutputKind {
  return typeof strategy.output === 'function' ? strategy.output(params) : strategy.output;
}

/** Looks the strategy up, resolves its params and merges: the one call the worker and the CLI need. */
export function mergeWith(name: string, inputs: MergeInput[], params: Readonly<Record<string, unknown>> = {}, ctx: MergeContext = {}): Adapter {
  const strategy = getStrategy(name);
  return strategy.merge(inputs, resolveParams(strategy, params), ctx);
}
