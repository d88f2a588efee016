/**
 * The privacy ledger of one volunteer's records: how many noised updates have left the worker, the ε they spent,
 * and whether one more may leave. It serialises into the peer's checkpoint so a reload does not reset the spend.
 */
import { noiseMultiplierOf, parsePrivacyConfig, PrivacyConfigError, type PrivacyConfig } from './config.ts';
import { DEFAULT_ORDERS, epsilonFromRdp, rdpSubsampledGaussian } from './rdp.ts';

export class PrivacyBudgetSpentError extends Error {
  static override readonly name = 'PrivacyBudgetSpentError';
  override readonly name = PrivacyBudgetSpentError.name;
}

/** What the engine shows: the page's "your files" line and the dashboard's ε column read these fields. */
export interface PrivacyStatus {
  epsilonSpent: number;
  targetEpsilon: number;
  delta: number;
  publishes: number;
  maxPublishes: number;
  noiseMultiplier: number;
  clipNorm: number;
  samplingRate: number;
  /** True when the next publish would overspend: the peer keeps training and merging but publishes nothing. */
  exhausted: boolean;
}

export interface PrivacyBudgetState {
  version: 1;
  config: PrivacyConfig;
  publishes: number;
}

const MAX_LEDGER_PUBLISHES = 100_000_000;

/** Slack for float rounding when the planned last publish lands exactly on the target. */
const EPSILON_SLACK = 1e-9;

export class PrivacyBudget {
  readonly noiseMultiplier: number;
  private readonly perPublishRdp: number[];
  private count: number;

  constructor(
    readonly config: PrivacyConfig,
    publishes = 0,
  ) {
    if (!Number.isInteger(publishes) || publishes < 0) throw new PrivacyConfigError(`publishes must be a non-negative integer, got ${publishes}`);
    this.noiseMultiplier = noiseMultiplierOf(config);
    this.perPublishRdp = rdpSubsampledGaussian(config.samplingRate, this.noiseMultiplier, 1);
    this.count = publishes;
  }

  get publishes(): number {
    return this.count;
  }

  /** ε spent after n publishes (default: those made so far). */
  epsilonAfter(n = this.count): number {
    if (n === 0) return 0;
    return epsilonFromRdp(DEFAULT_ORDERS, this.perPublishRdp.map((r) => r * n), this.config.delta).epsilon;
  }

  get epsilonSpent(): number {
    return this.epsilonAfter();
  }

  /** Whether one more publish stays within the budget. */
  canPublish(): boolean {
    return this.epsilonAfter(this.count + 1) <= this.config.targetEpsilon * (1 + EPSILON_SLACK);
  }

  /** Records one publish; throws PrivacyBudgetSpentError (and records nothing) when it would overspend. */
  recordPublish(): void {
    if (!this.canPublish()) {
      throw new PrivacyBudgetSpentError(`publishing again would spend ε = ${this.epsilonAfter(this.count + 1).toFixed(3)}, over the budget of ${this.config.targetEpsilon}`);
    }
    this.count++;
  }

  status(): PrivacyStatus {
    const { targetEpsilon, delta, maxPublishes, clipNorm, samplingRate } = this.config;
    return {
      epsilonSpent: this.epsilonSpent,
      targetEpsilon,
      delta,
      publishes: this.count,
      maxPublishes,
      noiseMultiplier: this.noiseMultiplier,
      clipNorm,
      samplingRate,
      exhausted: !this.canPublish(),
    };
  }

  toJSON(): PrivacyBudgetState {
    return { version: 1, config: { ...this.config }, publishes: this.count };
  }

  /** Restores a ledger from a checkpoint; throws PrivacyConfigError naming what is wrong. */
  static fromJSON(value: unknown): PrivacyBudget {
    if (typeof value !== 'object' || value === null) throw new PrivacyConfigError('privacy ledger must be an object');
    const state = value as Record<string, unknown>;
    if (state.version !== 1) throw new PrivacyConfigError(`privacy ledger version ${String(state.version).slice(0, 20)}; this build reads 1`);
    const config = parsePrivacyConfig(state.config, 'privacy ledger config');
    const publishes = state.publishes;
    // A fixed noise multiplier above the one the budget needs may allow more than maxPublishes publishes.
    if (typeof publishes !== 'number' || !Number.isInteger(publishes) || publishes < 0 || publishes > MAX_LEDGER_PUBLISHES) {
      throw new PrivacyConfigError(`privacy ledger publishes must be a whole number from 0 to ${MAX_LEDGER_PUBLISHES}`);
    }
    return new PrivacyBudget(config, publishes);
  }
}
