/**
 * The LoRA adapter as every part of Swarm sees it: plain Float32Arrays with their shapes and config.
 * This file imports no tfjs on purpose: merge strategies, the wire codec and the p2p layer use these types
 * without pulling a tensor library.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js';

/** Module suffixes that may carry LoRA factors, matched against HF GPT-2 module names (PEFT matches by suffix too). */
export const LORA_TARGETS = ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj'] as const;
export type LoraTarget = (typeof LORA_TARGETS)[number];

export interface LoraConfig {
  /** Rank of every pair. */
  r: number;
  /** ΔW is scaled by alpha / r, as in PEFT. */
  alpha: number;
  /** Suffixes from LORA_TARGETS. */
  targetModules: string[];
}

/**
 * How a run trains its LoRA pairs. 'standard': A and B both train (PEFT's default). 'frozen-a': FFA-LoRA (Sun et
 * al. 2024, "Improving LoRA in Privacy-preserving Federated Learning", arXiv:2403.12313): every peer's A is the
 * run's seeded initialisation and never trains, only B does, so averaging the Bs averages the products exactly,
 * (1/n)·Σ BᵢA = ((1/n)·Σ Bᵢ)·A. Adapters stay ordinary PEFT pairs either way.
 */
export const LORA_MODES = ['standard', 'frozen-a'] as const;
export type LoraMode = (typeof LORA_MODES)[number];

/** One LoRA pair, row-major. ΔW = (alpha / r) · B · A has shape [outDim, inDim] (PEFT's layout). */
export interface LoraPair {
  /** [r, inDim] */
  a: Float32Array;
  /** [outDim, r] */
  b: Float32Array;
  inDim: number;
  outDim: number;
}

export interface Adapter {
  baseModelId: string;
  config: LoraConfig;
  /** Keyed by HF module name, e.g. `transformer.h.0.attn.c_attn`. */
  modules: Map<string, LoraPair>;
}

export function loraScale(config: LoraConfig): number {
  return config.alpha / config.r;
}

/** Module names in canonical (sorted) order, so every peer walks an adapter the same way. */
export function moduleNames(adapter: Adapter): string[] {
  return [...adapter.modules.keys()].sort();
}

/**
 * Identifies what an adapter's tensors mean: base model id, rank, alpha, targets, module names and shapes.
 * Two adapters with the same schema hash can be merged tensor by tensor; anything else must be refused.
 */
export function schemaHash(adapter: Adapter): string {
  const canonical = JSON.stringify({
    base: adapter.baseModelId,
    r: adapter.config.r,
    alpha: adapter.config.alpha,
    targets: [...adapter.config.targetModules].sort(),
    modules: moduleNames(adapter).map((name) => {
      const pair = adapter.modules.get(name)!;
      return [name, pair.inDim, pair.outDim];
    }),
  });
  return bytesToHex(sha256(utf8ToBytes(canonical))).slice(0, 32);
}

export function cloneAdapter(adapter: Adapter): Adapter {
  const modules = new Map<string, LoraPair>();
  for (const name of moduleNames(adapter)) {
    const p = adapter.modules.get(name)!;
    modules.set(name, { a: p.a.slice(), b: p.b.slice(), inDim: p.inDim, outDim: p.outDim });
  }
  return { baseModelId: adapter.baseModelId, config: { ...adapter.config, targetModules: [...adapter.config.targetModules] }, modules };
}

/** Number of float parameters in the adapter. */
export function adapterParameterCount(adapter: Adapter): number {
  let n = 0;
  for (const p of adapter.modules.values()) n += p.a.length + p.b.length;
  return n;
}

export class AdapterShapeError extends Error {
  static override readonly name = 'AdapterShapeError';
  override readonly name = AdapterShapeError.name;
}

/** Throws AdapterShapeError naming the module when a pair's arrays disagree with its dims and rank. */
export function assertAdapterShapes(adapter: Adapter): void {
  const { r } = adapter.config;
  if (!Number.isInteger(r) || r < 1) throw new AdapterShapeError(`adapter rank must be a positive integer, got ${r}`);
  for (const [name, p] of adapter.modules) {
    if (p.a.length !== r * p.inDim) {
      throw new AdapterShapeError(`${name}: lora_A has ${p.a.length} values, expected r*in = ${r}*${p.inDim}`);
    }
    if (p.b.length !== p.outDim * r) {
      throw new AdapterShapeError(`${name}: lora_B has ${p.b.length} values, expected out*r = ${p.outDim}*${r}`);
    }
  }
}
