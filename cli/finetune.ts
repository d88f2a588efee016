// `swarm finetune`: LoRA fine-tuning of the base model on one Brown genre, alone (no swarm). Prints the genre's
// held-out loss before and after, and writes the adapter in the PEFT format. The single-peer baseline for runs.
import { readFile } from 'node:fs/promises';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { evaluationBatches, MixtureSampler } from '../core/data/batches.ts';
import { PreparedCorpus } from '../core/data/corpus.ts';
import { loadHfCheckpoint } from '../core/io/hf-checkpoint.ts';
import { exportPeft } from '../core/io/peft.ts';
import { LORA_TARGETS } from '../core/model/adapter.ts';
import { DEFAULT_MODEL_ID } from '../core/model/defaults.ts';
import { Gpt2Model } from '../core/model/gpt2.ts';
import { evaluate } from '../core/train/evaluate.ts';
import { Trainer } from '../core/train/trainer.ts';
import { createRng, deriveSeed } from '../core/util/random.ts';
import { directorySource, writeFilesTo } from './hf-source.ts';
import { initNodeBackend } from './tf-node.ts';
import { AssetsMissingError, ensurePreparedCorpus } from './prepare-assets.ts';

const HELP = `usage: swarm finetune [options]
  --genre NAME     Brown genre to fine-tune on (default mystery)
  --steps N        optimiser steps (default 300)
  --rank N         LoRA rank (default 8); alpha = 2 * rank
  --batch N        sequences of 128 bytes per step (default 8)
  --lr X           peak learning rate (default 0.003)
  --seed N         seed (default 1)
  --model DIR      base model folder (default public/models/${DEFAULT_MODEL_ID})
  --out DIR        where to write the PEFT adapter (default .data/adapters/<genre>-r<rank>)
  --json FILE      also write the numbers as JSON`;

export async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      genre: { type: 'string', default: 'mystery' },
      steps: { type: 'string', default: '300' },
      rank: { type: 'string', default: '8' },
      batch: { type: 'string', default: '8' },
      lr: { type: 'string', default: '0.003' },
      seed: { type: 'string', default: '1' },
      model: { type: 'string' },
      out: { type: 'string' },
      json: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const [steps, rank, batchSize, lr, seed] = [values.steps, values.rank, values.batch, values.lr, values.seed].map(Number);
  if (![steps, rank, batchSize, lr, seed].every(Number.isFinite) || steps < 1 || rank < 1 || batchSize < 1 || !(lr > 0)) {
    console.error('finetune: --steps, --rank, --batch and --lr must be positive numbers');
    return 2;
  }
  const root = join(import.meta.dirname, '..');
  const modelDir = values.model ?? join(root, 'public', 'models', DEFAULT_MODEL_ID);
  const backend = await initNodeBackend('wasm');
  let brownDir: string;
  try {
    brownDir = ensurePreparedCorpus(root);
  } catch (error) {
    if (!(error instanceof AssetsMissingError)) throw error;
    console.error(`finetune: ${error.message}`);
    return 1;
  }
  const corpus = await PreparedCorpus.open((p) => readFile(join(brownDir, p), 'utf8'));
  const genre = values.genre!;
  if (!corpus.genreNames().includes(genre)) {
    console.error(`finetune: unknown genre '${genre}' (known: ${corpus.genreNames().join(', ')})`);
    return 2;
  }
  const checkpoint = await loadHfCheckpoint(directorySource(modelDir));
  const model = new Gpt2Model(checkpoint.config, checkpoint.weights, { baseModelId: DEFAULT_MODEL_ID });
  const seqLen = checkpoint.config.nPositions;
  const heldOut = evaluationBatches(await corpus.bytes(genre, 'heldout'), 8, seqLen, 8);
  model.attachLora({ r: rank, alpha: 2 * rank, targetModules: [...LORA_TARGETS] }, seed);
  const before = await evaluate(model, heldOut);
  console.log(`finetune: ${genre}, rank ${rank}, ${steps} steps of ${batchSize}x${seqLen} bytes on ${backend}`);
  console.log(`  base model held-out loss: ${before.loss.toFixed(4)} nats/byte (${before.bitsPerByte.toFixed(3)} bits/byte)`);
  const trainer = new Trainer(model, {
    schedule: { lr, warmupSteps: Math.min(20, Math.floor(steps / 10)), totalSteps: steps, minLrRatio: 0.1 },
    optimizer: { beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0 },
    clipNorm: 1,
    accumulation: 1,
  });
  const sampler = new MixtureSampler([{ name: genre, tokens: await corpus.bytes(genre, 'train'), weight: 1 }], createRng(deriveSeed(seed, 'finetune')));
  const started = performance.now();
  for (let i = 0; i < steps; i++) {
    const r = await trainer.trainStep(() => sampler.sample(batchSize, seqLen));
    if (r.step % 50 === 0 || r.step === steps) console.log(`  step ${r.step}/${steps}  train loss ${r.loss.toFixed(4)}`);
  }
  const minutes = (performance.now() - started) / 60000;
  const after = await evaluate(model, heldOut);
  console.log(`  adapted held-out loss:    ${after.loss.toFixed(4)} nats/byte (${after.bitsPerByte.toFixed(3)} bits/byte)`);
  console.log(`  change: ${(after.loss - before.loss).toFixed(4)} nats/byte (${(((after.loss - before.loss) / before.loss) * 100).toFixed(1)}%) in ${minutes.toFixed(1)} min`);
  const out = values.out ?? join(root, '.data', 'adapters', `${genre}-r${rank}`);
  await writeFilesTo(out, exportPeft(await model.getAdapter(), { baseModelNameOrPath: DEFAULT_MODEL_ID }));
  console.log(`  wrote the PEFT adapter to ${out}`);
  if (values.json) {
    writeFileSync(values.json, JSON.stringify({ genre, rank, steps, batchSize, seqLen, lr, seed, backend, minutes, baseHeldOut: before, adaptedHeldOut: after }, null, 2) + '\n');
  }
  trainer.dispose();
  model.dispose();
  return 0;
}
