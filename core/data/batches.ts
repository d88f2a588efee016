/** Random language-modelling batches from a mixture of token streams. */
import { createRng, deriveSeed } from '../util/random.ts';

export interface Batch {
  /** [batch * seqLen] token ids. */
  inputs: Int32Array;
  /** [batch * seqLen] next-token ids. */
  targets: Int32Array;
  batchSize: number;
  seqLen: number;
}

export class DatasetError extends Error {
  static override readonly name = 'DatasetError';
  override readonly name = DatasetError.name;
}

export interface MixtureSource {
  name: string;
  tokens: ArrayLike<number>;
  weight: number;
}

/** Samples windows from sources chosen by weight; each window is a contiguous run of seqLen + 1 tokens. */
export class MixtureSampler {
  private readonly cumulative: number[] = [];

  constructor(
    private readonly sources: MixtureSource[],
    private readonly rng: () => number,
  ) {
    let total = 0;
    for (const s of sources) total += s.weight;
    if (!(total > 0)) throw new DatasetError('mixture weights must sum to a positive number');
    let acc = 0;
    for (const s of sources) {
      acc += s.weight / total;
      this.cumulative.push(acc);
    }
  }

  sample(batchSize: number, seqLen: number): Batch {
    const inputs = new Int32Array(batchSize * seqLen);
    const targets = new Int32Array(batchSize * seqLen);
    for (let b = 0; b < batchSize; b++) {
      const u = this.rng();
      let k = this.cumulative.findIndex((c) => u < c);
      if (k < 0) k = this.sources.length - 1;
      const tokens = this.sources[k].tokens;
      if (tokens.length < seqLen + 1) throw new DatasetError(`source '${this.sources[k].name}' has ${tokens.length} tokens, fewer than a window of ${seqLen + 1}`);
      const start = Math.floor(this.rng() * (tokens.length - seqLen - 1));
      for (let t = 0; t < seqLen; t++) {
        inputs[b * seqLen + t] = tokens[start + t];
        targets[b * seqLen + t] = tokens[start + t + 1];
      }
    }
    return { inputs, targets, batchSize, seqLen };
  }
}

/**
 * The seed of batch `step` of partition slot `slot` in a run: the one place that says which batch a peer trains on
 * at which step. The swarm's peers, the lockstep baselines and a peer resumed from its checkpoint (the step counter
 * is the data position) all draw the same batch for the same (run seed, slot, step).
 */
export function batchSeed(runSeed: number, slot: number, step: number): number {
  return deriveSeed(runSeed, `batch/${slot}/${step}`);
}

/** Batch `step` of partition slot `slot`: a fresh sampler over the slot's sources, seeded by batchSeed. */
export function slotBatch(sources: MixtureSource[], runSeed: number, slot: number, step: number, batchSize: number, seqLen: number): Batch {
  return new MixtureSampler(sources, createRng(batchSeed(runSeed, slot, step))).sample(batchSize, seqLen);
}

/** Non-overlapping windows covering a held-out stream (at most maxBatches), for deterministic evaluation. */
export function evaluationBatches(tokens: ArrayLike<number>, batchSize: number, seqLen: number, maxBatches: number): Batch[] {
  const windows = Math.floor((tokens.length - 1) / seqLen);
  const usable = Math.min(windows, batchSize * maxBatches);
  // Spread the windows over the whole stream rather than taking its first part only.
  const stride = Math.max(1, Math.floor(windows / Math.max(1, usable)));
  const batches: Batch[] = [];
  for (let first = 0; first + batchSize <= usable; first += batchSize) {
    const inputs = new Int32Array(batchSize * seqLen);
    const targets = new Int32Array(batchSize * seqLen);
    for (let b = 0; b < batchSize; b++) {
      const start = (first + b) * stride * seqLen;
      for (let t = 0; t < seqLen; t++) {
        inputs[b * seqLen + t] = tokens[start + t];
        targets[b * seqLen + t] = tokens[start + t + 1];
      }
    }
    batches.push({ inputs, targets, batchSize, seqLen });
  }
  if (batches.length === 0) throw new DatasetError(`held-out stream of ${tokens.length} tokens is too short for one batch of ${batchSize}x${seqLen}`);
  return batches;
}
