/**
 * What the hardware can do against what a training step does, measured on the tfjs backend in use: the GFLOP/s of
 * a plain matMul at the model's own shapes and at a large square shape (the "ceiling"), and the share of a step's
 * time each kernel takes (from tf.profile). The training benchmark runs both in the same page as the step itself.
 */
import * as tf from '@tensorflow/tfjs';
import type { Gpt2Config } from '../model/config.ts';
import { loraModuleDims } from '../model/config.ts';
import type { StepShape } from '../model/flops.ts';

// core has no DOM or Node typings; every runtime Swarm targets has performance.now().
declare const performance: { now(): number };

export interface MatMulShape {
  label: string;
  /** Independent products in one batched call (attention: batch × heads). */
  batch: number;
  m: number;
  k: number;
  n: number;
  /** How many times one training step's forward pass runs this product. */
  perStep: number;
}

export interface MatMulTiming extends MatMulShape {
  msPerCall: number;
  gflops: number;
}

export const matMulFlops = (s: Pick<MatMulShape, 'batch' | 'm' | 'k' | 'n'>): number => 2 * s.batch * s.m * s.k * s.n;

/**
 * The distinct products of a LoRA training step's forward pass, with how often each runs. The backward pass runs
 * the same sizes with operands swapped, so these shapes stand for the whole step.
 */
export function stepMatMulShapes(config: Gpt2Config, shape: StepShape): MatMulShape[] {
  const { batch, seqLen: t, rank: r } = shape;
  const n = batch * t;
  const { nEmbd: d, nHead: h, nLayer: layers, vocabSize: v } = config;
  const shapes: MatMulShape[] = [];
  const add = (s: MatMulShape) => {
    const same = shapes.find((x) => x.batch === s.batch && x.m === s.m && x.k === s.k && x.n === s.n);
    if (same) same.perStep += s.perStep;
    else shapes.push(s);
  };
  for (const module of ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj']) {
    const { inDim, outDim } = loraModuleDims(config, module);
    add({ label: module, batch: 1, m: n, k: inDim, n: outDim, perStep: layers });
    if (shape.targetModules.includes(module)) {
      add({ label: `${module} LoRA x·Aᵀ`, batch: 1, m: n, k: inDim, n: r, perStep: layers });
      add({ label: `${module} LoRA ·Bᵀ`, batch: 1, m: n, k: r, n: outDim, perStep: layers });
    }
  }
  add({ label: 'attention Q·Kᵀ', batch: batch * h, m: t, k: d / h, n: t, perStep: layers });
  add({ label: 'attention P·V', batch: batch * h, m: t, k: t, n: d / h, perStep: layers });
  add({ label: 'LM head', batch: 1, m: n, k: d, n: v, perStep: 1 });
  return shapes;
}

/**
 * Times tf.matMul at one shape: calls are queued in growing rounds, each ended by reading the last result back (so
 * asynchronous backends finish their work inside the timing), until a round lasts at least minMs.
 */
export async function timeMatMul(shape: MatMulShape, minMs = 150): Promise<MatMulTiming> {
  const dims = (rows: number, cols: number) => (shape.batch > 1 ? [shape.batch, rows, cols] : [rows, cols]);
  const a = tf.randomNormal(dims(shape.m, shape.k));
  const b = tf.randomNormal(dims(shape.k, shape.n));
  try {
    const warm = tf.matMul(a, b); // compiles the kernel on WebGPU, sizes the pool on WASM
    await warm.data();
    warm.dispose();
    for (let calls = 1; ; calls *= 2) {
      const started = performance.now();
      let last: tf.Tensor | undefined;
      for (let i = 0; i < calls; i++) {
        last?.dispose();
        last = tf.matMul(a, b);
      }
      await last!.data();
      last!.dispose();
      const ms = performance.now() - started;
      if (ms >= minMs || calls >= 1 << 14) {
        const msPerCall = ms / calls;
        return { ...shape, msPerCall, gflops: matMulFlops(shape) / msPerCall / 1e6 };
      }
    }
  } finally {
    a.dispose();
    b.dispose();
  }
}

/** GFLOP/s over a whole step's products: every shape weighted by how often the step runs it. */
export function weightedGflops(timings: MatMulTiming[]): number {
  let flops = 0;
  let ms = 0;
  for (const t of timings) {
    flops += matMulFlops(t) * t.perStep;
    ms += t.msPerCall * t.perStep;
  }
  return flops / ms / 1e6;
}

export interface KernelShare {
  kernel: string;
  calls: number;
  ms: number;
  /** Of the summed kernel time. */
  share: number;
}

export interface StepProfile {
  /** Kernels by time, largest first. */
  kernels: KernelShare[];
  /** Sum of kernel times; null where the backend cannot time kernels (WebGPU without timestamp queries). */
  kernelMs: number | null;
  /** Wall time of the profiled call (profiling adds overhead of its own). */
  wallMs: number;
  /** GFLOP/s of the step's matrix products alone, from their input shapes and kernel times. */
  matMulGflops: number | null;
}

const MATMUL_KERNELS = new Set(['BatchMatMul', '_FusedMatMul']);

/** FLOPs of a logged BatchMatMul from its input shapes; Swarm's code never passes transpose flags. */
function loggedMatMulFlops(inputShapes: number[][]): number {
  const [a, b] = inputShapes;
  if (!a || !b || a.length < 2 || b.length < 2) return 0;
  const batch = Math.max(a.length > 2 ? a.slice(0, -2).reduce((x, y) => x * y, 1) : 1, b.length > 2 ? b.slice(0, -2).reduce((x, y) => x * y, 1) : 1);
  return matMulFlops({ batch, m: a[a.length - 2], k: a[a.length - 1], n: b[b.length - 1] });
}

/** Runs `work` (one training step) under tf.profile and sums kernel times by kernel name. */
export async function profileStep(work: () => Promise<unknown>): Promise<StepProfile> {
  const byName = new Map<string, { calls: number; ms: number }>();
  const started = performance.now();
  const info = await tf.profile(async () => {
    await work();
    return [];
  });
  const wallMs = performance.now() - started;
  let timed = true;
  let matMulFlopsTotal = 0;
  let matMulMs = 0;
  for (const k of info.kernels) {
    const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : NaN;
    if (!Number.isFinite(ms)) timed = false;
    const entry = byName.get(k.name) ?? { calls: 0, ms: 0 };
    entry.calls++;
    entry.ms += Number.isFinite(ms) ? ms : 0;
    byName.set(k.name, entry);
    if (MATMUL_KERNELS.has(k.name) && Number.isFinite(ms)) {
      matMulFlopsTotal += loggedMatMulFlops(k.inputShapes as number[][]);
      matMulMs += ms;
    }
  }
  const kernelMs = timed ? [...byName.values()].reduce((s, e) => s + e.ms, 0) : null;
  const kernels = [...byName.entries()]
    .map(([kernel, e]) => ({ kernel, calls: e.calls, ms: e.ms, share: kernelMs ? e.ms / kernelMs : 0 }))
    .sort((x, y) => y.ms - x.ms);
  return { kernels, kernelMs, wallMs, matMulGflops: timed && matMulMs > 0 ? matMulFlopsTotal / matMulMs / 1e6 : null };
}
