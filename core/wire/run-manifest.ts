/**
 * The run manifest: everything peers must agree on to train and merge together. Its identity is the sha256 of
 * its canonical JSON, so two peers holding the same id hold the same run.
 */
import { LORA_MODES, LORA_TARGETS, type LoraConfig, type LoraMode } from '../model/adapter.ts';
import { asciiToBytes, sha256Hex, WireFormatError } from './bytes.ts';
import { isPayloadCodec, PAYLOAD_CODECS, type PayloadCodec } from './codec.ts';
import { MAX_LORA_RANK, MAX_RUN_MANIFEST_BYTES, MODEL_ID_PATTERN, RUN_ID_PATTERN, RUN_MANIFEST_FORMAT_VERSION, SHA256_HEX_PATTERN } from './constants.ts';
import {
  boundedJson,
  canonicalJson,
  FieldRejection,
  guarded,
  intField,
  isPlainObject,
  numberField,
  parseJsonObject,
  requireKeys,
  stringField,
  type JsonObject,
} from './json.ts';
import type { Verdict } from './verdict.ts';
import { SPARSE_MAX_CHUNK, SPARSE_MAX_KEYFRAME_EVERY, SPARSE_MIN_CHUNK, type SparseConfig } from './sparse-delta.ts';
// The registry is the one list of strategies and of their parameters' declared ranges; a manifest naming anything
// else, or a value outside those ranges, would make every peer that joins fail at its first merge.
import { getStrategy, resolveParams } from '../merge/registry.ts';
import { parsePrivacyConfig, type PrivacyConfig } from '../privacy/config.ts';
import { DEFAULT_OUTER, getOuterOptimizer, resolveOuterParams } from '../outer/registry.ts';

export type StrategyParamValue = number | string | boolean;

/** The run's LoRA configuration; `mode` absent = 'standard' (A and B train), so older manifests keep their id. */
export interface RunLoraConfig extends LoraConfig {
  mode?: Exclude<LoraMode, 'standard'>;
}

/** A core/outer optimiser by registry name, with its (numeric) parameters; absent = 'none'. */
export interface OuterConfig {
  name: string;
  params: Record<string, number>;
}

export interface RunManifest {
  formatVersion: number;
  runId: string;
  baseModel: { id: string; url: string; sha256: string };
  lora: RunLoraConfig;
  /** A core/merge strategy by registry name, with its parameters. */
  strategy: { name: string; params: Record<string, StrategyParamValue> };
  /** Local optimiser steps between publishing (H). */
  localSteps: number;
  /** Learning-rate schedule and optimiser settings, validated in depth by core/train; here only bounded JSON. */
  schedule: JsonObject;
  /** Data partition configuration, validated in depth by core/data; here only bounded JSON. */
  data: JsonObject;
  codec: PayloadCodec;
  /** Differential privacy for volunteers' own files (core/privacy); absent = off. */
  privacy?: PrivacyConfig;
  /**
   * Sparse updates for slow links (core/wire/sparse-delta.ts): between keyframes in `codec`, peers send top-k int8
   * deltas of their public copy. Absent = every publication is a full adapter.
   */
  sparse?: SparseConfig;
  /** The outer optimiser applied after each merge (core/outer); absent = none, the merged adapter as it is. */
  outer?: OuterConfig;
}

const RUN_KEYS = ['formatVersion', 'runId', 'baseModel', 'lora', 'strategy', 'localSteps', 'schedule', 'data', 'codec'] as const;
/** Absolute URL or a path on the app's origin: printable ASCII without spaces. */
const URL_PATTERN = /^[!-~]{1,2048}$/;
const STRATEGY_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const PARAM_KEY_PATTERN = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;
const MAX_STRATEGY_PARAMS = 64;
const MAX_PARAM_STRING = 256;
/**
 * Bounds on the values a run manifest sets for every peer that joins it (a manifest can come from any peer, so
 * a hostile one must not be able to make honest peers diverge or stall):
 *   localSteps (H) 1..10,000: publishing less often than every 10,000 steps is not a swarm;
 *   lora.alpha (0, 16384]: 16 × the largest rank (core/io MAX_PEFT_ALPHA), ΔW is scaled by alpha/r;
 *   schedule.lr (0, 0.1]: AdamW on LoRA factors diverges well below 0.1 (the default is 3e-3);
 *   schedule.clipNorm [0.001, 1000]: 0 turns gradient clipping off, which a shared run must not allow.
 */
export const MAX_LOCAL_STEPS = 10_000;
export const MAX_LORA_ALPHA = 16_384;
export const MAX_LEARNING_RATE = 0.1;
export const MIN_CLIP_NORM = 0.001;
export const MAX_CLIP_NORM = 1000;

function readObject(value: unknown, where: string): Record<string, unknown> {
  if (!isPlainObject(value)) throw new FieldRejection('malformed', `${where} must be an object`);
  return value;
}

function readLora(value: unknown): RunLoraConfig {
  const where = 'run.lora';
  const obj = readObject(value, where);
  requireKeys(obj, ['r', 'alpha', 'targetModules'], ['mode'], where);
  let mode: LoraMode = 'standard';
  if (obj.mode !== undefined) {
    if (typeof obj.mode !== 'string' || !(LORA_MODES as readonly string[]).includes(obj.mode)) {
      throw new FieldRejection('malformed', `${where}.mode must be one of ${LORA_MODES.join(', ')}`);
    }
    mode = obj.mode as LoraMode;
  }
  const r = intField(obj, 'r', 1, MAX_LORA_RANK, where);
  const alpha = numberField(obj, 'alpha', Number.MIN_VALUE, MAX_LORA_ALPHA, where);
  const targets = obj.targetModules;
  if (!Array.isArray(targets) || targets.length === 0 || targets.length > LORA_TARGETS.length) {
    throw new FieldRejection('malformed', `${where}.targetModules must be a non-empty array of at most ${LORA_TARGETS.length} names`);
  }
  const seen = new Set<string>();
  for (const t of targets) {
    if (typeof t !== 'string' || !(LORA_TARGETS as readonly string[]).includes(t)) {
      throw new FieldRejection('malformed', `${where}.targetModules: '${String(t).slice(0, 40)}' is not one of ${LORA_TARGETS.join(', ')}`);
    }
    if (seen.has(t)) throw new FieldRejection('malformed', `${where}.targetModules lists '${t}' twice`);
    seen.add(t);
  }
  // 'standard' is written as no mode at all: one run, one canonical form, one id.
  return { r, alpha, targetModules: [...(targets as string[])], ...(mode === 'standard' ? {} : { mode }) };
}

/** At most this many outer-optimiser parameters (the registry's optimisers declare three at most). */
const MAX_OUTER_PARAMS = 8;

/** The outer optimiser, checked against the registry's declarations and ranges; 'none' is written as absent. */
function readOuter(value: unknown): OuterConfig | undefined {
  const where = 'run.outer';
  const obj = readObject(value, where);
  requireKeys(obj, ['name', 'params'], [], where);
  const name = stringField(obj, 'name', STRATEGY_NAME_PATTERN, where);
  const rawParams = readObject(obj.params, `${where}.params`);
  const entries = Object.entries(rawParams);
  if (entries.length > MAX_OUTER_PARAMS) throw new FieldRejection('malformed', `${where}.params has more than ${MAX_OUTER_PARAMS} entries`);
  const params: Record<string, number> = {};
  for (const [key, v] of entries) {
    if (!PARAM_KEY_PATTERN.test(key)) throw new FieldRejection('malformed', `${where}.params key '${key.slice(0, 40)}' does not match ${PARAM_KEY_PATTERN}`);
    if (typeof v !== 'number') throw new FieldRejection('malformed', `${where}.params.${key} must be a number`);
    if (!Number.isFinite(v)) throw new FieldRejection('non-finite', `${where}.params.${key} is ${v}`);
    params[key] = v;
  }
  let optimizer;
  try {
    optimizer = getOuterOptimizer(name);
  } catch (error) {
    throw new FieldRejection('malformed', `${where}.name: ${(error as Error).message}`);
  }
  try {
    resolveOuterParams(optimizer, params);
  } catch (error) {
    throw new FieldRejection('malformed', `${where}.params: ${(error as Error).message}`);
  }
  return name === DEFAULT_OUTER ? undefined : { name, params };
}

function readStrategy(value: unknown): RunManifest['strategy'] {
  const where = 'run.strategy';
  const obj = readObject(value, where);
  requireKeys(obj, ['name', 'params'], [], where);
  const name = stringField(obj, 'name', STRATEGY_NAME_PATTERN, where);
  const rawParams = readObject(obj.params, `${where}.params`);
  const entries = Object.entries(rawParams);
  if (entries.length > MAX_STRATEGY_PARAMS) throw new FieldRejection('malformed', `${where}.params has more than ${MAX_STRATEGY_PARAMS} entries`);
  const params: Record<string, StrategyParamValue> = {};
  for (const [key, v] of entries) {
    if (!PARAM_KEY_PATTERN.test(key)) throw new FieldRejection('malformed', `${where}.params key '${key.slice(0, 40)}' does not match ${PARAM_KEY_PATTERN}`);
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) throw new FieldRejection('non-finite', `${where}.params.${key} is ${v}`);
    } else if (typeof v === 'string') {
      if (v.length > MAX_PARAM_STRING) throw new FieldRejection('malformed', `${where}.params.${key} is longer than ${MAX_PARAM_STRING}`);
    } else if (typeof v !== 'boolean') {
      throw new FieldRejection('malformed', `${where}.params.${key} must be a number, string or boolean`);
    }
    params[key] = v;
  }
  let strategy;
  try {
    strategy = getStrategy(name);
  } catch (error) {
    throw new FieldRejection('malformed', `${where}.name: ${(error as Error).message}`);
  }
  try {
    resolveParams(strategy, params);
  } catch (error) {
    throw new FieldRejection('malformed', `${where}.params: ${(error as Error).message}`);
  }
  return { name, params };
}

/** The schedule's free-form object, with the fields whose bad values harm every peer bounded where present. */
function readSchedule(value: unknown): JsonObject {
  const where = 'run.schedule';
  const schedule = boundedJson(readObject(value, where), where) as JsonObject;
  if (schedule.lr !== undefined) numberField(schedule, 'lr', Number.MIN_VALUE, MAX_LEARNING_RATE, where);
  if (schedule.clipNorm !== undefined) numberField(schedule, 'clipNorm', MIN_CLIP_NORM, MAX_CLIP_NORM, where);
  return schedule;
}

function readRunManifest(obj: Record<string, unknown>): RunManifest {
  const where = 'run';
  if (typeof obj.formatVersion !== 'number' || !Number.isSafeInteger(obj.formatVersion)) {
    throw new FieldRejection('malformed', `${where}.formatVersion must be an integer`);
  }
  if (obj.formatVersion !== RUN_MANIFEST_FORMAT_VERSION) {
    throw new FieldRejection('unknown-version', `run manifest format version ${obj.formatVersion}; this build reads ${RUN_MANIFEST_FORMAT_VERSION}`);
  }
  requireKeys(obj, RUN_KEYS, ['privacy', 'sparse', 'outer'], where);
  const base = readObject(obj.baseModel, `${where}.baseModel`);
  requireKeys(base, ['id', 'url', 'sha256'], [], `${where}.baseModel`);
  const codec = obj.codec;
  if (!isPayloadCodec(codec)) throw new FieldRejection('malformed', `${where}.codec must be one of ${PAYLOAD_CODECS.join(', ')}`);
  const schedule = readSchedule(obj.schedule);
  const data = boundedJson(readObject(obj.data, `${where}.data`), `${where}.data`) as JsonObject;
  return {
    formatVersion: RUN_MANIFEST_FORMAT_VERSION,
    runId: stringField(obj, 'runId', RUN_ID_PATTERN, where),
    baseModel: {
      id: stringField(base, 'id', MODEL_ID_PATTERN, `${where}.baseModel`),
      url: stringField(base, 'url', URL_PATTERN, `${where}.baseModel`),
      sha256: stringField(base, 'sha256', SHA256_HEX_PATTERN, `${where}.baseModel`),
    },
    lora: readLora(obj.lora),
    strategy: readStrategy(obj.strategy),
    localSteps: intField(obj, 'localSteps', 1, MAX_LOCAL_STEPS, where),
    schedule,
    data,
    codec,
    ...(obj.privacy === undefined ? {} : { privacy: parsePrivacyConfig(obj.privacy, `${where}.privacy`) }),
    ...(obj.sparse === undefined ? {} : { sparse: readSparse(obj.sparse) }),
    ...withOuter(obj.outer === undefined ? undefined : readOuter(obj.outer)),
  };
}

function readSparse(value: unknown): SparseConfig {
  const where = 'run.sparse';
  const obj = readObject(value, where);
  requireKeys(obj, ['chunk', 'keep', 'keyframeEvery'], [], where);
  const chunk = intField(obj, 'chunk', SPARSE_MIN_CHUNK, SPARSE_MAX_CHUNK, where);
  return {
    chunk,
    keep: intField(obj, 'keep', 1, Math.floor(chunk / 2), where),
    keyframeEvery: intField(obj, 'keyframeEvery', 1, SPARSE_MAX_KEYFRAME_EVERY, where),
  };
}

function withOuter(outer: OuterConfig | undefined): { outer?: OuterConfig } {
  return outer ? { outer } : {};
}

/**
 * Parses and validates a run manifest from bytes, JSON text or an already parsed object. Never throws.
 * Bytes and text must be printable ASCII (tabs and line breaks allowed; other characters as \u escapes).
 */
export function decodeRunManifest(input: Uint8Array | string | object): Verdict<RunManifest> {
  let obj: Record<string, unknown>;
  if (input instanceof Uint8Array || typeof input === 'string') {
    const parsed = parseJsonObject(input, MAX_RUN_MANIFEST_BYTES, 'run manifest', true);
    if (!parsed.ok) return parsed;
    obj = parsed.value;
  } else if (isPlainObject(input)) {
    obj = input;
  } else {
    return { ok: false, reason: 'malformed', detail: 'run manifest must be bytes, JSON text or a plain object' };
  }
  return guarded(() => readRunManifest(obj), 'run manifest');
}

/** Sorted-key, whitespace-free JSON of the manifest. Throws WireFormatError if it is invalid. */
export function canonicalRunManifestJson(m: RunManifest): string {
  const checked = decodeRunManifest(m);
  if (!checked.ok) throw new WireFormatError(`invalid run manifest (${checked.reason}): ${checked.detail}`);
  const text = canonicalJson(checked.value);
  if (text.length > MAX_RUN_MANIFEST_BYTES) throw new WireFormatError(`run manifest of ${text.length} bytes exceeds ${MAX_RUN_MANIFEST_BYTES}`);
  return text;
}

export function encodeRunManifest(m: RunManifest): Uint8Array {
  return asciiToBytes(canonicalRunManifestJson(m));
}

/** The run's identity: sha256 (hex) of its canonical JSON. Throws WireFormatError if the manifest is invalid. */
export function runManifestId(m: RunManifest): string {
  return sha256Hex(encodeRunManifest(m));
}
