/**
 * The default run and the reading of a run manifest's free-form parts (schedule, data) into typed settings.
 * core/wire validates a manifest's shape; this file checks that its training settings make sense.
 */
import { FICTION_GENRES } from '../data/brown.ts';
import type { PartitionConfig } from '../data/partition.ts';
import type { ScheduleConfig } from '../train/schedule.ts';
import { LORA_TARGETS } from '../model/adapter.ts';
import { sha256Hex } from '../wire/bytes.ts';
import { asciiToBytes } from '../wire/bytes.ts';
import { decodeRunManifest, encodeRunManifest, runManifestId, type RunManifest } from '../wire/run-manifest.ts';
import { RUN_MANIFEST_FORMAT_VERSION } from '../wire/constants.ts';
import type { Verdict } from '../wire/verdict.ts';

export const DEFAULT_BASE_MODEL_ID = 'swarm-brown-byte-gpt2';
export const DEFAULT_BASE_MODEL_URL = '/models/swarm-brown-byte-gpt2/';

/** Everything the trainer needs beyond the manifest's typed fields. */
export interface RunTrainingSettings {
  schedule: ScheduleConfig;
  batchSize: number;
  seqLen: number;
  /** Seeds the LoRA initialisation (identical on every peer, so A starts equal everywhere) and the batches. */
  seed: number;
  clipNorm: number;
  weightDecay: number;
  partition: PartitionConfig;
}

export class RunSettingsError extends Error {
  static override readonly name = 'RunSettingsError';
  override readonly name = RunSettingsError.name;
}

/**
 * The default run: LoRA r=8, alpha=16 on all four targets, fedavg every H=20 local steps, one fiction genre per
 * slot, fp16 payloads. fedavg is the default because every peer starts from the same A (same seed) and merges
 * every 20 steps, so the factors stay close and fedavg's cross terms BᵢAⱼ stay small; it keeps the factor
 * coordinates the optimiser's moments were estimated in (exact-average re-factorises, which scrambles them),
 * and it is the cheapest strategy (a weighted sum, no SVD) on a busy laptop.
 */
export function defaultRunManifest(baseModelSha256: string, overrides: Partial<Pick<RunManifest, 'localSteps' | 'strategy' | 'codec'>> = {}): RunManifest {
  return {
    formatVersion: RUN_MANIFEST_FORMAT_VERSION,
    runId: 'brown-fiction',
    baseModel: { id: DEFAULT_BASE_MODEL_ID, url: DEFAULT_BASE_MODEL_URL, sha256: baseModelSha256 },
    lora: { r: 8, alpha: 16, targetModules: [...LORA_TARGETS] },
    strategy: { name: 'fedavg', params: {} },
    localSteps: 20,
    schedule: {
      lr: 3e-3,
      warmupSteps: 10,
      totalSteps: 2000,
      minLrRatio: 0.1,
      batchSize: 8,
      seqLen: 128,
      seed: 1,
      clipNorm: 1,
      weightDecay: 0,
    },
    data: { kind: 'genre', genres: [...FICTION_GENRES], seed: 1 },
    codec: 'fp16',
    ...overrides,
  };
}

function num(obj: Record<string, unknown>, key: string, fallback: number, check: (v: number) => boolean, what: string): number {
  const v = obj[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || !check(v)) throw new RunSettingsError(`run schedule: '${key}' must be ${what}, got ${JSON.stringify(obj[key])}`);
  return v;
}

const isPosInt = (v: number) => Number.isInteger(v) && v >= 1;

export function runTrainingSettings(manifest: RunManifest): RunTrainingSettings {
  const s = manifest.schedule as Record<string, unknown>;
  const d = manifest.data as Record<string, unknown>;
  const lr = num(s, 'lr', 3e-3, (v) => v > 0 && v < 1, 'a learning rate in (0, 1)');
  const warmupSteps = num(s, 'warmupSteps', 10, (v) => Number.isInteger(v) && v >= 0, 'a non-negative integer');
  const totalSteps = num(s, 'totalSteps', 2000, isPosInt, 'a positive integer');
  const minLrRatio = num(s, 'minLrRatio', 0.1, (v) => v >= 0 && v <= 1, 'in [0, 1]');
  const batchSize = num(s, 'batchSize', 8, (v) => isPosInt(v) && v <= 256, 'an integer in [1, 256]');
  const seqLen = num(s, 'seqLen', 128, (v) => isPosInt(v) && v <= 4096, 'an integer in [1, 4096]');
  const seed = num(s, 'seed', 1, (v) => Number.isInteger(v) && v >= 0 && v < 2 ** 32, 'a 32-bit unsigned integer');
  const clipNorm = num(s, 'clipNorm', 1, (v) => v >= 0, 'non-negative');
  const weightDecay = num(s, 'weightDecay', 0, (v) => v >= 0 && v < 1, 'in [0, 1)');
  const kind = d.kind;
  const genres = d.genres;
  if (!Array.isArray(genres) || genres.length === 0 || !genres.every((g) => typeof g === 'string')) {
    throw new RunSettingsError('run data: \'genres\' must be a non-empty list of genre names');
  }
  let partition: PartitionConfig;
  if (kind === 'genre' || kind === 'iid') partition = { kind, genres: genres as string[] };
  else if (kind === 'dirichlet') {
    const alpha = num(d, 'alpha', 0, (v) => v > 0, 'a positive number');
    partition = { kind, genres: genres as string[], alpha };
  } else throw new RunSettingsError(`run data: unknown partition kind ${JSON.stringify(kind)} (known: genre, iid, dirichlet)`);
  return { schedule: { lr, warmupSteps, totalSteps, minLrRatio }, batchSize, seqLen, seed, clipNorm, weightDecay, partition };
}

/**
 * The run id peers put on the wire: the manifest's runId plus the first 16 hex digits of its identity, so two
 * manifests that share a name but differ in anything (strategy, H, data, model) never merge.
 */
export function wireRunId(manifest: RunManifest): string {
  return `${manifest.runId}.${runManifestId(manifest).slice(0, 16)}`;
}

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** base64url without padding (RFC 4648 §5); written out because core has no DOM (no btoa/atob). */
export function base64UrlEncode(bytes: Uint8Array): string {
  let out = '';
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    const chars = Math.min(4, Math.ceil(((bytes.length - i) * 8) / 6));
    for (let k = 0; k < chars; k++) out += BASE64URL[(n >> (18 - 6 * k)) & 63];
  }
  return out;
}

/** Inverse of base64UrlEncode; null for characters outside the alphabet or an impossible length. */
export function base64UrlDecode(text: string): Uint8Array | null {
  if (!/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) return null;
  const out = new Uint8Array(Math.floor((text.length * 6) / 8));
  let bits = 0;
  let acc = 0;
  let at = 0;
  for (const ch of text) {
    acc = (acc << 6) | BASE64URL.indexOf(ch);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[at++] = (acc >> bits) & 0xff;
    }
  }
  return out;
}

/** The `?run=` value that carries a whole manifest (base64url of its canonical JSON). */
export function encodeRunLink(manifest: RunManifest): string {
  return base64UrlEncode(encodeRunManifest(manifest));
}

export type RunLink =
  | { kind: 'default' }
  /** A 64-hex manifest id: only resolvable against manifests this tab already knows. */
  | { kind: 'id'; id: string }
  | { kind: 'manifest'; manifest: RunManifest };

/** Reads a `?run=` value: empty or 'default', a manifest id, or base64url/plain JSON of a manifest. Never throws. */
export function parseRunLink(value: string | null | undefined): Verdict<RunLink> {
  const text = (value ?? '').trim();
  if (text === '' || text === 'default') return { ok: true, value: { kind: 'default' } };
  if (/^[0-9a-f]{64}$/.test(text)) return { ok: true, value: { kind: 'id', id: text } };
  const bytes = text.startsWith('{') ? asciiOrNull(text) : base64UrlDecode(text);
  if (!bytes) return { ok: false, reason: 'malformed', detail: 'the run link is neither a manifest id nor an encoded manifest' };
  const decoded = decodeRunManifest(bytes);
  if (!decoded.ok) return decoded;
  return { ok: true, value: { kind: 'manifest', manifest: decoded.value } };
}

function asciiOrNull(text: string): Uint8Array | null {
  try {
    return asciiToBytes(text);
  } catch {
    return null;
  }
}

/** Short fingerprint of a manifest for display. */
export function manifestFingerprint(manifest: RunManifest): string {
  return sha256Hex(encodeRunManifest(manifest)).slice(0, 12);
}
