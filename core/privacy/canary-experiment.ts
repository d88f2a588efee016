/**
 * The measured-protection experiment: a volunteer's local file with planted secrets ("my PIN is 418937"), local
 * training for some rounds with or without differential privacy, and what the published adapter then reveals —
 * each secret's exposure (exposure.ts) and a loss-threshold membership test on trained vs unseen records of the
 * same text. Used by core/privacy/canary.test.ts (small, in CI) and `npm run bench:privacy` (larger).
 */
import type { Adapter } from '../model/adapter.ts';
import type { Gpt2Model } from '../model/gpt2.ts';
import type { TrainerConfig } from '../train/trainer.ts';
import { createRng, deriveSeed } from '../util/random.ts';
import { chanceExposure, exposure, mean, membershipAuc } from './exposure.ts';
import { NoiseSource } from './noise-source.ts';
import { splitIntoRecords } from './peer-privacy.ts';
import { privateRound, type RoundPrivacy } from './private-round.ts';
import { sequenceNll } from './scoring.ts';

export interface CanaryExperimentOptions {
  model: Gpt2Model;
  /** The adapter every arm starts from (fresh LoRA: B = 0). */
  initial: Adapter;
  /**
   * Ordinary text: alternate records become the volunteer's file and the unseen records of the membership test,
   * so both come from the same documents.
   */
  text: Uint8Array;
  records: number;
  recordBytes: number;
  canaries: number;
  /** Random candidates each secret is ranked against. */
  candidates: number;
  rounds: number;
  stepsPerRound: number;
  batchSize: number;
  trainer: TrainerConfig;
  privacy: RoundPrivacy | null;
  seed: number;
}

export interface Leakage {
  exposures: number[];
  meanExposure: number;
  membershipAuc: number;
  /** Mean loss per byte on the file's records (without secrets) and on the unseen records. */
  memberLoss: number;
  unseenLoss: number;
}

export interface CanaryExperimentResult extends Leakage {
  /** The same measurements on the starting adapter, which has seen none of the file: the empirical chance level. */
  before: Leakage;
  meanExposure: number;
  chanceExposure: number;
  maxExposure: number;
  membershipAuc: number;
  memberLoss: number;
  unseenLoss: number;
  /** Records in each round's sample. */
  sampled: number[];
}

const SECRET_DIGITS = 6;
const PHRASE = ' my PIN is ';

function digits(rng: () => number): string {
  let s = '';
  for (let i = 0; i < SECRET_DIGITS; i++) s += Math.floor(rng() * 10).toString();
  return s;
}

function ascii(text: string): Uint8Array {
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

export async function runCanaryExperiment(o: CanaryExperimentOptions): Promise<CanaryExperimentResult> {
  const rng = createRng(deriveSeed(o.seed, 'canaries'));
  const all = splitIntoRecords(o.text, o.recordBytes).slice(0, 2 * o.records);
  if (all.length < 2 * o.records) throw new RangeError(`the text holds fewer than ${2 * o.records} records of ${o.recordBytes} bytes`);
  const text = all.filter((_, i) => i % 2 === 0);
  const unseen = all.filter((_, i) => i % 2 === 1);
  const tailBytes = PHRASE.length + SECRET_DIGITS;
  // Secret i sits at the end of record i·stride, after that record's own text, as a sentence would in a real file.
  const stride = Math.floor(o.records / o.canaries);
  const secrets: { record: number; secret: string }[] = [];
  const records = text.map((r) => r.slice());
  for (let i = 0; i < o.canaries; i++) {
    const secret = digits(rng);
    const record = i * stride;
    records[record].set(ascii(PHRASE + secret), o.recordBytes - tailBytes);
    secrets.push({ record, secret });
  }

  const from = o.recordBytes - SECRET_DIGITS;
  const candidateSets = secrets.map(({ record, secret }) => {
    const candidates: Uint8Array[] = [];
    const seen = new Set([secret]);
    while (candidates.length < o.candidates) {
      const c = digits(rng);
      if (seen.has(c)) continue;
      seen.add(c);
      const copy = records[record].slice();
      copy.set(ascii(c), from);
      candidates.push(copy);
    }
    return candidates;
  });
  const before = await measureLeakage(o, o.initial, records, unseen, secrets, candidateSets);

  const sampleSource = NoiseSource.fromTestSeed(deriveSeed(o.seed, 'sample'));
  const noiseSource = NoiseSource.fromTestSeed(deriveSeed(o.seed, 'noise'));
  const batchRng = createRng(deriveSeed(o.seed, 'batches'));
  let anchor = o.initial;
  const sampled: number[] = [];
  for (let round = 0; round < o.rounds; round++) {
    const result = await privateRound({
      model: o.model,
      anchor,
      records,
      steps: o.stepsPerRound,
      batchSize: o.batchSize,
      trainer: o.trainer,
      samplingRate: 1,
      privacy: o.privacy,
      sampleSource,
      noiseSource,
      batchRng,
    });
    anchor = result.published;
    sampled.push(result.sampled);
  }

  const after = await measureLeakage(o, anchor, records, unseen, secrets, candidateSets);
  return { ...after, before, chanceExposure: chanceExposure(o.candidates), maxExposure: Math.log2(o.candidates + 1), sampled };
}

async function measureLeakage(
  o: CanaryExperimentOptions,
  published: Adapter,
  records: Uint8Array[],
  unseen: Uint8Array[],
  secrets: { record: number; secret: string }[],
  candidateSets: Uint8Array[][],
): Promise<Leakage> {
  o.model.setAdapter(published);
  const from = o.recordBytes - SECRET_DIGITS;
  const exposures: number[] = [];
  for (let i = 0; i < secrets.length; i++) {
    const [trueScore, ...candidateScores] = await sequenceNll(o.model, [records[secrets[i].record], ...candidateSets[i]], from);
    exposures.push(exposure(trueScore, candidateScores));
  }
  const plain = records.filter((_, i) => !secrets.some((s) => s.record === i));
  const memberLosses = await sequenceNll(o.model, plain, 1);
  const unseenLosses = await sequenceNll(o.model, unseen.slice(0, plain.length), 1);
  const perByte = (xs: number[]) => mean(xs) / (o.recordBytes - 1);
  return {
    exposures,
    meanExposure: mean(exposures),
    membershipAuc: membershipAuc(memberLosses, unseenLosses),
    memberLoss: perByte(memberLosses),
    unseenLoss: perByte(unseenLosses),
  };
}
