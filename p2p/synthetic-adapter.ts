// Real, encodable LoRA adapters of a chosen byte size with random finite values, for the harness, the network
// benchmark and the protocol tests (they exercise the true codec and validation path, not a stand-in).
import type { Adapter, LoraPair } from '../core/model/adapter.ts';
import { createRng } from '../core/util/random.ts';
import { schemaHash } from '../core/model/adapter.ts';
import { encodeAdapter } from '../core/wire/codec.ts';
import { sha256Hex } from '../core/wire/bytes.ts';

export const SYNTHETIC_BASE_MODEL_ID = 'swarm/synthetic-net-test';
export const SYNTHETIC_BASE_MODEL_SHA256 = sha256Hex(new TextEncoder().encode(SYNTHETIC_BASE_MODEL_ID));
const RANK = 8;
const IN_DIM = 768;
const OUT_DIM = 2304;
/** fp32 bytes of one c_attn pair: r·in + out·r floats. */
export const SYNTHETIC_MODULE_BYTES = 4 * (RANK * IN_DIM + OUT_DIM * RANK);

/** Number of c_attn modules whose fp32 encoding comes closest to targetBytes (at least one). */
export function syntheticModuleCount(targetBytes: number): number {
  return Math.max(1, Math.round(targetBytes / SYNTHETIC_MODULE_BYTES));
}

/** An adapter of about targetBytes in fp32; same targetBytes → same schema, seed → values. */
export function syntheticAdapter(targetBytes: number, seed: number, fill = true): Adapter {
  const random = createRng(seed);
  const modules = new Map<string, LoraPair>();
  const count = syntheticModuleCount(targetBytes);
  for (let layer = 0; layer < count; layer++) {
    const a = new Float32Array(RANK * IN_DIM);
    const b = new Float32Array(OUT_DIM * RANK);
    if (fill) {
      for (let i = 0; i < a.length; i++) a[i] = random() - 0.5;
      for (let i = 0; i < b.length; i++) b[i] = (random() - 0.5) * 0.01;
    }
    modules.set(`transformer.h.${layer}.attn.c_attn`, { a, b, inDim: IN_DIM, outDim: OUT_DIM });
  }
  return { baseModelId: SYNTHETIC_BASE_MODEL_ID, config: { r: RANK, alpha: 16, targetModules: ['attn.c_attn'] }, modules };
}

export interface SyntheticPayload {
  adapter: Adapter;
  bytes: Uint8Array;
  schemaHash: string;
  sha256: string;
}

export function syntheticPayload(targetBytes: number, seed: number): SyntheticPayload {
  const adapter = syntheticAdapter(targetBytes, seed);
  const bytes = encodeAdapter(adapter, 'fp32');
  return { adapter, bytes, schemaHash: schemaHash(adapter), sha256: sha256Hex(bytes) };
}

/** The run context every peer of a synthetic test run shares for a given payload size. */
export function syntheticRunContext(targetBytes: number): { baseModelId: string; baseModelSha256: string; schemaHash: string } {
  return {
    baseModelId: SYNTHETIC_BASE_MODEL_ID,
    baseModelSha256: SYNTHETIC_BASE_MODEL_SHA256,
    schemaHash: schemaHash(syntheticAdapter(targetBytes, 0, false)),
  };
}
