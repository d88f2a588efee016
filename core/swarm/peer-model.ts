/**
 * A peer's model and trainer as a run manifest makes them: the base model with the run's LoRA (the same seed on
 * every peer, so all start from the same A, which keeps fedavg's cross terms small) and AdamW with the run's
 * schedule. The one home of this recipe: the peer engine and the lockstep baselines of `swarm simulate` both build
 * from it, so a baseline trains exactly as a peer would.
 */
import { Gpt2Model } from '../model/gpt2.ts';
import { Trainer, type TrainerConfig } from '../train/trainer.ts';
import { ADAMW_DEFAULTS } from '../train/adamw.ts';
import type { BaseWeights, Gpt2Config } from '../model/config.ts';
import type { RunManifest } from '../wire/run-manifest.ts';
import type { RunTrainingSettings } from './run.ts';
import type { PreparedCorpus } from '../data/corpus.ts';
import { evaluationBatches, type Batch } from '../data/batches.ts';
import { evaluate } from '../train/evaluate.ts';
import { mixtureLoss } from '../data/partition.ts';
import type { HeldOutPoint } from './engine-protocol.ts';

export function peerModel(base: { config: Gpt2Config; weights: BaseWeights }, manifest: RunManifest, settings: RunTrainingSettings): Gpt2Model {
  const model = new Gpt2Model(base.config, base.weights, { baseModelId: manifest.baseModel.id });
  // In 'frozen-a' mode every peer's A is this same seeded A and never trains, so fedavg's cross terms vanish.
  model.attachLora(manifest.lora, settings.seed, manifest.lora.mode ?? 'standard');
  return model;
}

export function peerTrainerConfig(settings: RunTrainingSettings, accumulation = 1): TrainerConfig {
  return { schedule: settings.schedule, optimizer: { ...ADAMW_DEFAULTS, weightDecay: settings.weightDecay }, clipNorm: settings.clipNorm, accumulation };
}

/** A trainer (its own AdamW moments and step count) over a peer model's LoRA variables. */
export function peerTrainer(model: Gpt2Model, settings: RunTrainingSettings, accumulation = 1): Trainer {
  return new Trainer(model, peerTrainerConfig(settings, accumulation));
}

/** Sequences per evaluation batch. */
export const EVAL_BATCH = 4;

/** Each genre's evaluation batches: every run genre and every genre the peer trains on, from the chosen split. */
export async function evaluationSets(corpus: PreparedCorpus, genres: Iterable<string>, seqLen: number, batchesPerGenre: number, split: 'heldout' | 'validation'): Promise<Map<string, Batch[]>> {
  const sets = new Map<string, Batch[]>();
  for (const genre of genres) sets.set(genre, evaluationBatches(await corpus.bytes(genre, split), EVAL_BATCH, seqLen, batchesPerGenre));
  return sets;
}

/** Loss on each genre, their mean over the run's genres, and the mixture-weighted loss on the peer's own data. */
export async function evaluatePeer(model: Gpt2Model, sets: Map<string, Batch[]>, runGenres: string[], mixture: Record<string, number>, step: number, atMs: number): Promise<HeldOutPoint> {
  const byGenre: Record<string, number> = {};
  for (const [genre, batches] of sets) byGenre[genre] = (await evaluate(model, batches)).loss;
  return { step, ...lossesOf(byGenre, runGenres, mixture), byGenre, atMs };
}

/** The all-genre mean and the own-mixture loss of per-genre losses. */
export function lossesOf(byGenre: Record<string, number>, runGenres: string[], mixture: Record<string, number>): { own: number; allGenres: number } {
  const allGenres = runGenres.reduce((s, g) => s + byGenre[g], 0) / runGenres.length;
  return { own: mixtureLoss(byGenre, mixture), allGenres };
}
