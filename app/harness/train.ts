// A page that trains LoRA steps on the default model with one backend, for the backend-agreement e2e test and
// `npm run bench:train`. The backend is fixed per page load (`?backend=webgpu|wasm|cpu&threads=1`), because
// WASM's threading is decided when the backend initialises.
import * as tf from '@tensorflow/tfjs';
import { initBrowserBackend, parseBackendPreference, type BackendChoice } from '../lib/backend.ts';
import { loadHfCheckpoint } from '../../core/io/hf-checkpoint.ts';
import { urlSource } from '../../core/io/source.ts';
import { DEFAULT_MODEL_CONFIG, DEFAULT_MODEL_PATH } from '../../core/model/defaults.ts';
import { Gpt2Model, initGpt2Weights } from '../../core/model/gpt2.ts';
import { Trainer } from '../../core/train/trainer.ts';
import { MixtureSampler } from '../../core/data/batches.ts';
import { createRng } from '../../core/util/random.ts';

export interface TrainRunOptions {
  steps: number;
  batchSize: number;
  seqLen: number;
  seed: number;
  rank: number;
  /** 'default' loads the committed base model; 'random' initialises the same architecture from the seed. */
  model: 'default' | 'random';
  genre: string;
  /** Steps run before timing starts (kernel compilation, WASM warm-up). */
  warmupSteps: number;
}

export interface TrainRunResult {
  backend: BackendChoice;
  losses: number[];
  stepMs: number[];
  tokensPerSecond: number;
  peakTensorBytes: number;
  peakJsHeapBytes: number | null;
}

const params = new URLSearchParams(location.search);
const threadsParam = params.get('threads');
const backendReady = initBrowserBackend(parseBackendPreference(params.get('backend')), {
  wasmThreads: threadsParam ? Number(threadsParam) : 'auto',
});

function log(line: string): void {
  document.getElementById('log')!.textContent += line + '\n';
}

async function run(partial: Partial<TrainRunOptions> = {}): Promise<TrainRunResult> {
  const o: TrainRunOptions = { steps: 5, batchSize: 8, seqLen: 128, seed: 1, rank: 8, model: 'default', genre: 'fiction', warmupSteps: 1, ...partial };
  const backend = await backendReady;
  log(`backend: ${backend.reason}`);
  const weights =
    o.model === 'default'
      ? (await loadHfCheckpoint(urlSource(DEFAULT_MODEL_PATH, (url) => fetch(url)))).weights
      : initGpt2Weights(DEFAULT_MODEL_CONFIG, o.seed);
  const model = new Gpt2Model(DEFAULT_MODEL_CONFIG, weights);
  model.attachLora({ r: o.rank, alpha: 2 * o.rank, targetModules: ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj'] }, o.seed);
  const trainer = new Trainer(model, {
    schedule: { lr: 2e-3, warmupSteps: 0, totalSteps: o.steps + o.warmupSteps, minLrRatio: 1 },
    optimizer: { beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0 },
    clipNorm: 1,
    accumulation: 1,
  });
  const text = new TextEncoder().encode(await (await fetch(`/data/brown/${o.genre}.train.txt`)).text());
  const sampler = new MixtureSampler([{ name: o.genre, tokens: text, weight: 1 }], createRng(o.seed));
  const losses: number[] = [];
  const stepMs: number[] = [];
  let peakTensorBytes = 0;
  let peakJsHeapBytes: number | null = null;
  const heap = () => (performance as Performance & { memory?: { usedJSHeapSize: number } }).memory?.usedJSHeapSize ?? null;
  for (let i = 0; i < o.warmupSteps + o.steps; i++) {
    const started = performance.now();
    const r = await trainer.trainStep(() => sampler.sample(o.batchSize, o.seqLen));
    const ms = performance.now() - started;
    if (i >= o.warmupSteps) {
      losses.push(r.loss);
      stepMs.push(ms);
    }
    peakTensorBytes = Math.max(peakTensorBytes, tf.memory().numBytes);
    const h = heap();
    if (h !== null) peakJsHeapBytes = Math.max(peakJsHeapBytes ?? 0, h);
    log(`step ${i + 1}: loss ${r.loss.toFixed(5)} in ${ms.toFixed(0)} ms`);
  }
  const sorted = [...stepMs].sort((a, b) => a - b);
  const medianMs = sorted[Math.floor(sorted.length / 2)];
  trainer.dispose();
  model.dispose();
  return { backend, losses, stepMs, tokensPerSecond: (o.batchSize * o.seqLen * 1000) / medianMs, peakTensorBytes, peakJsHeapBytes };
}

declare global {
  interface Window {
    trainHarness: { ready: Promise<BackendChoice>; run: typeof run };
  }
}
window.trainHarness = { ready: backendReady, run };
