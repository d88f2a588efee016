// The WebGPU path in Node (Dawn's binding, on whatever adapter it finds: SwiftShader's software Vulkan driver on a
// machine without a GPU) trains like WASM: same seed, same data, same step, same results to the tolerance
// e2e/train.spec.ts uses for the browser's WebGPU and WASM backends.
import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_MODEL_CONFIG } from '../core/model/defaults.ts';
import { initGpt2Weights } from '../core/model/gpt2.ts';
import { benchmarkTraining, type BenchmarkResult } from '../core/train/benchmark-run.ts';
import { initNodeBackend, installNodeWebGpu } from './tf-node.ts';

// As in e2e/train.spec.ts: float32 sums run in a different order on each backend, about 1e-6 relative per op.
const TOLERANCE = 1e-3;
// Two blocks keep the software adapter's step within seconds; every kernel of the full model still runs.
const CONFIG = { ...DEFAULT_MODEL_CONFIG, nLayer: 2 };
const RUN = { steps: 2, batchSize: 2, seqLen: 32, seed: 7, rank: 4, warmupSteps: 0 };

async function trainOn(backend: 'wasm' | 'webgpu'): Promise<BenchmarkResult> {
  expect(await initNodeBackend(backend)).toBe(backend);
  const tokens = new Uint8Array(readFileSync('public/data/brown/mystery.train.txt'));
  return benchmarkTraining(RUN, { config: CONFIG, weights: initGpt2Weights(CONFIG, 3), tokens, returnLora: true });
}

afterAll(() => {
  // Dawn keeps a process alive while its device exists.
  if (tf.findBackend('webgpu')) tf.removeBackend('webgpu');
});

describe('tfjs WebGPU in Node', () => {
  it('trains LoRA steps to the same losses and weights as WASM', async () => {
    const gpu = await installNodeWebGpu();
    console.log(`WebGPU adapter: ${gpu.adapterInfo}${gpu.forcedIcd ? ` (Vulkan driver ${gpu.forcedIcd})` : ''}`);
    const wasm = await trainOn('wasm');
    const webgpu = await trainOn('webgpu');
    console.log(`losses wasm ${wasm.losses.map((l) => l.toFixed(6))}, webgpu ${webgpu.losses.map((l) => l.toFixed(6))}`);
    expect(webgpu.losses).toHaveLength(RUN.steps);
    for (let i = 0; i < RUN.steps; i++) expect(Math.abs(webgpu.losses[i] - wasm.losses[i])).toBeLessThan(TOLERANCE);
    // The step did train: the loss moved, and so did every LoRA B (it starts at zero).
    expect(Math.abs(wasm.losses[1] - wasm.losses[0])).toBeGreaterThan(10 * TOLERANCE);
    let worst = 0;
    for (const [name, values] of Object.entries(wasm.loraAfter!)) {
      const other = webgpu.loraAfter![name];
      expect(other).toHaveLength(values.length);
      for (let i = 0; i < values.length; i++) worst = Math.max(worst, Math.abs(values[i] - other[i]));
      if (name.endsWith('lora_B')) expect(values.some((x) => x !== 0)).toBe(true);
    }
    console.log(`largest LoRA weight difference: ${worst.toExponential(2)}`);
    expect(worst).toBeLessThan(TOLERANCE);
  }, 240_000);
});
