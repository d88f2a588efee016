/**
 * One round of a peer's local training as differential privacy needs it, for the engine, the canary test and the
 * utility study: start from the public anchor with a fresh optimiser (nothing private carries over between
 * rounds except through what was published), train on this round's Poisson sample of the volunteer's records,
 * then publish anchor + clip(update) + noise. Without a privacy setting it publishes the adapter as it is (the same
 * sample and batches, so arms of a study differ only in clipping and noise). Uses tfjs through core/train, so it is not re-exported from core/privacy/index.ts.
 */
import type { Batch } from '../data/batches.ts';
import type { Adapter } from '../model/adapter.ts';
import type { Gpt2Model } from '../model/gpt2.ts';
import { Trainer, type TrainerConfig } from '../train/trainer.ts';
import { poissonSample, privatizeUpdate, type ClipResult } from './mechanism.ts';
import type { NoiseSource } from './noise-source.ts';

export interface RoundPrivacy {
  clipNorm: number;
  noiseMultiplier: number;
}

export interface PrivateRoundOptions {
  model: Gpt2Model;
  /** Public starting point: what the peer holds after its last publish and merge. */
  anchor: Adapter;
  /** The volunteer's records, each seqLen + 1 bytes. */
  records: readonly Uint8Array[];
  steps: number;
  batchSize: number;
  trainer: TrainerConfig;
  /** Poisson rate q of the round's sample (the accountant's sampling rate); 1 takes every record. */
  samplingRate: number;
  /** null: no differential privacy (publish the raw adapter). */
  privacy: RoundPrivacy | null;
  /** Draws the Poisson sample. */
  sampleSource: NoiseSource;
  /** Draws the noise. */
  noiseSource: NoiseSource;
  /** Picks records from the sample for each batch. */
  batchRng: () => number;
}

export interface PrivateRoundResult {
  published: Adapter;
  /** Records in this round's sample. */
  sampled: number;
  meanLoss: number;
  clip: ClipResult | null;
}

export async function privateRound(o: PrivateRoundOptions): Promise<PrivateRoundResult> {
  const sample = poissonSample(o.records.length, o.samplingRate, o.sampleSource);
  o.model.setAdapter(o.anchor);
  let lossSum = 0;
  if (sample.length > 0) {
    const seqLen = o.records[sample[0]].length - 1;
    const nextBatch = (): Batch => {
      const inputs = new Int32Array(o.batchSize * seqLen);
      const targets = new Int32Array(o.batchSize * seqLen);
      for (let b = 0; b < o.batchSize; b++) {
        const record = o.records[sample[Math.floor(o.batchRng() * sample.length)]];
        for (let t = 0; t < seqLen; t++) {
          inputs[b * seqLen + t] = record[t];
          targets[b * seqLen + t] = record[t + 1];
        }
      }
      return { inputs, targets, batchSize: o.batchSize, seqLen };
    };
    const trainer = new Trainer(o.model, o.trainer);
    try {
      for (let s = 0; s < o.steps; s++) lossSum += (await trainer.trainStep(nextBatch)).loss;
    } finally {
      trainer.dispose();
    }
  }
  const current = await o.model.getAdapter();
  const meanLoss = sample.length > 0 ? lossSum / o.steps : NaN;
  if (!o.privacy) return { published: current, sampled: sample.length, meanLoss, clip: null };
  const { published, clip } = privatizeUpdate(current, o.anchor, { clipNorm: o.privacy.clipNorm, noiseMultiplier: o.privacy.noiseMultiplier, source: o.noiseSource });
  return { published, sampled: sample.length, meanLoss, clip };
}
