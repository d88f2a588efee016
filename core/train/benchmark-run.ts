/**
 * One training-speed measurement, the same in a browser page (app/harness/train.ts) and in Node
 * (bench/train-node.ts): LoRA on every block's four modules, timed steps after warm-up ones, and optionally the
 * roofline (matMul ceiling at the model's shapes and at a square shape, a per-kernel profile of one more step).
 */
import * as tf from '@tensorflow/tfjs';
import { MixtureSampler } from '../data/batches.ts';
import type { BaseWeights, Gpt2Config } from '../model/config.ts';
import { loraTrainingStepFlops } from '../model/flops.ts';
import { Gpt2Model } from '../model/gpt2.ts';
import { createRng } from '../util/random.ts';
import { profileStep, stepMatMulShapes, timeMatMul, weightedGflops, type MatMulTiming, type StepProfile } from './roofline.ts';
import { Trainer } from './trainer.ts';

declare const performance: { now(): number };

export const BENCHMARK_TARGETS = ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj'];

export interface BenchmarkOptions {
  steps: number;
  batchSize: number;
  seqLen: number;
  seed: number;
  rank: number;
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

export interface BenchmarkResult {
  config: Gpt2Config;
  parameters: number;
  losses: number[];
  stepMs: number[];
  /** CPU time of each timed step, where the runtime tells (Node): steadier than wall time on a loaded machine. */
  stepCpuMs: number[] | null;
  tokensPerSecond: number;
  /** FLOPs of one step counted from the config (core/model/flops.ts). */
  flopsPerStep: number;
  /** flopsPerStep over the median step time. */
  effectiveGflops: number;
  peakTensorBytes: number;
  peakJsHeapBytes: number | null;
  /** The LoRA factors after the timed steps, keyed like Gpt2Model.trainableVariables. */
  loraAfter?: Record<string, number[]>;
  roofline?: RooflineResult;
}

export interface BenchmarkInputs {
  config: Gpt2Config;
  /** Consumed: cleared once the model holds its own copies (a 124 M-parameter model should not sit twice in memory). */
  weights: BaseWeights;
  /** Training text as byte tokens. */
  tokens: Uint8Array;
  log?: (line: string) => void;
  /** JS heap in use, where the runtime tells (Chromium's performance.memory). */
  heapBytes?: () => number | null;
  /** This process's CPU time so far in ms, where the runtime tells (Node's process.cpuUsage). */
  cpuMs?: () => number;
  /** Return the LoRA factors after training (for agreement tests on small models). */
  returnLora?: boolean;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export async function benchmarkTraining(o: BenchmarkOptions, inputs: BenchmarkInputs): Promise<BenchmarkResult> {
  const { config, weights, log = () => {}, heapBytes = () => null } = inputs;
  let parameters = 0;
  for (const w of weights.values()) parameters += w.data.length;
  const model = new Gpt2Model(config, weights);
  weights.clear();
  model.attachLora({ r: o.rank, alpha: 2 * o.rank, targetModules: BENCHMARK_TARGETS }, o.seed);
  const trainer = new Trainer(model, {
    schedule: { lr: 2e-3, warmupSteps: 0, totalSteps: o.steps + o.warmupSteps + 1, minLrRatio: 1 },
    optimizer: { beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0 },
    clipNorm: 1,
    accumulation: 1,
  });
  try {
    const sampler = new MixtureSampler([{ name: 'bench', tokens: inputs.tokens, weight: 1 }], createRng(o.seed));
    const nextBatch = () => sampler.sample(o.batchSize, o.seqLen);
    const losses: number[] = [];
    const stepMs: number[] = [];
    const stepCpuMs: number[] = [];
    let peakTensorBytes = 0;
    let peakJsHeapBytes: number | null = null;
    for (let i = 0; i < o.warmupSteps + o.steps; i++) {
      const started = performance.now();
      const cpuStarted = inputs.cpuMs?.() ?? 0;
      const r = await trainer.trainStep(nextBatch);
      const ms = performance.now() - started;
      if (i >= o.warmupSteps) {
        losses.push(r.loss);
        stepMs.push(ms);
        if (inputs.cpuMs) stepCpuMs.push(inputs.cpuMs() - cpuStarted);
      }
      peakTensorBytes = Math.max(peakTensorBytes, tf.memory().numBytes);
      const h = heapBytes();
      if (h !== null) peakJsHeapBytes = Math.max(peakJsHeapBytes ?? 0, h);
      log(`step ${i + 1}: loss ${r.loss.toFixed(5)} in ${ms.toFixed(0)} ms`);
    }
    let loraAfter: Record<string, number[]> | undefined;
    if (inputs.returnLora) {
      loraAfter = {};
      for (const [name, v] of model.trainableVariables()) loraAfter[name] = Array.from((await v.data()) as Float32Array);
    }
    const medianMs = median(stepMs);
    const stepShape = { batch: o.batchSize, seqLen: o.seqLen, rank: o.rank, targetModules: BENCHMARK_TARGETS };
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
    return {
      config,
      parameters,
      losses,
      stepMs,
      stepCpuMs: inputs.cpuMs ? stepCpuMs : null,
      tokensPerSecond: (o.batchSize * o.seqLen * 1000) / medianMs,
      flopsPerStep,
      effectiveGflops: flopsPerStep / medianMs / 1e6,
      peakTensorBytes,
      peakJsHeapBytes,
      loraAfter,
      roofline,
    };
  } finally {
    trainer.dispose();
    model.dispose();
  }
}
