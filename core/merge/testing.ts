/**
 * Helpers for the merge tests and the benchmark: seeded random adapters and a naive dense ΔW reference.
 * Deliberately simple (triple loops) so the tests check the strategies against something independent.
 */
import type { Adapter, LoraPair } from '../model/adapter.ts';
import { createRng } from '../util/random.ts';

import type { MergeInput } from './types.ts';

export interface ModuleShape {
  name: string;
  inDim: number;
  outDim: number;
}

export const SMALL_MODULES: ModuleShape[] = [
  { name: 'transformer.h.0.attn.c_attn', inDim: 6, outDim: 9 },
  { name: 'transformer.h.0.mlp.c_fc', inDim: 6, outDim: 12 },
  { name: 'transformer.h.1.attn.c_attn', inDim: 6, outDim: 9 },
];

export function randomAdapter(seed: number, options: { r?: number; alpha?: number; modules?: ModuleShape[]; scale?: number; baseModelId?: string } = {}): Adapter {
  const r = options.r ?? 3;
  const modules = options.modules ?? SMALL_MODULES;
  const random = createRng(seed * 7919 + 17);
  const scale = options.scale ?? 1;
  const map = new Map<string, LoraPair>();
  for (const m of modules) {
    const a = new Float32Array(r * m.inDim);
    const b = new Float32Array(m.outDim * r);
    for (let i = 0; i < a.length; i++) a[i] = (random() * 2 - 1) * scale;
    for (let i = 0; i < b.length; i++) b[i] = (random() * 2 - 1) * scale;
    map.set(m.name, { a, b, inDim: m.inDim, outDim: m.outDim });
  }
  const targets = [...new Set(modules.map((m) => m.name.split('.').slice(-2).join('.')))];
  return { baseModelId: options.baseModelId ?? 'test/tiny', config: { r, alpha: options.alpha ?? 2 * r, targetModules: targets }, modules: map };
}

export function asInput(adapter: Adapter, peerId: string, weight = 1): MergeInput {
  return { adapter, weight, meta: { peerId, samples: 100, ageMs: 0 } };
}

/** Naive ΔW = (alpha/r)·B·A, [out][in] row-major, float64. */
export function naiveProduct(adapter: Adapter, module: string): Float64Array {
  const p = adapter.modules.get(module)!;
  const r = adapter.config.r;
  const s = adapter.config.alpha / r;
  const out = new Float64Array(p.outDim * p.inDim);
  for (let o = 0; o < p.outDim; o++) {
    for (let j = 0; j < p.inDim; j++) {
      let v = 0;
      for (let k = 0; k < r; k++) v += p.b[o * r + k] * p.a[k * p.inDim + j];
      out[o * p.inDim + j] = s * v;
    }
  }
  return out;
}

export function maxAbsDiff(x: ArrayLike<number>, y: ArrayLike<number>): number {
  if (x.length !== y.length) return Infinity;
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - y[i]));
  return m;
}

export function maxAbs(x: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]));
  return m;
}
