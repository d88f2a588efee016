/**
 * The sparse delta payload: top-k of a sender's residual, int8-quantised with one scale per chunk (issue 13, item 4:
 * sparse updates for slow links, in the manner of SparseLoCo's top-k + quantisation with error feedback).
 *
 * In a gossip swarm there is no shared anchor, so a bare delta means nothing to a receiver. A delta here is
 * always relative to the sender's *public copy*: the adapter every receiver of its stream can reconstruct
 * (core/wire/delta-stream.ts keeps it on both sides). A delta names the version of the public copy it applies to
 * and the version it makes; a receiver holding another version cannot use it.
 *
 * Layout (all integers little-endian):
 *   magic "SWSD" | u16 format version | u8 flags (0) | u8 reserved (0)
 *   16 bytes: the adapter schema hash (its 32 hex digits as bytes)
 *   u32 base version | u32 version (> base version)
 *   u32 value count N | u16 chunk size C | u16 kept per full chunk k
 *   then per tensor in the adapter codec's order (module names ascending; lora_A, then lora_B), per chunk of C
 *   consecutive values of that tensor (a tensor's last chunk may be shorter, length L; it keeps ceil(k·L/C)):
 *     f32 scale | u8 offset × kept (strictly increasing, < L) | i8 q × kept (−127..127)
 *   The value added at chunk start + offset is q · scale.
 *
 * Every size is fixed by the receiver's own schema and the run manifest's (C, k): the payload is exactly
 * SPARSE_HEADER_BYTES + Σ_chunks (4 + 2·kept) bytes, so nothing a sender declares can make a receiver allocate more
 * than its own adapter's size. Chunks never straddle tensors, so A's and B's very different magnitudes each get
 * their own scales.
 *
 * Why these numbers (defaults in DEFAULT_SPARSE_CONFIG):
 *   C = 256: an offset fits one byte, and a chunk is small enough that its top-k is spread over the whole tensor
 *     (a global top-k would send only the tensors that happen to move most, starving the rest for many rounds);
 *   k = 8 of 256 (1/32): 4 + 2·8 = 20 bytes per 256 values, 0.078 bytes a value against fp16's 2 (25.6×), which
 *     leaves room for the periodic fp16 keyframes within the 8× goal;
 *   one f32 scale per chunk (maxabs/127, like the int8 adapter codec): per-chunk scales follow the local magnitude,
 *     and the rounding error is not lost but stays in the sender's residual (error feedback).
 */
import type { Adapter, LoraPair } from '../model/adapter.ts';
import { moduleNames } from '../model/adapter.ts';
import { ByteReader, WireFormatError, WireTruncation } from './bytes.ts';
import type { AdapterShape } from './codec.ts';
import { FP16_MAX } from './fp16.ts';
import { SCHEMA_HASH_PATTERN } from './constants.ts';
import type { RejectReason } from './verdict.ts';

/** First bytes of every sparse delta: ASCII "SWSD" (Swarm sparse delta). */
export const SPARSE_MAGIC = Uint8Array.of(0x53, 0x57, 0x53, 0x44);
export const SPARSE_FORMAT_VERSION = 1;
export const SPARSE_HEADER_BYTES = 4 + 2 + 1 + 1 + 16 + 4 + 4 + 4 + 2 + 2;

/** What a run manifest's `sparse` field sets (absent: every publication is a full adapter). */
export interface SparseConfig {
  /** Values per chunk, C (16..256: an offset is one byte). */
  chunk: number;
  /** Values kept per full chunk, k (1..C/2: at C/2 the delta costs as much as an int8 full adapter). */
  keep: number;
  /**
   * A full adapter (a keyframe, in the run's codec) every this many publications (1..1000; 1 = never sparse).
   * Keyframes are how a receiver that joined late or lost a delta gets back onto a stream, so this is the longest
   * a receiver can be left without a sender's updates; each one costs about 2/0.078 ≈ 26 deltas' bytes at the
   * defaults. 16 keeps their share of the bytes near half, and at H = 5 resynchronises within 80 steps.
   */
  keyframeEvery: number;
}

export const DEFAULT_SPARSE_CONFIG: SparseConfig = { chunk: 256, keep: 8, keyframeEvery: 16 };
export const SPARSE_MIN_CHUNK = 16;
export const SPARSE_MAX_CHUNK = 256;
export const SPARSE_MAX_KEYFRAME_EVERY = 1000;
/** Largest |q · scale| a delta may carry: fp16's maximum, the most the run's keyframes can carry in one value. */
export const SPARSE_MAX_ABS_VALUE = FP16_MAX;
/** Largest scale a chunk may have: 127 · scale stays within SPARSE_MAX_ABS_VALUE (up to float32 rounding). */
export const SPARSE_MAX_SCALE = Math.fround(SPARSE_MAX_ABS_VALUE / 127);
/** Scales below this flush the chunk to zero, as the int8 adapter codec does (no subnormal scales). */
const MIN_SCALE = 2 ** -126;
/** Versions are u32 on the wire (a publication every second would take 136 years to run out). */
export const SPARSE_MAX_VERSION = 0xffffffff;

/** A reason a SparseConfig is not one the format allows, in words; null when it is valid. */
export function sparseConfigProblem(c: SparseConfig): string | null {
  if (!Number.isInteger(c.chunk) || c.chunk < SPARSE_MIN_CHUNK || c.chunk > SPARSE_MAX_CHUNK) return `chunk = ${c.chunk} must be an integer in ${SPARSE_MIN_CHUNK}..${SPARSE_MAX_CHUNK}`;
  if (!Number.isInteger(c.keep) || c.keep < 1 || c.keep > c.chunk / 2) return `keep = ${c.keep} must be an integer in 1..chunk/2 (${c.chunk / 2})`;
  if (!Number.isInteger(c.keyframeEvery) || c.keyframeEvery < 1 || c.keyframeEvery > SPARSE_MAX_KEYFRAME_EVERY) {
    return `keyframeEvery = ${c.keyframeEvery} must be an integer in 1..${SPARSE_MAX_KEYFRAME_EVERY}`;
  }
  return null;
}

/** Where every chunk lies in the flat value vector, and the exact payload size: all from a schema and a config. */
export interface SparseLayout {
  config: SparseConfig;
  valueCount: number;
  /** Per chunk: first flat index, length, values kept. */
  chunkStart: Uint32Array;
  chunkLength: Uint16Array;
  chunkKeep: Uint16Array;
  keptTotal: number;
  payloadBytes: number;
}

/** Tensor lengths in the codec's order (module names ascending; A then B). */
function tensorLengths(shape: AdapterShape): number[] {
  const r = shape.config.r;
  const lengths: number[] = [];
  for (const name of [...shape.modules.keys()].sort()) {
    const m = shape.modules.get(name)!;
    lengths.push(r * m.inDim, m.outDim * r);
  }
  return lengths;
}

export function sparseLayout(shape: AdapterShape, config: SparseConfig): SparseLayout {
  const problem = sparseConfigProblem(config);
  if (problem) throw new WireFormatError(`sparse config: ${problem}`);
  const lengths = tensorLengths(shape);
  let chunks = 0;
  for (const n of lengths) chunks += Math.ceil(n / config.chunk);
  const chunkStart = new Uint32Array(chunks);
  const chunkLength = new Uint16Array(chunks);
  const chunkKeep = new Uint16Array(chunks);
  let at = 0;
  let c = 0;
  let keptTotal = 0;
  for (const n of lengths) {
    for (let offset = 0; offset < n; offset += config.chunk, c++) {
      const length = Math.min(config.chunk, n - offset);
      chunkStart[c] = at + offset;
      chunkLength[c] = length;
      chunkKeep[c] = Math.ceil((config.keep * length) / config.chunk);
      keptTotal += chunkKeep[c];
    }
    at += n;
  }
  if (at > 0xffffffff) throw new WireFormatError(`${at} adapter values exceed what a sparse delta can index`);
  return { config, valueCount: at, chunkStart, chunkLength, chunkKeep, keptTotal, payloadBytes: SPARSE_HEADER_BYTES + 4 * chunks + 2 * keptTotal };
}

/** One adapter's values as one vector, in the codec's order. */
export function flattenAdapter(adapter: Adapter): Float32Array {
  let total = 0;
  for (const p of adapter.modules.values()) total += p.a.length + p.b.length;
  const flat = new Float32Array(total);
  let at = 0;
  for (const name of moduleNames(adapter)) {
    const p = adapter.modules.get(name)!;
    flat.set(p.a, at);
    at += p.a.length;
    flat.set(p.b, at);
    at += p.b.length;
  }
  return flat;
}

/** A new adapter of `template`'s schema holding a copy of `flat` (the inverse of flattenAdapter). */
export function adapterFromFlat(template: AdapterShape, flat: Float32Array): Adapter {
  const r = template.config.r;
  const modules = new Map<string, LoraPair>();
  let at = 0;
  for (const name of [...template.modules.keys()].sort()) {
    const { inDim, outDim } = template.modules.get(name)!;
    const a = flat.slice(at, at + r * inDim);
    at += a.length;
    const b = flat.slice(at, at + outDim * r);
    at += b.length;
    modules.set(name, { a, b, inDim, outDim });
  }
  if (at !== flat.length) throw new WireFormatError(`${flat.length} values for a schema of ${at}`);
  const { baseModelId, config } = template;
  return { baseModelId, config: { r: config.r, alpha: config.alpha, targetModules: [...config.targetModules] }, modules };
}

/** The kept entries of every chunk: what a delta carries besides its header. */
export interface QuantisedChunks {
  /** Per chunk (layout order). */
  scales: Float32Array;
  /** Per kept entry, chunk after chunk: offset within its chunk (strictly increasing within a chunk). */
  offsets: Uint8Array;
  /** Per kept entry: the int8 value; the entry adds q · scale. */
  q: Int8Array;
}

export interface SparseDelta extends QuantisedChunks {
  schemaHash: string;
  /** Version of the sender's public copy the delta applies to. */
  baseVersion: number;
  /** Version of the public copy once it is applied. */
  version: number;
}

/**
 * Per chunk, the `keep` entries of largest |residual| (ties: the lower index), quantised symmetric int8 with
 * scale = maxabs/127 stored as float32. Throws WireFormatError when a kept value is beyond SPARSE_MAX_ABS_VALUE
 * or not finite (the sender then publishes a keyframe instead).
 */
export function selectTopK(residual: Float32Array | Float64Array, layout: SparseLayout): QuantisedChunks {
  if (residual.length !== layout.valueCount) throw new WireFormatError(`residual of ${residual.length} values for a layout of ${layout.valueCount}`);
  const chunks = layout.chunkStart.length;
  const scales = new Float32Array(chunks);
  const offsets = new Uint8Array(layout.keptTotal);
  const q = new Int8Array(layout.keptTotal);
  const order: number[] = [];
  let out = 0;
  for (let c = 0; c < chunks; c++) {
    const start = layout.chunkStart[c];
    const length = layout.chunkLength[c];
    const keep = layout.chunkKeep[c];
    order.length = 0;
    for (let i = 0; i < length; i++) order.push(i);
    order.sort((x, y) => Math.abs(residual[start + y]) - Math.abs(residual[start + x]) || x - y);
    const kept = order.slice(0, keep).sort((x, y) => x - y);
    let maxAbs = 0;
    for (const i of kept) {
      const v = residual[start + i];
      if (!Number.isFinite(v)) throw new WireFormatError(`residual[${start + i}] is ${v}`);
      maxAbs = Math.max(maxAbs, Math.abs(v));
    }
    if (maxAbs > SPARSE_MAX_ABS_VALUE) throw new WireFormatError(`residual magnitude ${maxAbs} exceeds ${SPARSE_MAX_ABS_VALUE}`);
    let scale = Math.fround(maxAbs / 127);
    if (scale < MIN_SCALE) scale = 0;
    // Float32 rounding may put the scale a hair above the cap at maxAbs = SPARSE_MAX_ABS_VALUE.
    if (scale > SPARSE_MAX_SCALE) scale = SPARSE_MAX_SCALE;
    scales[c] = scale;
    for (const i of kept) {
      offsets[out] = i;
      q[out] = scale === 0 ? 0 : Math.max(-127, Math.min(127, Math.round(residual[start + i] / scale)));
      out++;
    }
  }
  return { scales, offsets, q };
}

/**
 * Adds a delta's values to `target` (a flat public copy). The sender advances its own public copy with this same
 * function, so sender and receivers hold bit-identical copies.
 */
export function applyChunks(target: Float32Array, chunks: QuantisedChunks, layout: SparseLayout): void {
  let entry = 0;
  for (let c = 0; c < layout.chunkStart.length; c++) {
    const start = layout.chunkStart[c];
    const scale = chunks.scales[c];
    for (let j = 0; j < layout.chunkKeep[c]; j++, entry++) target[start + chunks.offsets[entry]] += chunks.q[entry] * scale;
  }
}

function hexToBytes16(hex: string): Uint8Array {
  const out = new Uint8Array(16);
  for (let i = 0; i < 16; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function bytes16ToHex(bytes: Uint8Array): string {
  let hex = '';
  for (const b of bytes) hex += b.toString(16).padStart(2, '0');
  return hex;
}

export function encodeSparseDelta(delta: SparseDelta, layout: SparseLayout): Uint8Array {
  if (!SCHEMA_HASH_PATTERN.test(delta.schemaHash)) throw new WireFormatError(`schema hash '${delta.schemaHash}' does not match ${SCHEMA_HASH_PATTERN}`);
  for (const [what, v] of [['base version', delta.baseVersion], ['version', delta.version]] as const) {
    if (!Number.isInteger(v) || v < 0 || v > SPARSE_MAX_VERSION) throw new WireFormatError(`${what} ${v} outside 0..${SPARSE_MAX_VERSION}`);
  }
  if (!(delta.version > delta.baseVersion)) throw new WireFormatError(`version ${delta.version} must be above the base version ${delta.baseVersion}`);
  if (delta.scales.length !== layout.chunkStart.length || delta.offsets.length !== layout.keptTotal || delta.q.length !== layout.keptTotal) {
    throw new WireFormatError('the delta does not fit its layout');
  }
  const out = new Uint8Array(layout.payloadBytes);
  const view = new DataView(out.buffer);
  out.set(SPARSE_MAGIC, 0);
  view.setUint16(4, SPARSE_FORMAT_VERSION, true);
  out.set(hexToBytes16(delta.schemaHash), 8);
  view.setUint32(24, delta.baseVersion, true);
  view.setUint32(28, delta.version, true);
  view.setUint32(32, layout.valueCount, true);
  view.setUint16(36, layout.config.chunk, true);
  view.setUint16(38, layout.config.keep, true);
  let at = SPARSE_HEADER_BYTES;
  let entry = 0;
  for (let c = 0; c < layout.chunkStart.length; c++) {
    const keep = layout.chunkKeep[c];
    view.setFloat32(at, delta.scales[c], true);
    at += 4;
    out.set(delta.offsets.subarray(entry, entry + keep), at);
    at += keep;
    out.set(new Uint8Array(delta.q.buffer, delta.q.byteOffset + entry, keep), at);
    at += keep;
    entry += keep;
  }
  return out;
}

/** Whether bytes claim to be a sparse delta (its magic); a full adapter payload starts with "SWAD" instead. */
export function isSparseDelta(bytes: Uint8Array): boolean {
  return bytes instanceof Uint8Array && bytes.length >= 4 && SPARSE_MAGIC.every((b, i) => bytes[i] === b);
}

export type DecodeSparseResult = ({ ok: true } & SparseDelta) | { ok: false; reason: RejectReason; detail: string };

class SparseRejection extends Error {
  constructor(readonly reason: RejectReason, detail: string) {
    super(detail);
  }
}

function decodeUnchecked(bytes: Uint8Array, schemaHash: string, layout: SparseLayout): DecodeSparseResult {
  // The size is fixed by our own schema and the run's config: refuse anything longer before reading a byte.
  if (bytes.length > layout.payloadBytes) return { ok: false, reason: 'oversized', detail: `sparse delta of ${bytes.length} bytes; the run's schema and sparse config imply exactly ${layout.payloadBytes}` };
  const reader = new ByteReader(bytes);
  for (let i = 0; i < SPARSE_MAGIC.length; i++) {
    if (reader.u8('magic') !== SPARSE_MAGIC[i]) return { ok: false, reason: 'malformed', detail: 'not a sparse delta (magic bytes differ from "SWSD")' };
  }
  const version = reader.u16('format version');
  if (version !== SPARSE_FORMAT_VERSION) return { ok: false, reason: 'unknown-version', detail: `sparse delta format version ${version}; this build reads ${SPARSE_FORMAT_VERSION}` };
  const flags = reader.u8('flags');
  const reserved = reader.u8('reserved');
  if (flags !== 0 || reserved !== 0) return { ok: false, reason: 'malformed', detail: `flags ${flags} and reserved byte ${reserved} must be 0` };
  const hash = bytes16ToHex(reader.bytes(16, 'schema hash'));
  if (hash !== schemaHash) return { ok: false, reason: 'schema-mismatch', detail: `sparse delta for schema ${hash}, ours is ${schemaHash}` };
  const baseVersion = reader.u32('base version');
  const deltaVersion = reader.u32('version');
  if (!(deltaVersion > baseVersion)) return { ok: false, reason: 'malformed', detail: `version ${deltaVersion} is not above its base version ${baseVersion}` };
  const valueCount = reader.u32('value count');
  if (valueCount !== layout.valueCount) return { ok: false, reason: 'schema-mismatch', detail: `sparse delta over ${valueCount} values; our schema has ${layout.valueCount}` };
  const chunk = reader.u16('chunk size');
  const keep = reader.u16('kept per chunk');
  if (chunk !== layout.config.chunk || keep !== layout.config.keep) {
    return { ok: false, reason: 'malformed', detail: `sparse delta keeps ${keep} of ${chunk} per chunk; the run keeps ${layout.config.keep} of ${layout.config.chunk}` };
  }
  if (bytes.length < layout.payloadBytes) return { ok: false, reason: 'truncated', detail: `sparse delta of ${bytes.length} bytes; the run's schema and sparse config imply exactly ${layout.payloadBytes}` };

  const chunks = layout.chunkStart.length;
  const scales = new Float32Array(chunks);
  const offsets = new Uint8Array(layout.keptTotal);
  const q = new Int8Array(layout.keptTotal);
  let entry = 0;
  for (let c = 0; c < chunks; c++) {
    const where = `chunk ${c}`;
    const scale = reader.f32(`${where} scale`);
    if (!Number.isFinite(scale)) throw new SparseRejection('non-finite', `${where}: scale is ${scale}`);
    if (scale < 0) throw new SparseRejection('malformed', `${where}: scale ${scale} is negative`);
    if (scale > 0 && scale < MIN_SCALE) throw new SparseRejection('malformed', `${where}: scale ${scale} is subnormal (encoders flush such chunks to zero)`);
    if (scale > SPARSE_MAX_SCALE) throw new SparseRejection('malformed', `${where}: scale ${scale} allows |values| up to ${scale * 127}, above ${SPARSE_MAX_ABS_VALUE}`);
    scales[c] = scale;
    const n = layout.chunkKeep[c];
    const length = layout.chunkLength[c];
    const rawOffsets = reader.bytes(n, `${where} offsets`);
    for (let j = 0; j < n; j++) {
      const offset = rawOffsets[j];
      if (offset >= length) throw new SparseRejection('malformed', `${where}: offset ${offset} is outside its ${length} values`);
      if (j > 0 && !(offset > rawOffsets[j - 1])) throw new SparseRejection('malformed', `${where}: offsets are not strictly increasing (${rawOffsets[j - 1]}, then ${offset})`);
      offsets[entry + j] = offset;
    }
    const rawQ = reader.bytes(n, `${where} values`);
    let maxAbsQ = 0;
    for (let j = 0; j < n; j++) {
      const value = (rawQ[j] << 24) >> 24;
      if (value === -128) throw new SparseRejection('malformed', `${where}: value -128; the codec is symmetric (-127..127)`);
      maxAbsQ = Math.max(maxAbsQ, Math.abs(value));
      q[entry + j] = value;
    }
    // Canonical, as the int8 adapter codec: the scale is the kept maxabs/127, so a non-zero scale has a ±127.
    if (scale > 0 && maxAbsQ !== 127) throw new SparseRejection('malformed', `${where}: scale ${scale} but largest |q| is ${maxAbsQ}, not 127`);
    if (scale === 0 && maxAbsQ !== 0) throw new SparseRejection('malformed', `${where}: scale 0 with non-zero values`);
    entry += n;
  }
  if (reader.remaining !== 0) return { ok: false, reason: 'malformed', detail: `${reader.remaining} trailing bytes` };
  return { ok: true, schemaHash: hash, baseVersion, version: deltaVersion, scales, offsets, q };
}

/**
 * Decodes a sparse delta from a peer against our own schema and the run's sparse config. Never throws. The exact
 * size is checked before any array is allocated, and every array is sized by our layout, never by the payload.
 */
export function decodeSparseDelta(bytes: Uint8Array, schemaHash: string, layout: SparseLayout): DecodeSparseResult {
  try {
    if (!(bytes instanceof Uint8Array)) return { ok: false, reason: 'malformed', detail: 'sparse delta is not a Uint8Array' };
    return decodeUnchecked(bytes, schemaHash, layout);
  } catch (error) {
    if (error instanceof SparseRejection) return { ok: false, reason: error.reason, detail: error.message };
    if (error instanceof WireTruncation) return { ok: false, reason: 'truncated', detail: error.message };
    return { ok: false, reason: 'malformed', detail: `sparse delta could not be decoded: ${error instanceof Error ? error.message : String(error)}` };
  }
}
