/**
 * One peer's differential privacy, as the peer engine (core/swarm/peer-engine.ts) runs it: the volunteer's records,
 * each round's Poisson sample of them, the ledger, and the release of a round's update.
 *
 * Why each release is one step of the Poisson-subsampled Gaussian mechanism that the accountant (rdp.ts) counts:
 * - A round starts from the round anchor, which is public (the peer's last release merged with neighbours' public
 *   adapters), with the optimiser's moments restarted: the moments of the previous round were estimated from its
 *   private sample, and carrying them over would let that sample reach this round's update without noise.
 * - The only records a round trains on are its sample: each record joins independently with probability q, drawn
 *   from a cryptographically sound source whose state never leaves the worker. Public corpus text fills the rest of
 *   each batch; it needs no protection.
 * - The release is anchor + clip(current − anchor, C) + N(0, (z·2C)²) (mechanism.ts), and the peer continues from it:
 *   it replaces the trained adapter, so nothing that was not released carries private information onward.
 * - Anything else that leaves the peer is computed from public points only: the engine does not gossip the
 *   training loss (it is measured on private records), and evaluates held-out loss only at round boundaries.
 * - Once the next release would overspend, the records are no longer sampled and nothing more is released.
 */
import type { Adapter } from '../model/adapter.ts';
import type { MixtureSource } from '../data/batches.ts';
import { PrivacyBudget, type PrivacyBudgetState, type PrivacyStatus } from './budget.ts';
import { volunteerRecordsProblem, type PrivacyConfig } from './config.ts';
import { poissonSample, privatizeUpdate, type PrivatizedUpdate } from './mechanism.ts';
import { NoiseSource } from './noise-source.ts';

/** Non-overlapping records of recordBytes bytes (the last partial one is dropped): the unit that DP protects. */
export function splitIntoRecords(text: Uint8Array, recordBytes: number): Uint8Array[] {
  if (!Number.isInteger(recordBytes) || recordBytes < 2) throw new RangeError(`a record needs at least 2 bytes, got ${recordBytes}`);
  const records: Uint8Array[] = [];
  for (let at = 0; at + recordBytes <= text.length; at += recordBytes) records.push(text.subarray(at, at + recordBytes));
  return records;
}

/** Where the Poisson samples and the noise come from: separate streams, so a study can pair its arms' samples. */
export interface PrivacyRandomness {
  sampling: NoiseSource;
  noise: NoiseSource;
}

/** Both streams seeded from crypto.getRandomValues: what a volunteer's peer uses. */
export function platformRandomness(): PrivacyRandomness {
  return { sampling: NoiseSource.fromPlatformEntropy(), noise: NoiseSource.fromPlatformEntropy() };
}

function sameConfig(a: PrivacyConfig, b: PrivacyConfig): boolean {
  return (
    a.targetEpsilon === b.targetEpsilon && a.delta === b.delta && a.clipNorm === b.clipNorm && a.samplingRate === b.samplingRate &&
    a.maxPublishes === b.maxPublishes && a.noiseMultiplier === b.noiseMultiplier
  );
}

export class PeerPrivacy {
  private budget: PrivacyBudget;
  private readonly records: Uint8Array[] = [];
  private sample: number[] = [];

  constructor(
    readonly config: PrivacyConfig,
    /** seqLen + 1: one training window. */
    private readonly recordBytes: number,
    private readonly randomness: PrivacyRandomness = platformRandomness(),
  ) {
    this.budget = new PrivacyBudget(config);
  }

  get recordCount(): number {
    return this.records.length;
  }

  /** Records in this round's sample. */
  get sampled(): number {
    return this.sample.length;
  }

  /** Why the run's δ cannot cover the records a file would bring (in words), or null. */
  fileProblem(text: Uint8Array): string | null {
    return volunteerRecordsProblem(this.config, this.records.length + Math.floor(text.length / this.recordBytes));
  }

  /** Adds a file's records; they are sampled from the next round on. */
  addFile(text: Uint8Array): void {
    this.records.push(...splitIntoRecords(text, this.recordBytes));
  }

  /** Draws this round's Poisson sample of the records; none once the budget is spent. */
  startRound(): void {
    this.sample = this.budget.canPublish() ? poissonSample(this.records.length, this.config.samplingRate, this.randomness.sampling) : [];
  }

  /**
   * The round's sampled records as mixture sources sharing `weight` equally. Each source is exactly one record, so
   * MixtureSampler's window is the whole record and no window spans two records.
   */
  sampledSources(weight: number): MixtureSource[] {
    return this.sample.map((i) => ({ name: `record:${i}`, tokens: this.records[i], weight: weight / this.sample.length }));
  }

  canPublish(): boolean {
    return this.budget.canPublish();
  }

  /**
   * Releases the round's update: the ledger counts it first (a failure after this over-counts, never under-counts),
   * then anchor + clip(current − anchor) + noise. Throws PrivacyBudgetSpentError when it would overspend.
   */
  release(current: Adapter, anchor: Adapter): PrivatizedUpdate {
    this.budget.recordPublish();
    this.sample = [];
    return privatizeUpdate(current, anchor, { clipNorm: this.config.clipNorm, noiseMultiplier: this.budget.noiseMultiplier, source: this.randomness.noise });
  }

  status(): PrivacyStatus {
    return this.budget.status();
  }

  ledger(): PrivacyBudgetState {
    return this.budget.toJSON();
  }

  /**
   * Takes the spend of stored ledgers (every checkpoint copy that could be read, usable or not): the largest count
   * of this run's setting wins, so a reload never lowers the spend. Returns whether one applied.
   */
  restoreLedger(ledgers: PrivacyBudgetState[]): boolean {
    const counts = ledgers.filter((l) => sameConfig(l.config, this.config)).map((l) => l.publishes);
    if (counts.length === 0) return false;
    this.budget = new PrivacyBudget(this.config, Math.max(this.budget.publishes, ...counts));
    return true;
  }
}

/** Whether a stored ledger belongs to this run's privacy setting. */
export function ledgerMatches(ledger: PrivacyBudgetState, config: PrivacyConfig): boolean {
  return sameConfig(ledger.config, config);
}
