/** Deterministic fixtures for core/wire's tests and benchmarks: a seeded PRNG and realistic adapters. */
import type { Adapter, LoraPair } from '../model/adapter.ts';
import { createRng } from '../util/random.ts';

export function gaussian(random: () => number): number {
  const u = Math.max(random(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
}

export interface AdapterFixtureOptions {
  nEmbd?: number;
  nLayer?: number;
  r?: number;
  alpha?: number;
  targets?: string[];
  seed?: number;
  baseModelId?: string;
}

/**
 * An adapter shaped like a trained GPT-2 LoRA: A drawn like PEFT's Kaiming-uniform init, B small Gaussian
 * (what a few hundred steps from B = 0 produce). Defaults are GPT-2 small (768 wide, 12 layers), rank 8,
 * on attention's c_attn and c_proj.
 */
export function makeAdapter(options: AdapterFixtureOptions = {}): Adapter {
  const d = options.nEmbd ?? 768;
  const layers = options.nLayer ?? 12;
  const r = options.r ?? 8;
  const targets = options.targets ?? ['attn.c_attn', 'attn.c_proj'];
  const random = createRng(options.seed ?? 1);
  const dims: Record<string, [number, number]> = {
    'attn.c_attn': [d, 3 * d],
    'attn.c_proj': [d, d],
    'mlp.c_fc': [d, 4 * d],
    'mlp.c_proj': [4 * d, d],
  };
  const modules = new Map<string, LoraPair>();
  for (let layer = 0; layer < layers; layer++) {
    for (const target of targets) {
      const [inDim, outDim] = dims[target];
      const bound = 1 / Math.sqrt(inDim);
      const a = new Float32Array(r * inDim);
      for (let i = 0; i < a.length; i++) a[i] = (2 * random() - 1) * bound;
      const b = new Float32Array(outDim * r);
      for (let i = 0; i < b.length; i++) b[i] = 0.002 * gaussian(random);
      modules.set(`transformer.h.${layer}.${target}`, { a, b, inDim, outDim });
    }
  }
  return { baseModelId: options.baseModelId ?? 'swarm/gpt2-test', config: { r, alpha: options.alpha ?? 2 * r, targetModules: [...targets] }, modules };
}
