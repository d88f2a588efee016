// A page that trains LoRA steps with one backend, for the backend-agreement e2e test and `npm run bench:train`.
// The backend is fixed per page load (`?backend=webgpu|wasm|cpu&threads=N`), because WASM's thread pool is sized
// when the backend initialises. With `roofline: true` the same page also measures plain matMul speed at the
// model's shapes and at a large square shape, and profiles one step by kernel.
import * as tf from '@tensorflow/tfjs';
import { initBrowserBackend, parseBackendPreference, type BackendChoice } from '../lib/backend.ts';
import { loadHfCheckpoint } from '../../core/io/checkpoint.ts';
import { urlSource } from '../../core/io/source.ts';
import type { Gpt2Config } from '../../core/model/config.ts';
import { DEFAULT_MODEL_CONFIG, DEFAULT_MODEL_PATH, GPT2_SMALL_CONFIG } from '../../core/model/defaults.ts';
import { loraTrainingStepFlops } from '../../core/model/flops.ts';
import { Gpt2Model, initGpt2Weights } from '../../core/model/gpt2.ts';
import { Trainer } from '../../core/train/trainer.ts';
import { profileStep, stepMatMulShapes, timeMatMul, weightedGflops, type MatMulTiming, type StepProfile } from '../../core/train/roofline.ts';
import { MixtureSampler } from '../../core/data/batches.ts';
import { createRng } from '../../core/util/random.ts';

const TARGETS = ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj'];

export interface TrainRunOptions {
  steps: number;
  batchSize: number;
  seqLen: number;
  seed: number;
  rank: number;
  /**
   * 'default' loads the committed base model; 'random' initialises the same architecture from the seed;
   * 'gpt2-small' initialises GPT-2 small's shape (124 M parameters) from the seed.
   */
  model: 'default' | 'random' | 'gpt2-small';
  genre: string;
  /** Steps run before timing starts (kernel compilation, WASM warm-up). */
  warmupSteps: number;
  /** Also measure the matMul ceiling and profile one step (after the timed steps). */
  roofline?: boolean;
  /** Side of the large square matMul of the roofline. */
  squareSize?: number;
}

export interface RooflineResult {
  /** Forward products of the step by shape, each timed alone. */
  shapes: MatMulTiming[];
  /** GFLOP/s over those shapes, weighted as often as the step runs them: the ceiling at the model's shapes. */
  modelShapeGflops: number;
  square: MatMulTiming;
  profile: StepProfile;
}

export interface TrainRunResult {
  backend: BackendChoice;
  config: Gpt2Config;
  parameters: number;
  losses: number[];
  stepMs: number[];
  tokensPerSecond: number;
  /** FLOPs of one step counted from the config (core/model/flops.ts). */
  flopsPerStep: number;
  /** flopsPerStep over the median step time. */
  effectiveGflops: number;
  peakTensorBytes: number;
  peakJsHeapBytes: number | null;
  roofline?: RooflineResult;
}

const params = new URLSearchParams(location.search);
const threadsParam = params.get('threads');
const backendReady = initBrowserBackend(parseBackendPreference(params.get('backend')), {
  wasmThreads: threadsParam ? Number(threadsParam) : 'auto',
});

function log(line: string): void {
  document.getElementById('log')!.textContent += line + '\n';
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function run(partial: Partial<TrainRunOptions> = {}): Promise<TrainRunResult> {
  const o: TrainRunOptions = { steps: 5, batchSize: 8, seqLen: 128, seed: 1, rank: 8, model: 'default', genre: 'fiction', warmupSteps: 1, ...partial };
  const backend = await backendReady;
  log(`backend: ${backend.reason}`);
  const config = o.model === 'gpt2-small' ? GPT2_SMALL_CONFIG : DEFAULT_MODEL_CONFIG;
  const weights =
    o.model === 'default'
      ? (await loadHfCheckpoint(urlSource(DEFAULT_MODEL_PATH, (url) => fetch(url)))).weights
      : initGpt2Weights(config, o.seed);
  let parameters = 0;
  for (const w of weights.values()) parameters += w.data.length;
  const model = new Gpt2Model(config, weights);
  weights.clear(); // the model holds its own copies; a 124 M-parameter model should not stay twice in memory
  model.attachLora({ r: o.rank, alpha: 2 * o.rank, targetModules: TARGETS }, o.seed);
  const trainer = new Trainer(model, {
    schedule: { lr: 2e-3, warmupSteps: 0, totalSteps: o.steps + o.warmupSteps + 1, minLrRatio: 1 },
    optimizer: { beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0 },
    clipNorm: 1,
    accumulation: 1,
  });
  const text = new TextEncoder().encode(await (await fetch(`/data/brown/${o.genre}.train.txt`)).text());
  const sampler = new MixtureSampler([{ name: o.genre, tokens: text, weight: 1 }], createRng(o.seed));
  const nextBatch = () => sampler.sample(o.batchSize, o.seqLen);
  const losses: number[] = [];
  const stepMs: number[] = [];
  let peakTensorBytes = 0;
  let peakJsHeapBytes: number | null = null;
  const heap = () => (performance as Performance & { memory?: { usedJSHeapSize: number } }).memory?.usedJSHeapSize ?? null;
  for (let i = 0; i < o.warmupSteps + o.steps; i++) {
    const started = performance.now();
    const r = await trainer.trainStep(nextBatch);
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
  const medianMs = median(stepMs);
  const stepShape = { batch: o.batchSize, seqLen: o.seqLen, rank: o.rank, targetModules: TARGETS };
  const flopsPerStep = loraTrainingStepFlops(config, stepShape).total;
  let roofline: RooflineResult | undefined;
  if (o.roofline) {
    const profile = await profileStep(() => trainer.trainStep(nextBatch));
    log(`profile: ${profile.kernels.slice(0, 6).map((k) => `${k.kernel} ${(100 * k.share).toFixed(0)}%`).join(', ')}`);
    const shapes: MatMulTiming[] = [];
    for (const s of stepMatMulShapes(config, stepShape)) shapes.push(await timeMatMul(s));
    const side = o.squareSize ?? 1024;
    const square = await timeMatMul({ label: `square ${side}`, batch: 1, m: side, k: side, n: side, perStep: 0 });
    roofline = { shapes, modelShapeGflops: weightedGflops(shapes), square, profile };
    log(`matMul: ${roofline.modelShapeGflops.toFixed(1)} GFLOP/s at the model's shapes, ${square.gflops.toFixed(1)} at ${side}²`);
  }
  trainer.dispose();
  model.dispose();
  return {
    backend,
    config,
    parameters,
    losses,
    stepMs,
    tokensPerSecond: (o.batchSize * o.seqLen * 1000) / medianMs,
    flopsPerStep,
    effectiveGflops: flopsPerStep / medianMs / 1e6,
    peakTensorBytes,
    peakJsHeapBytes,
    roofline,
  };
}

declare global {
  interface Window {
    trainHarness: { ready: Promise<BackendChoice>; run: typeof run };
  }
}
window.trainHarness = { ready: backendReady, run };
