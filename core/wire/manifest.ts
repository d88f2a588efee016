/**
 * The announcement manifest gossiped for each new adapter version, its validation against the local run, and the
 * validation of the payload fetched for it. Run manifests and telemetry reports live in run-manifest.ts and
 * telemetry.ts and are re-exported here.
 */
import type { Adapter } from '../model/adapter.ts';
import { asciiToBytes, sha256Hex } from './bytes.ts';
import { decodeAdapter, isPayloadCodec, PAYLOAD_CODECS, type PayloadCodec } from './codec.ts';
import {
  ANNOUNCEMENT_FORMAT_VERSION,
  MAX_ANNOUNCEMENT_BYTES,
  MAX_PAYLOAD_BYTES,
  MODEL_ID_PATTERN,
  PEER_ID_PATTERN,
  RUN_ID_PATTERN,
  SCHEMA_HASH_PATTERN,
  SHA256_HEX_PATTERN,
} from './constants.ts';
import { canonicalJson, FieldRejection, guarded, intField, nullableNumberField, parseJsonObject, requireKeys, stringField } from './json.ts';
import { WireFormatError } from './bytes.ts';
import { bytesToHex } from '@noble/hashes/utils.js';
import { accept, reject, type Rejection, type Verdict } from './verdict.ts';

export * from './run-manifest.ts';
export * from './telemetry.ts';

/** What a peer gossips on the run's topic when it has a new adapter version to serve. */
export interface AnnouncementManifest {
  formatVersion: number;
  runId: string;
  /** Must equal the authenticated gossipsub sender (see validateAnnouncement). */
  peerId: string;
  baseModelId: string;
  /** sha256 (hex) of the base model weights. */
  baseModelSha256: string;
  /** core/model/adapter.ts schemaHash() of the announced adapter. */
  schemaHash: string;
  /** Strictly increasing per peer; an announcement not newer than the last accepted one is a replay. */
  version: number;
  /** Local optimiser steps behind this adapter. */
  step: number;
  samplesSeen: number;
  /** Local training loss at this version; null before the first measured step. */
  localLoss: number | null;
  payloadBytes: number;
  /** sha256 (hex) of the payload bytes. */
  payloadSha256: string;
  codec: PayloadCodec;
  createdAtMs: number;
}

const ANNOUNCEMENT_KEYS = [
  'formatVersion', 'runId', 'peerId', 'baseModelId', 'baseModelSha256', 'schemaHash', 'version', 'step',
  'samplesSeen', 'localLoss', 'payloadBytes', 'payloadSha256', 'codec', 'createdAtMs',
] as const;

/** Losses above this are not training losses (ln(50257) ≈ 10.8 for a uniform GPT-2 prediction). */
const MAX_LOSS = 1e6;
const MAX_COUNTER = Number.MAX_SAFE_INTEGER;

function readAnnouncement(obj: Record<string, unknown>): AnnouncementManifest {
  const where = 'announcement';
  if (typeof obj.formatVersion !== 'number' || !Number.isSafeInteger(obj.formatVersion)) {
    throw new FieldRejection('malformed', `${where}.formatVersion must be an integer`);
  }
  if (obj.formatVersion !== ANNOUNCEMENT_FORMAT_VERSION) {
    throw new FieldRejection('unknown-version', `announcement format version ${obj.formatVersion}; this build reads ${ANNOUNCEMENT_FORMAT_VERSION}`);
  }
  requireKeys(obj, ANNOUNCEMENT_KEYS, [], where);
  const codec = obj.codec;
  if (!isPayloadCodec(codec)) throw new FieldRejection('malformed', `${where}.codec must be one of ${PAYLOAD_CODECS.join(', ')}`);
  return {
    formatVersion: ANNOUNCEMENT_FORMAT_VERSION,
    runId: stringField(obj, 'runId', RUN_ID_PATTERN, where),
    peerId: stringField(obj, 'peerId', PEER_ID_PATTERN, where),
    baseModelId: stringField(obj, 'baseModelId', MODEL_ID_PATTERN, where),
    baseModelSha256: stringField(obj, 'baseModelSha256', SHA256_HEX_PATTERN, where),
    schemaHash: stringField(obj, 'schemaHash', SCHEMA_HASH_PATTERN, where),
    version: intField(obj, 'version', 0, MAX_COUNTER, where),
    step: intField(obj, 'step', 0, MAX_COUNTER, where),
    samplesSeen: intField(obj, 'samplesSeen', 0, MAX_COUNTER, where),
    localLoss: nullableNumberField(obj, 'localLoss', 0, MAX_LOSS, where),
    payloadBytes: intField(obj, 'payloadBytes', 1, MAX_COUNTER, where),
    payloadSha256: stringField(obj, 'payloadSha256', SHA256_HEX_PATTERN, where),
    codec,
    createdAtMs: intField(obj, 'createdAtMs', 0, MAX_COUNTER, where),
  };
}

/**
 * Compact canonical JSON bytes (printable ASCII, sorted keys), always under MAX_ANNOUNCEMENT_BYTES.
 * Throws WireFormatError when a field is invalid, so a peer never gossips what others would reject as malformed.
 */
export function encodeAnnouncement(m: AnnouncementManifest): Uint8Array {
  const copy: Record<string, unknown> = {};
  for (const key of ANNOUNCEMENT_KEYS) copy[key] = m[key];
  const checked = guarded(() => readAnnouncement(copy), 'announcement');
  if (!checked.ok) throw new WireFormatError(`cannot encode announcement: ${checked.detail}`);
  const bytes = asciiToBytes(canonicalJson(checked.value));
  if (bytes.length > MAX_ANNOUNCEMENT_BYTES) throw new WireFormatError(`announcement of ${bytes.length} bytes exceeds ${MAX_ANNOUNCEMENT_BYTES}`);
  return bytes;
}

/** Parses and type-checks a gossiped announcement. Never throws. */
export function decodeAnnouncement(bytes: Uint8Array): Verdict<AnnouncementManifest> {
  const parsed = parseJsonObject(bytes, MAX_ANNOUNCEMENT_BYTES, 'announcement');
  if (!parsed.ok) return parsed;
  return guarded(() => readAnnouncement(parsed.value), 'announcement');
}

export interface AnnouncementContext {
  runId: string;
  baseModelSha256: string;
  /** Our adapter's schema hash. */
  schemaHash: string;
  /** gossipsub message `from`, authenticated by StrictSign: the manifest's peerId must equal it. */
  senderPeerId: string;
  /** Highest version already accepted from this peer, if any. */
  lastVersionFromPeer?: number;
  /** Largest payload we are willing to fetch (default MAX_PAYLOAD_BYTES). */
  maxPayloadBytes?: number;
  /** Codecs we decode (default: all). */
  acceptedCodecs?: readonly PayloadCodec[];
  /** The run's codec (run manifest): an announcement in any other is refused. */
  codec?: PayloadCodec;
  /**
   * The exact payload size the run's schema and codec imply (expectedPayloadBytes): an announcement of any other
   * size is refused before a byte is fetched.
   */
  payloadBytes?: number;
}

/** Checks a decoded announcement against our run; never throws. */
export function validateAnnouncement(m: AnnouncementManifest, ctx: AnnouncementContext): Verdict {
  if (m.peerId !== ctx.senderPeerId) {
    return reject('bad-signature', `manifest names peer ${m.peerId.slice(0, 100)} but gossip sender is ${ctx.senderPeerId.slice(0, 100)}`);
  }
  if (m.runId !== ctx.runId) return reject('wrong-run', `run '${m.runId.slice(0, 100)}', ours is '${ctx.runId}'`);
  if (m.baseModelSha256 !== ctx.baseModelSha256) {
    return reject('wrong-base-model', `base model sha256 ${m.baseModelSha256.slice(0, 64)}, ours is ${ctx.baseModelSha256}`);
  }
  if (m.schemaHash !== ctx.schemaHash) return reject('schema-mismatch', `adapter schema ${m.schemaHash.slice(0, 64)}, ours is ${ctx.schemaHash}`);
  const maxPayloadBytes = ctx.maxPayloadBytes ?? MAX_PAYLOAD_BYTES;
  if (!(m.payloadBytes <= maxPayloadBytes)) return reject('oversized', `announced payload of ${m.payloadBytes} bytes exceeds ${maxPayloadBytes}`);
  if (ctx.acceptedCodecs && !ctx.acceptedCodecs.includes(m.codec)) {
    return reject('malformed', `codec ${m.codec} not accepted (accepted: ${ctx.acceptedCodecs.join(', ')})`);
  }
  if (ctx.codec !== undefined && m.codec !== ctx.codec) return reject('malformed', `codec ${m.codec}, the run uses ${ctx.codec}`);
  if (ctx.payloadBytes !== undefined && m.payloadBytes !== ctx.payloadBytes) {
    const detail = `announced payload of ${m.payloadBytes} bytes; the run's schema and codec imply exactly ${ctx.payloadBytes}`;
    return reject(m.payloadBytes > ctx.payloadBytes ? 'oversized' : 'truncated', detail);
  }
  if (ctx.lastVersionFromPeer !== undefined && !(m.version > ctx.lastVersionFromPeer)) {
    return reject('replayed', `version ${m.version} is not newer than ${ctx.lastVersionFromPeer} already accepted from this peer`);
  }
  return accept();
}

/** Decodes and validates in one step, the shape a gossipsub topic validator needs. Never throws. */
export function checkAnnouncement(bytes: Uint8Array, ctx: AnnouncementContext): Verdict<AnnouncementManifest> {
  const decoded = decodeAnnouncement(bytes);
  if (!decoded.ok) return decoded;
  const verdict = validateAnnouncement(decoded.value, ctx);
  return verdict.ok ? decoded : verdict;
}

export interface PayloadContext {
  /** Our adapter's schema hash; the payload must match it as well as the announced one. */
  schemaHash: string;
  /** Expected base model id (optional: the sha256 in the announcement is what identifies the model). */
  baseModelId?: string;
  maxPayloadBytes?: number;
  /** The run's codec: a payload in any other is refused, whatever its announcement says. */
  codec?: PayloadCodec;
  /** The exact size the run's schema and codec imply (expectedPayloadBytes). */
  payloadBytes?: number;
}

function checkPayloadSize(bytes: Uint8Array, m: AnnouncementManifest, ctx: PayloadContext): Rejection | null {
  if (!(bytes instanceof Uint8Array)) return reject('malformed', 'payload is not a Uint8Array');
  const maxPayloadBytes = ctx.maxPayloadBytes ?? MAX_PAYLOAD_BYTES;
  if (bytes.length > maxPayloadBytes) return reject('oversized', `payload of ${bytes.length} bytes exceeds ${maxPayloadBytes}`);
  if (bytes.length > m.payloadBytes) return reject('oversized', `payload of ${bytes.length} bytes, ${m.payloadBytes} announced`);
  if (bytes.length < m.payloadBytes) return reject('truncated', `payload of ${bytes.length} bytes, ${m.payloadBytes} announced`);
  if (ctx.payloadBytes !== undefined && bytes.length !== ctx.payloadBytes) {
    const detail = `payload of ${bytes.length} bytes; the run's schema and codec imply exactly ${ctx.payloadBytes}`;
    return reject(bytes.length > ctx.payloadBytes ? 'oversized' : 'truncated', detail);
  }
  return null;
}

function checkPayloadContent(bytes: Uint8Array, digest: string, m: AnnouncementManifest, ctx: PayloadContext): Verdict<Adapter> {
  if (digest !== m.payloadSha256) return reject('bad-hash', `payload sha256 ${digest}, announced ${m.payloadSha256}`);
  if (m.schemaHash !== ctx.schemaHash) return reject('schema-mismatch', `announced schema ${m.schemaHash}, ours is ${ctx.schemaHash}`);
  const decoded = decodeAdapter(bytes, { maxBytes: ctx.maxPayloadBytes ?? MAX_PAYLOAD_BYTES, expectSchemaHash: m.schemaHash });
  if (!decoded.ok) return reject(decoded.reason, decoded.detail);
  if (decoded.codec !== m.codec) return reject('malformed', `payload is ${decoded.codec}, announced ${m.codec}`);
  if (ctx.codec !== undefined && decoded.codec !== ctx.codec) return reject('malformed', `payload is ${decoded.codec}, the run uses ${ctx.codec}`);
  if (decoded.adapter.baseModelId !== m.baseModelId) {
    return reject('wrong-base-model', `payload is for '${decoded.adapter.baseModelId}', announced '${m.baseModelId}'`);
  }
  if (ctx.baseModelId !== undefined && decoded.adapter.baseModelId !== ctx.baseModelId) {
    return reject('wrong-base-model', `payload is for '${decoded.adapter.baseModelId}', ours is '${ctx.baseModelId}'`);
  }
  return accept(decoded.adapter);
}

function unexpected(error: unknown): Rejection {
  return reject('malformed', `payload validation failed: ${error instanceof Error ? error.message : String(error)}`);
}

/**
 * Checks a fetched payload against the announcement that advertised it (size, sha256, schema, codec, base model),
 * then decodes it (finite values, canonical layout). Never throws. Hashes with @noble/hashes on the calling thread.
 */
export function validatePayloadSync(bytes: Uint8Array, m: AnnouncementManifest, ctx: PayloadContext): Verdict<Adapter> {
  try {
    return checkPayloadSize(bytes, m, ctx) ?? checkPayloadContent(bytes, sha256Hex(bytes), m, ctx);
  } catch (error) {
    return unexpected(error);
  }
}

/** The slice of WebCrypto this module uses; core has no DOM typings, so it is declared here. */
interface SubtleDigest {
  digest(algorithm: 'SHA-256', data: Uint8Array): Promise<ArrayBuffer>;
}

async function sha256HexPreferNative(bytes: Uint8Array): Promise<string> {
  const subtle = (globalThis as { crypto?: { subtle?: SubtleDigest } }).crypto?.subtle;
  if (!subtle) return sha256Hex(bytes);
  return bytesToHex(new Uint8Array(await subtle.digest('SHA-256', bytes)));
}

/**
 * Same checks as validatePayloadSync, hashing with WebCrypto where it exists (browsers in secure contexts,
 * Node ≥ 19), which is several times faster on multi-megabyte payloads. Never rejects its Promise.
 */
export async function validatePayload(bytes: Uint8Array, m: AnnouncementManifest, ctx: PayloadContext): Promise<Verdict<Adapter>> {
  try {
    const sizeProblem = checkPayloadSize(bytes, m, ctx);
    if (sizeProblem) return sizeProblem;
    return checkPayloadContent(bytes, await sha256HexPreferNative(bytes), m, ctx);
  } catch (error) {
    return unexpected(error);
  }
}

/** Builds the announcement for a payload we encoded ourselves. */
export function announcementFor(
  payload: Uint8Array,
  fields: Omit<AnnouncementManifest, 'formatVersion' | 'payloadBytes' | 'payloadSha256'>,
): AnnouncementManifest {
  return { formatVersion: ANNOUNCEMENT_FORMAT_VERSION, ...fields, payloadBytes: payload.length, payloadSha256: sha256Hex(payload) };
}
