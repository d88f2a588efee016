/**
 * The run manifest's optional `privacy` object. Absent means off (the default, and what the public Brown runs use).
 * Present, it protects each record of a volunteer's own text: every publish is one step of the Poisson-subsampled
 * Gaussian mechanism (mechanism.ts), and the budget (targetEpsilon at delta) must cover maxPublishes of them.
 * The noise multiplier is chosen from the budget unless the manifest fixes it, in which case the budget must
 * afford it. Every refusal says why in words.
 */
import { formatDelta } from './describe.ts';
import { epsilonAfter, noiseMultiplierFor } from './rdp.ts';

export interface PrivacyConfig {
  /** ε the volunteer's records may spend over the whole run. */
  targetEpsilon: number;
  /** δ of the (ε, δ) guarantee; must be below 1 / (the volunteer's record count). */
  delta: number;
  /** L2 norm C every published update is clipped to. */
  clipNorm: number;
  /** Probability q with which each record takes part in a round. */
  samplingRate: number;
  /** Publishes the budget must cover; publishing stops when the next one would overspend. */
  maxPublishes: number;
  /** Fixes the noise multiplier z instead of choosing it from the budget. */
  noiseMultiplier?: number;
}

export class PrivacyConfigError extends Error {
  static override readonly name = 'PrivacyConfigError';
  override readonly name = PrivacyConfigError.name;
}

export const MAX_TARGET_EPSILON = 1000;
/** Above this the noise is hundreds of times the clipped update: training would only add noise. */
export const MAX_NOISE_MULTIPLIER = 100;
export const MAX_PUBLISHES = 1_000_000;
export const MAX_CLIP_NORM = 1e4;

const KEYS = ['targetEpsilon', 'delta', 'clipNorm', 'samplingRate', 'maxPublishes'] as const;
const OPTIONAL_KEYS = ['noiseMultiplier'] as const;

function fmt(x: number): string {
  return Number(x.toPrecision(3)).toString();
}

function readNumber(obj: Record<string, unknown>, key: string, where: string): number {
  const value = obj[key];
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new PrivacyConfigError(`${where}.${key} must be a finite number`);
  return value;
}

/** Validates a parsed JSON value as a PrivacyConfig; throws PrivacyConfigError with the reason in words. */
export function parsePrivacyConfig(value: unknown, where = 'privacy'): PrivacyConfig {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new PrivacyConfigError(`${where} must be an object (leave it out to train without differential privacy)`);
  const obj = value as Record<string, unknown>;
  for (const key of KEYS) if (!(key in obj)) throw new PrivacyConfigError(`${where}: missing field '${key}'`);
  for (const key of Object.keys(obj)) {
    if (!(KEYS as readonly string[]).includes(key) && !(OPTIONAL_KEYS as readonly string[]).includes(key)) throw new PrivacyConfigError(`${where}: unknown field '${key.slice(0, 40)}'`);
  }
  const targetEpsilon = readNumber(obj, 'targetEpsilon', where);
  if (targetEpsilon <= 0) throw new PrivacyConfigError(`${where}.targetEpsilon is ${targetEpsilon}: ε must be above 0 (ε = 0 would allow nothing to be published)`);
  if (targetEpsilon > MAX_TARGET_EPSILON) throw new PrivacyConfigError(`${where}.targetEpsilon is ${targetEpsilon}: above ${MAX_TARGET_EPSILON} the guarantee means nothing; leave privacy out instead`);
  const delta = readNumber(obj, 'delta', where);
  if (!(delta > 0 && delta < 1)) throw new PrivacyConfigError(`${where}.delta is ${delta}: δ must be above 0 and below 1 (and below 1 / the number of records a volunteer adds)`);
  const clipNorm = readNumber(obj, 'clipNorm', where);
  if (!(clipNorm > 0 && clipNorm <= MAX_CLIP_NORM)) throw new PrivacyConfigError(`${where}.clipNorm is ${clipNorm}: the clip norm must be above 0 and at most ${MAX_CLIP_NORM}`);
  const samplingRate = readNumber(obj, 'samplingRate', where);
  if (!(samplingRate > 0 && samplingRate <= 1)) throw new PrivacyConfigError(`${where}.samplingRate is ${samplingRate}: the share of records in each round must be above 0 and at most 1`);
  const maxPublishes = readNumber(obj, 'maxPublishes', where);
  if (!Number.isInteger(maxPublishes) || maxPublishes < 1 || maxPublishes > MAX_PUBLISHES) {
    throw new PrivacyConfigError(`${where}.maxPublishes is ${maxPublishes}: it must be a whole number from 1 to ${MAX_PUBLISHES}`);
  }
  const config: PrivacyConfig = { targetEpsilon, delta, clipNorm, samplingRate, maxPublishes };
  if ('noiseMultiplier' in obj) {
    const z = readNumber(obj, 'noiseMultiplier', where);
    if (!(z > 0 && z <= MAX_NOISE_MULTIPLIER)) throw new PrivacyConfigError(`${where}.noiseMultiplier is ${z}: it must be above 0 and at most ${MAX_NOISE_MULTIPLIER}`);
    config.noiseMultiplier = z;
  }
  checkAffordable(config, where);
  return config;
}

function checkAffordable(config: PrivacyConfig, where: string): void {
  const plan = { delta: config.delta, samplingRate: config.samplingRate, steps: config.maxPublishes };
  const budget = `the budget is ε = ${fmt(config.targetEpsilon)} at δ = ${formatDelta(config.delta)} for ${config.maxPublishes} publishes at sampling rate ${fmt(config.samplingRate)}`;
  if (config.noiseMultiplier !== undefined) {
    const spent = epsilonAfter({ ...plan, noiseMultiplier: config.noiseMultiplier }).epsilon;
    if (spent > config.targetEpsilon) {
      throw new PrivacyConfigError(
        `${where}: noise multiplier ${fmt(config.noiseMultiplier)} would spend ε = ${fmt(spent)}, but ${budget}; ` +
          'raise the noise multiplier (or leave it out to have it chosen), allow fewer publishes or a lower sampling rate',
      );
    }
    return;
  }
  const spentAtMax = epsilonAfter({ ...plan, noiseMultiplier: MAX_NOISE_MULTIPLIER }).epsilon;
  if (spentAtMax > config.targetEpsilon) {
    throw new PrivacyConfigError(
      `${where}: ${budget}, which would need noise above ${MAX_NOISE_MULTIPLIER} times the clip norm (ε = ${fmt(spentAtMax)} even there), ` +
        'so every update would be noise; allow a larger ε, fewer publishes or a lower sampling rate',
    );
  }
}

const chosenMultipliers = new Map<string, number>();

/** The noise multiplier z of a validated config: the fixed one, or the smallest that fits the budget (memoised). */
export function noiseMultiplierOf(config: PrivacyConfig): number {
  if (config.noiseMultiplier !== undefined) return config.noiseMultiplier;
  const key = `${config.targetEpsilon}|${config.delta}|${config.samplingRate}|${config.maxPublishes}`;
  let z = chosenMultipliers.get(key);
  if (z === undefined) {
    z = noiseMultiplierFor(
      { targetEpsilon: config.targetEpsilon, delta: config.delta, samplingRate: config.samplingRate, steps: config.maxPublishes },
      MAX_NOISE_MULTIPLIER,
    );
    if (!Number.isFinite(z)) throw new PrivacyConfigError(`no noise multiplier up to ${MAX_NOISE_MULTIPLIER} fits ε = ${config.targetEpsilon} over ${config.maxPublishes} publishes`);
    if (chosenMultipliers.size > 64) chosenMultipliers.clear();
    chosenMultipliers.set(key, z);
  }
  return z;
}

/**
 * What a volunteer's own files must satisfy, checked when they are added: δ below 1/n for n records (a larger δ
 * would allow publishing one record in the clear), and at least one record. Returns the reason in words, or null.
 */
export function volunteerRecordsProblem(config: PrivacyConfig, records: number): string | null {
  if (!Number.isInteger(records) || records < 1) return 'your files hold no complete record of text to train on';
  if (config.delta >= 1 / records) {
    return `δ = ${formatDelta(config.delta)} is not below 1/${records} (your files make ${records} records): a δ that large would allow one record to be published as it is; the run needs δ < ${fmt(1 / records)}`;
  }
  return null;
}
