/**
 * The adapter payload: a versioned binary encoding of an Adapter with fp32, fp16 or int8 tensors.
 *
 * Layout (all integers little-endian):
 *   magic "SWAD" | u16 format version | u8 codec id | u8 flags (0)
 *   str baseModelId | u16 r | f64 alpha | u8 target count | str target × count (sorted)
 *   u32 module count | (str name | u32 inDim | u32 outDim) × count (names strictly ascending = moduleNames order)
 *   per module in that order: tensor A [r, inDim], then tensor B [outDim, r], each
 *     fp32: 4 bytes per value; fp16: 2 bytes per value; int8: f32 scale, then 1 signed byte per value
 *   (str = u8 length + printable ASCII)
 * The encoding is canonical: one adapter has exactly one valid encoding per codec (except int8, whose scale is
 * derived from the values), so a payload's sha256 identifies its content.
 */
import { AdapterShapeError, LORA_TARGETS, moduleNames, schemaHash, type Adapter, type LoraPair } from '../model/adapter.ts';
import { ByteReader, ByteWriter, WireFormatError, WireTruncation } from './bytes.ts';
import {
  MAX_LORA_RANK,
  MAX_MODULE_DIM,
  MAX_MODULES,
  MAX_PAYLOAD_BYTES,
  MAX_TARGET_MODULES,
  MODEL_ID_PATTERN,
  MODULE_NAME_PATTERN,
  PAYLOAD_FORMAT_VERSION,
  PAYLOAD_MAGIC,
} from './constants.ts';
import { FP16_OUT_OF_RANGE, float16Table, float32ToFloat16Bits } from './fp16.ts';
import type { RejectReason } from './verdict.ts';

export const PAYLOAD_CODECS = ['fp32', 'fp16', 'int8'] as const;
export type PayloadCodec = (typeof PAYLOAD_CODECS)[number];

const CODEC_IDS: Record<PayloadCodec, number> = { fp32: 1, fp16: 2, int8: 3 };
const CODEC_BY_ID = new Map<number, PayloadCodec>(PAYLOAD_CODECS.map((c) => [CODEC_IDS[c], c]));

export function isPayloadCodec(value: unknown): value is PayloadCodec {
  return typeof value === 'string' && (PAYLOAD_CODECS as readonly string[]).includes(value);
}

/** A value cannot be represented in the chosen codec (NaN/Inf anywhere, or beyond float16's range for fp16). */
export class CodecRangeError extends Error {
  static override readonly name = 'CodecRangeError';
  override readonly name = CodecRangeError.name;
}

export interface DecodeLimits {
  /** Refuse inputs longer than this (default MAX_PAYLOAD_BYTES). */
  maxBytes?: number;
  /** Refuse, before decoding any tensor, a payload whose adapter schema hash differs. */
  expectSchemaHash?: string;
}

export type DecodeAdapterResult =
  | { ok: true; adapter: Adapter; codec: PayloadCodec; schemaHash: string }
  | { ok: false; reason: RejectReason; detail: string };

/** int8 scales below this flush the tensor to zero: a subnormal scale would lose the ≤ scale/2 error bound. */
const INT8_MIN_SCALE = 2 ** -126;
const FLOAT32_MAX = 3.4028234663852886e38;

const hostIsLittleEndian = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

function bytesPerValue(codec: PayloadCodec): number {
  return codec === 'fp32' ? 4 : codec === 'fp16' ? 2 : 1;
}

function tensorBytes(codec: PayloadCodec, count: number): number {
  return count * bytesPerValue(codec) + (codec === 'int8' ? 4 : 0);
}

/** Bytes encodeAdapter will produce for this adapter, without encoding it. */
export function encodedAdapterSize(adapter: Adapter, codec: PayloadCodec): number {
  const writer = new ByteWriter();
  writeHeader(writer, adapter, codec);
  let size = writer.size;
  for (const p of adapter.modules.values()) size += tensorBytes(codec, p.a.length) + tensorBytes(codec, p.b.length);
  return size;
}

/** What fixes a payload's size: everything of an adapter but its values. */
export interface AdapterShape {
  baseModelId: string;
  config: { r: number; alpha: number; targetModules: readonly string[] };
  modules: ReadonlyMap<string, { inDim: number; outDim: number }>;
}

/**
 * The exact size of every payload of this schema in this codec: the header, then r·inDim + outDim·r values per
 * module (plus a 4-byte scale per tensor for int8). A run's schema and codec fix it, so a receiver can refuse an
 * announcement of any other size before fetching a byte, and never needs to trust an announced size.
 */
export function expectedPayloadBytes(shape: AdapterShape, codec: PayloadCodec): number {
  if (!isPayloadCodec(codec)) throw new WireFormatError(`unknown codec '${String(codec)}' (known: ${PAYLOAD_CODECS.join(', ')})`);
  const writer = new ByteWriter();
  writeHeader(writer, shape, codec);
  let size = writer.size;
  const r = shape.config.r;
  for (const p of shape.modules.values()) size += tensorBytes(codec, r * p.inDim) + tensorBytes(codec, p.outDim * r);
  return size;
}

function checkEncodable(adapter: Adapter): void {
  const { r, alpha, targetModules } = adapter.config;
  if (!MODEL_ID_PATTERN.test(adapter.baseModelId)) throw new WireFormatError(`base model id '${adapter.baseModelId}' does not match ${MODEL_ID_PATTERN}`);
  if (!Number.isInteger(r) || r < 1 || r > MAX_LORA_RANK) throw new WireFormatError(`rank ${r} outside 1..${MAX_LORA_RANK}`);
  if (!Number.isFinite(alpha) || alpha <= 0) throw new WireFormatError(`alpha must be finite and > 0, got ${alpha}`);
  if (targetModules.length < 1 || targetModules.length > MAX_TARGET_MODULES) throw new WireFormatError(`${targetModules.length} target modules (allowed 1..${MAX_TARGET_MODULES})`);
  if (new Set(targetModules).size !== targetModules.length) throw new WireFormatError(`duplicate target modules: ${targetModules.join(', ')}`);
  for (const t of targetModules) {
    if (!(LORA_TARGETS as readonly string[]).includes(t)) throw new WireFormatError(`target module '${t}' is not one of ${LORA_TARGETS.join(', ')}`);
  }
  if (adapter.modules.size > MAX_MODULES) throw new WireFormatError(`${adapter.modules.size} modules exceed ${MAX_MODULES}`);
  for (const [name, pair] of adapter.modules) {
    if (!MODULE_NAME_PATTERN.test(name)) throw new WireFormatError(`module name '${name}' does not match ${MODULE_NAME_PATTERN}`);
    if (!targetModules.some((t) => name === t || name.endsWith(`.${t}`))) throw new WireFormatError(`module '${name}' matches none of the target modules`);
    for (const [dimName, dim] of [['inDim', pair.inDim], ['outDim', pair.outDim]] as const) {
      if (!Number.isInteger(dim) || dim < 1 || dim > MAX_MODULE_DIM) throw new WireFormatError(`${name}: ${dimName} ${dim} outside 1..${MAX_MODULE_DIM}`);
    }
  }
}

function writeHeader(writer: ByteWriter, adapter: AdapterShape, codec: PayloadCodec): void {
  writer.bytes(PAYLOAD_MAGIC);
  writer.u16(PAYLOAD_FORMAT_VERSION);
  writer.u8(CODEC_IDS[codec]);
  writer.u8(0);
  writer.shortAscii(adapter.baseModelId);
  writer.u16(adapter.config.r);
  writer.f64(adapter.config.alpha);
  const targets = [...adapter.config.targetModules].sort();
  writer.u8(targets.length);
  for (const t of targets) writer.shortAscii(t);
  const names = [...adapter.modules.keys()].sort();
  writer.u32(names.length);
  for (const name of names) {
    const pair = adapter.modules.get(name)!;
    writer.shortAscii(name);
    writer.u32(pair.inDim);
    writer.u32(pair.outDim);
  }
}

function assertFinite(values: Float32Array, where: string): void {
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v - v !== 0) throw new CodecRangeError(`${where}[${i}] is ${v}; adapters with NaN or Infinity cannot be encoded`);
  }
}

function writeTensor(out: Uint8Array, view: DataView, offset: number, values: Float32Array, codec: PayloadCodec, where: string): number {
  if (codec === 'fp32') {
    if (hostIsLittleEndian) {
      out.set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength), offset);
    } else {
      for (let i = 0; i < values.length; i++) view.setFloat32(offset + 4 * i, values[i], true);
    }
    return offset + 4 * values.length;
  }
  if (codec === 'fp16') {
    for (let i = 0; i < values.length; i++) {
      const bits = float32ToFloat16Bits(values[i]);
      if (bits === FP16_OUT_OF_RANGE) {
        throw new CodecRangeError(`${where}[${i}] = ${values[i]} is beyond float16's range (|x| < 65520 rounds to at most 65504); use fp32`);
      }
      view.setUint16(offset + 2 * i, bits, true);
    }
    return offset + 2 * values.length;
  }
  let maxAbs = 0;
  for (let i = 0; i < values.length; i++) maxAbs = Math.max(maxAbs, Math.abs(values[i]));
  // The scale is stored as float32 and the quantisation uses that stored value, so decoder and encoder agree.
  let scale = Math.fround(maxAbs / 127);
  if (scale < INT8_MIN_SCALE) scale = 0;
  view.setFloat32(offset, scale, true);
  offset += 4;
  for (let i = 0; i < values.length; i++) {
    const q = scale === 0 ? 0 : Math.max(-127, Math.min(127, Math.round(values[i] / scale)));
    out[offset + i] = q & 0xff;
  }
  return offset + values.length;
}

/**
 * Encodes an adapter. Throws AdapterShapeError (arrays disagree with dims), WireFormatError (ids, names, counts
 * the format cannot carry) or CodecRangeError (NaN/Inf, or beyond float16's range with fp16).
 */
export function encodeAdapter(adapter: Adapter, codec: PayloadCodec): Uint8Array {
  if (!isPayloadCodec(codec)) throw new WireFormatError(`unknown codec '${String(codec)}' (known: ${PAYLOAD_CODECS.join(', ')})`);
  checkEncodable(adapter);
  const { r } = adapter.config;
  for (const [name, p] of adapter.modules) {
    if (p.a.length !== r * p.inDim) throw new AdapterShapeError(`${name}: lora_A has ${p.a.length} values, expected r*in = ${r}*${p.inDim}`);
    if (p.b.length !== p.outDim * r) throw new AdapterShapeError(`${name}: lora_B has ${p.b.length} values, expected out*r = ${p.outDim}*${r}`);
  }
  const header = new ByteWriter();
  writeHeader(header, adapter, codec);
  const names = moduleNames(adapter);
  let total = header.size;
  for (const name of names) {
    const p = adapter.modules.get(name)!;
    assertFinite(p.a, `${name}.lora_A`);
    assertFinite(p.b, `${name}.lora_B`);
    total += tensorBytes(codec, p.a.length) + tensorBytes(codec, p.b.length);
  }
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  out.set(header.finish(), 0);
  let offset = header.size;
  for (const name of names) {
    const p = adapter.modules.get(name)!;
    offset = writeTensor(out, view, offset, p.a, codec, `${name}.lora_A`);
    offset = writeTensor(out, view, offset, p.b, codec, `${name}.lora_B`);
  }
  return out;
}

/** A decoding failure with its reason; thrown inside decodeAdapter only and turned into a result there. */
class PayloadRejection extends Error {
  constructor(readonly reason: RejectReason, detail: string) {
    super(detail);
  }
}

function readTensor(reader: ByteReader, count: number, codec: PayloadCodec, where: string): Float32Array {
  if (codec === 'fp32') {
    const raw = reader.bytes(4 * count, where);
    let values: Float32Array;
    if (hostIsLittleEndian) {
      values = new Float32Array(raw.slice().buffer);
    } else {
      values = new Float32Array(count);
      const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
      for (let i = 0; i < count; i++) values[i] = view.getFloat32(4 * i, true);
    }
    for (let i = 0; i < count; i++) {
      const v = values[i];
      if (v - v !== 0) throw new PayloadRejection('non-finite', `${where}[${i}] is ${v}`);
    }
    return values;
  }
  if (codec === 'fp16') {
    const raw = reader.bytes(2 * count, where);
    const table = float16Table();
    const values = new Float32Array(count);
    for (let i = 0; i < count; i++) {
      const bits = raw[2 * i] | (raw[2 * i + 1] << 8);
      if ((bits & 0x7c00) === 0x7c00) throw new PayloadRejection('non-finite', `${where}[${i}] is a float16 NaN or Infinity (bits 0x${bits.toString(16)})`);
      values[i] = table[bits];
    }
    return values;
  }
  const scale = reader.f32(`${where} scale`);
  if (!Number.isFinite(scale)) throw new PayloadRejection('non-finite', `${where} int8 scale is ${scale}`);
  if (scale < 0) throw new PayloadRejection('malformed', `${where} int8 scale ${scale} is negative`);
  if (scale > 0 && scale < INT8_MIN_SCALE) throw new PayloadRejection('malformed', `${where} int8 scale ${scale} is subnormal (encoders flush such tensors to zero)`);
  if (scale * 127 > FLOAT32_MAX) throw new PayloadRejection('non-finite', `${where} int8 scale ${scale} makes 127·scale overflow float32`);
  const raw = reader.bytes(count, where);
  const values = new Float32Array(count);
  let maxAbsQ = 0;
  for (let i = 0; i < count; i++) {
    const q = (raw[i] << 24) >> 24;
    if (q === -128) throw new PayloadRejection('malformed', `${where}[${i}] is -128; the int8 codec is symmetric (-127..127)`);
    if (q > maxAbsQ) maxAbsQ = q;
    else if (-q > maxAbsQ) maxAbsQ = -q;
    values[i] = q * scale;
  }
  // Canonical form: the scale is maxabs/127, so some value sits at ±127, and a zero scale comes with all zeros.
  if (scale > 0 && maxAbsQ !== 127) throw new PayloadRejection('malformed', `${where}: int8 scale ${scale} but largest |q| is ${maxAbsQ}, not 127`);
  if (scale === 0 && maxAbsQ !== 0) throw new PayloadRejection('malformed', `${where}: int8 scale 0 with non-zero values`);
  return values;
}

function readName(reader: ByteReader, what: string, pattern: RegExp): string {
  const text = reader.shortAscii(what);
  if (text === null || !pattern.test(text)) {
    throw new PayloadRejection('malformed', `${what} ${text === null ? 'holds a non-printable byte' : `'${text}' does not match ${pattern}`}`);
  }
  return text;
}

function decodeUnchecked(bytes: Uint8Array, limits: DecodeLimits): DecodeAdapterResult {
  const maxBytes = limits.maxBytes ?? MAX_PAYLOAD_BYTES;
  if (bytes.length > maxBytes) return { ok: false, reason: 'oversized', detail: `payload of ${bytes.length} bytes exceeds the limit of ${maxBytes}` };
  const reader = new ByteReader(bytes);
  for (let i = 0; i < PAYLOAD_MAGIC.length; i++) {
    if (reader.u8('magic') !== PAYLOAD_MAGIC[i]) return { ok: false, reason: 'malformed', detail: 'not an adapter payload (magic bytes differ from "SWAD")' };
  }
  const version = reader.u16('format version');
  if (version !== PAYLOAD_FORMAT_VERSION) {
    return { ok: false, reason: 'unknown-version', detail: `payload format version ${version}; this build reads version ${PAYLOAD_FORMAT_VERSION}` };
  }
  const codecId = reader.u8('codec id');
  const codec = CODEC_BY_ID.get(codecId);
  if (!codec) return { ok: false, reason: 'malformed', detail: `unknown codec id ${codecId}` };
  const flags = reader.u8('flags');
  if (flags !== 0) return { ok: false, reason: 'malformed', detail: `flags byte is ${flags}; version ${PAYLOAD_FORMAT_VERSION} defines none` };

  const baseModelId = readName(reader, 'base model id', MODEL_ID_PATTERN);
  const r = reader.u16('rank');
  if (r < 1 || r > MAX_LORA_RANK) return { ok: false, reason: 'malformed', detail: `rank ${r} outside 1..${MAX_LORA_RANK}` };
  const alpha = reader.f64('alpha');
  if (!Number.isFinite(alpha)) return { ok: false, reason: 'non-finite', detail: `alpha is ${alpha}` };
  if (alpha <= 0) return { ok: false, reason: 'malformed', detail: `alpha ${alpha} must be > 0` };
  const targetCount = reader.u8('target count');
  if (targetCount < 1 || targetCount > MAX_TARGET_MODULES) return { ok: false, reason: 'malformed', detail: `${targetCount} target modules (allowed 1..${MAX_TARGET_MODULES})` };
  const targetModules: string[] = [];
  for (let i = 0; i < targetCount; i++) {
    const target = readName(reader, `target module ${i}`, MODULE_NAME_PATTERN);
    if (!(LORA_TARGETS as readonly string[]).includes(target)) return { ok: false, reason: 'malformed', detail: `target module '${target}' is not one of ${LORA_TARGETS.join(', ')}` };
    if (i > 0 && !(target > targetModules[i - 1])) return { ok: false, reason: 'malformed', detail: 'target modules are not strictly ascending' };
    targetModules.push(target);
  }
  const moduleCount = reader.u32('module count');
  if (moduleCount > MAX_MODULES) return { ok: false, reason: 'malformed', detail: `${moduleCount} modules exceed ${MAX_MODULES}` };
  // Each module header takes at least 10 bytes; refuse counts the input cannot hold before building anything.
  if (moduleCount * 10 > reader.remaining) return { ok: false, reason: 'truncated', detail: `${moduleCount} modules declared but only ${reader.remaining} bytes follow` };
  const headers: { name: string; inDim: number; outDim: number }[] = [];
  let tensorTotal = 0;
  for (let i = 0; i < moduleCount; i++) {
    const name = readName(reader, `module ${i} name`, MODULE_NAME_PATTERN);
    if (i > 0 && !(name > headers[i - 1].name)) return { ok: false, reason: 'malformed', detail: `module '${name}' breaks the strictly ascending module order` };
    if (!targetModules.some((t) => name === t || name.endsWith(`.${t}`))) return { ok: false, reason: 'malformed', detail: `module '${name}' matches none of the target modules` };
    const inDim = reader.u32(`${name} inDim`);
    const outDim = reader.u32(`${name} outDim`);
    for (const [dimName, dim] of [['inDim', inDim], ['outDim', outDim]] as const) {
      if (dim < 1 || dim > MAX_MODULE_DIM) return { ok: false, reason: 'malformed', detail: `${name}: ${dimName} ${dim} outside 1..${MAX_MODULE_DIM}` };
    }
    headers.push({ name, inDim, outDim });
    tensorTotal += tensorBytes(codec, r * inDim) + tensorBytes(codec, outDim * r);
  }
  if (tensorTotal > reader.remaining) {
    return { ok: false, reason: 'truncated', detail: `tensors need ${tensorTotal} bytes but ${reader.remaining} follow the header` };
  }
  if (tensorTotal < reader.remaining) {
    return { ok: false, reason: 'malformed', detail: `${reader.remaining - tensorTotal} trailing bytes after the last tensor` };
  }

  const config = { r, alpha, targetModules };
  const shapeOnly: Adapter = { baseModelId, config, modules: new Map() };
  const empty = new Float32Array(0);
  for (const h of headers) shapeOnly.modules.set(h.name, { a: empty, b: empty, inDim: h.inDim, outDim: h.outDim });
  const hash = schemaHash(shapeOnly);
  if (limits.expectSchemaHash !== undefined && hash !== limits.expectSchemaHash) {
    return { ok: false, reason: 'schema-mismatch', detail: `payload schema hash ${hash}, expected ${limits.expectSchemaHash}` };
  }

  const modules = new Map<string, LoraPair>();
  for (const h of headers) {
    const a = readTensor(reader, r * h.inDim, codec, `${h.name}.lora_A`);
    const b = readTensor(reader, h.outDim * r, codec, `${h.name}.lora_B`);
    modules.set(h.name, { a, b, inDim: h.inDim, outDim: h.outDim });
  }
  return { ok: true, adapter: { baseModelId, config, modules }, codec, schemaHash: hash };
}

/**
 * Decodes a payload from a peer. Never throws: any defect comes back as { ok: false, reason, detail }.
 * Counts, lengths and dimensions are checked against caps and against the bytes actually present before any
 * tensor is allocated; trailing bytes, NaN/Inf and non-canonical int8 tensors are refused.
 */
export function decodeAdapter(bytes: Uint8Array, limits: DecodeLimits = {}): DecodeAdapterResult {
  try {
    if (!(bytes instanceof Uint8Array)) return { ok: false, reason: 'malformed', detail: 'payload is not a Uint8Array' };
    return decodeUnchecked(bytes, limits);
  } catch (error) {
    if (error instanceof PayloadRejection) return { ok: false, reason: error.reason, detail: error.message };
    if (error instanceof WireTruncation) return { ok: false, reason: 'truncated', detail: error.message };
    return { ok: false, reason: 'malformed', detail: `payload could not be decoded: ${error instanceof Error ? error.message : String(error)}` };
  }
}
