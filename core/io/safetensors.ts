/**
 * The safetensors format (https://github.com/huggingface/safetensors), read and written with plain typed arrays.
 *
 * Layout: u64 little-endian N | N bytes of UTF-8 JSON header (space-padded) | raw little-endian tensor bytes.
 * The header maps tensor names to { dtype, shape, data_offsets: [begin, end] } (offsets relative to the data
 * section) and may carry a string-to-string `__metadata__` object.
 *
 * Swarm computes in float32, so F16 and BF16 tensors are widened exactly on load and narrowed with
 * round-to-nearest-even on save.
 */
import { findDuplicateJsonKey, utf8DecodeStrict, utf8Encode } from './text.ts';

export type FloatDtype = 'F32' | 'F16' | 'BF16';

export interface DecodedTensor {
  /** The dtype stored in the file; `data` is always float32. */
  dtype: FloatDtype;
  shape: number[];
  data: Float32Array;
}

export interface TensorToWrite {
  /** Storage dtype; defaults to F32. */
  dtype?: FloatDtype;
  shape: number[];
  data: Float32Array;
}

export interface ParsedSafetensors {
  tensors: Map<string, DecodedTensor>;
  metadata: Record<string, string>;
  /** Names of tensors left out by `include`, in header order. */
  skipped: string[];
}

export interface ParseOptions {
  /**
   * Decide per tensor name whether to decode it. Skipped tensors are still checked for sane offsets but are not
   * decoded, so a checkpoint may carry buffers we do not use (GPT-2's causal-mask `attn.bias`, stored in
   * whatever dtype) without costing memory or failing on their dtype.
   */
  include?: (name: string) => boolean;
  /** Used in error messages, e.g. a URL or file name. */
  fileName?: string;
  /** Refuse a header longer than this before decoding it (default MAX_SAFETENSORS_HEADER_BYTES). */
  maxHeaderBytes?: number;
}

export class SafetensorsTruncatedError extends Error {
  static override readonly name = 'SafetensorsTruncatedError';
  override readonly name = SafetensorsTruncatedError.name;
}

export class SafetensorsHeaderError extends Error {
  static override readonly name = 'SafetensorsHeaderError';
  override readonly name = SafetensorsHeaderError.name;
}

export class UnsupportedDtypeError extends Error {
  static override readonly name = 'UnsupportedDtypeError';
  override readonly name = UnsupportedDtypeError.name;
  constructor(readonly dtype: string, readonly tensorName: string, fileName?: string) {
    super(
      `${fileName ? fileName + ': ' : ''}tensor '${tensorName}' has dtype ${dtype}; ` +
        'only F32, F16 and BF16 tensors can be loaded',
    );
  }
}

/** Bytes per element of every dtype the safetensors spec defines, so offsets of tensors we skip can still be checked. */
const DTYPE_BYTES: Record<string, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1,
  I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4,
  I64: 8, U64: 8, F64: 8,
};

/**
 * A header longer than this is refused before it is decoded (the reference implementation allows 100 MB, which
 * cost 508 MB of memory to parse here). 8 MiB holds ~50,000 tensor entries; GPT-2 xl's checkpoint needs ~60 KB.
 */
export const MAX_SAFETENSORS_HEADER_BYTES = 8 * 1024 * 1024;

const littleEndianHost = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

// ---------------------------------------------------------------------------------------------------------------
// Half-precision conversions

let f16Table: Float32Array | null = null;

/** All 65536 half-precision values widened to float32, bit-exact (signed zeros, subnormals, infinities, NaN payloads). */
function halfToFloatTable(): Float32Array {
  if (f16Table) return f16Table;
  const bits = new Uint32Array(65536);
  const asFloat = new Float32Array(bits.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exponent = (h >> 10) & 0x1f;
    const mantissa = h & 0x3ff;
    if (exponent === 0x1f) {
      // Keep the payload: float32 mantissa is the half mantissa shifted into its top bits.
      bits[h] = ((h & 0x8000) << 16) | 0x7f800000 | (mantissa << 13);
    } else if (exponent === 0) {
      asFloat[h] = sign * mantissa * 2 ** -24; // exact: at most 11 significant bits
    } else {
      asFloat[h] = sign * (1024 + mantissa) * 2 ** (exponent - 25);
    }
  }
  f16Table = asFloat;
  return asFloat;
}

export function halfBitsToFloat(h: number): number {
  return halfToFloatTable()[h & 0xffff];
}

const scratchFloat = new Float32Array(1);
const scratchBits = new Uint32Array(scratchFloat.buffer);

/** float32 → IEEE half bits, round to nearest, ties to even; overflow gives ±inf, NaN stays NaN. */
export function floatToHalfBits(value: number): number {
  scratchFloat[0] = value;
  const x = scratchBits[0];
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  const mantissa = x & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 | (mantissa >>> 13) : 0);
  const halfExponent = exponent - 127 + 15;
  if (halfExponent >= 0x1f) return sign | 0x7c00;
  if (halfExponent >= 1) {
    let half = sign | (halfExponent << 10) | (mantissa >>> 13);
    const dropped = mantissa & 0x1fff;
    // A carry out of the mantissa correctly bumps the exponent (and reaches 0x7c00 = inf at the top).
    if (dropped > 0x1000 || (dropped === 0x1000 && (half & 1))) half++;
    return half;
  }
  // Subnormal half (or zero). The value is significand · 2^(exponent−150); in units of 2^−24 that is
  // significand · 2^(halfExponent−14), so shift right by 14 − halfExponent.
  if (halfExponent < -10) return sign; // below half the smallest subnormal: rounds to zero
  const significand = mantissa | 0x800000;
  const shift = 14 - halfExponent;
  let half = significand >>> shift;
  const dropped = significand & ((1 << shift) - 1);
  const halfway = 1 << (shift - 1);
  if (dropped > halfway || (dropped === halfway && (half & 1))) half++;
  return sign | half;
}

/** float32 → bfloat16 bits (top half of the float32), round to nearest, ties to even. */
export function floatToBfloat16Bits(value: number): number {
  scratchFloat[0] = value;
  const x = scratchBits[0];
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) return (x >>> 16) | 0x40; // keep NaN a NaN
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

export function bfloat16BitsToFloat(b: number): number {
  scratchBits[0] = (b & 0xffff) << 16;
  return scratchFloat[0];
}

// ---------------------------------------------------------------------------------------------------------------
// Reading

function product(shape: number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function decode(bytes: Uint8Array, dtype: FloatDtype, count: number): Float32Array {
  const out = new Float32Array(count);
  if (dtype === 'F32') {
    if (littleEndianHost) {
      // Copy through a fresh buffer: the source offset need not be 4-byte aligned.
      new Uint8Array(out.buffer).set(bytes);
    } else {
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(4 * i, true);
    }
    return out;
  }
  if (dtype === 'F16') {
    const table = halfToFloatTable();
    for (let i = 0; i < count; i++) out[i] = table[bytes[2 * i] | (bytes[2 * i + 1] << 8)];
    return out;
  }
  const outBits = new Uint32Array(out.buffer);
  for (let i = 0; i < count; i++) outBits[i] = ((bytes[2 * i] | (bytes[2 * i + 1] << 8)) << 16) >>> 0;
  return out;
}

function isNonNegativeInteger(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

export function parseSafetensors(bytes: Uint8Array, options: ParseOptions = {}): ParsedSafetensors {
  const where = options.fileName ? `${options.fileName}: ` : '';
  if (bytes.byteLength < 8) {
    throw new SafetensorsTruncatedError(`${where}safetensors file is ${bytes.byteLength} bytes, shorter than its 8-byte header length`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  const maxHeaderBytes = options.maxHeaderBytes ?? MAX_SAFETENSORS_HEADER_BYTES;
  if (headerLength > maxHeaderBytes) {
    throw new SafetensorsHeaderError(`${where}safetensors header length ${headerLength} exceeds the ${maxHeaderBytes}-byte limit; the file is not safetensors or is corrupt`);
  }
  if (8 + headerLength > bytes.byteLength) {
    throw new SafetensorsTruncatedError(`${where}safetensors header says ${headerLength} bytes but only ${bytes.byteLength - 8} follow`);
  }
  let header: unknown;
  let headerText: string;
  try {
    headerText = utf8DecodeStrict(bytes.subarray(8, 8 + headerLength));
    header = JSON.parse(headerText);
  } catch (error) {
    throw new SafetensorsHeaderError(`${where}safetensors header is not valid UTF-8 JSON: ${(error as Error).message}`);
  }
  const duplicate = findDuplicateJsonKey(headerText);
  if (duplicate !== null) throw new SafetensorsHeaderError(`${where}safetensors header names '${duplicate}' twice; which one is meant cannot be told`);
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new SafetensorsHeaderError(`${where}safetensors header must be a JSON object`);
  }

  const data = bytes.subarray(8 + headerLength);
  const metadata: Record<string, string> = {};
  const spans: { name: string; begin: number; end: number }[] = [];
  const skipped: string[] = [];
  const toDecode: { name: string; dtype: string; shape: number[]; begin: number; end: number }[] = [];

  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
        throw new SafetensorsHeaderError(`${where}__metadata__ must be an object of strings`);
      }
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== 'string') throw new SafetensorsHeaderError(`${where}__metadata__.${k} must be a string, got ${JSON.stringify(v)}`);
        metadata[k] = v;
      }
      continue;
    }
    if (typeof entry !== 'object' || entry === null) throw new SafetensorsHeaderError(`${where}tensor '${name}': header entry must be an object`);
    const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
    if (typeof dtype !== 'string') throw new SafetensorsHeaderError(`${where}tensor '${name}': missing dtype`);
    if (!Array.isArray(shape) || !shape.every(isNonNegativeInteger)) {
      throw new SafetensorsHeaderError(`${where}tensor '${name}': shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeInteger) || offsets[0] > offsets[1]) {
      throw new SafetensorsHeaderError(`${where}tensor '${name}': data_offsets must be [begin, end] with 0 <= begin <= end, got ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    const elementBytes = DTYPE_BYTES[dtype];
    const included = options.include ? options.include(name) : true;
    if (included && dtype !== 'F32' && dtype !== 'F16' && dtype !== 'BF16') {
      throw new UnsupportedDtypeError(dtype, name, options.fileName);
    }
    if (elementBytes !== undefined && end - begin !== product(shape) * elementBytes) {
      throw new SafetensorsHeaderError(
        `${where}tensor '${name}': data_offsets span ${end - begin} bytes but ${dtype} ${JSON.stringify(shape)} needs ${product(shape) * elementBytes}`,
      );
    }
    if (end > data.byteLength) {
      throw new SafetensorsTruncatedError(`${where}tensor '${name}' ends at data byte ${end} but the file holds only ${data.byteLength} data bytes`);
    }
    spans.push({ name, begin, end });
    if (included) toDecode.push({ name, dtype, shape: shape as number[], begin, end });
    else skipped.push(name);
  }

  spans.sort((x, y) => x.begin - y.begin || x.end - y.end);
  for (let i = 1; i < spans.length; i++) {
    if (spans[i].begin < spans[i - 1].end) {
      throw new SafetensorsHeaderError(`${where}tensors '${spans[i - 1].name}' and '${spans[i].name}' overlap in the data section`);
    }
  }

  const tensors = new Map<string, DecodedTensor>();
  for (const t of toDecode) {
    const dtype = t.dtype as FloatDtype;
    tensors.set(t.name, { dtype, shape: t.shape, data: decode(data.subarray(t.begin, t.end), dtype, product(t.shape)) });
  }
  return { tensors, metadata, skipped };
}

// ---------------------------------------------------------------------------------------------------------------
// Writing

function encode(data: Float32Array, dtype: FloatDtype, out: Uint8Array): void {
  if (dtype === 'F32') {
    if (littleEndianHost) {
      out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    } else {
      const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
      for (let i = 0; i < data.length; i++) view.setFloat32(4 * i, data[i], true);
    }
    return;
  }
  const narrow = dtype === 'F16' ? floatToHalfBits : floatToBfloat16Bits;
  for (let i = 0; i < data.length; i++) {
    const bits = narrow(data[i]);
    out[2 * i] = bits & 0xff;
    out[2 * i + 1] = bits >>> 8;
  }
}

export class SafetensorsWriteError extends Error {
  static override readonly name = 'SafetensorsWriteError';
  override readonly name = SafetensorsWriteError.name;
}

/**
 * Serialises tensors as safetensors. Header keys are sorted; data is laid out widest dtype first (then by name)
 * so every tensor starts aligned to its element size, as the reference writer does.
 */
export function serializeSafetensors(
  tensors: Map<string, TensorToWrite> | Record<string, TensorToWrite>,
  metadata?: Record<string, string>,
): Uint8Array {
  const entries = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  const seen = new Set<string>();
  for (const [name, t] of entries) {
    if (name === '__metadata__') throw new SafetensorsWriteError(`'__metadata__' is reserved and cannot name a tensor`);
    if (seen.has(name)) throw new SafetensorsWriteError(`duplicate tensor name '${name}'`);
    seen.add(name);
    const dtype = t.dtype ?? 'F32';
    if (dtype !== 'F32' && dtype !== 'F16' && dtype !== 'BF16') throw new UnsupportedDtypeError(dtype, name);
    if (!t.shape.every(isNonNegativeInteger)) throw new SafetensorsWriteError(`tensor '${name}': bad shape ${JSON.stringify(t.shape)}`);
    if (product(t.shape) !== t.data.length) {
      throw new SafetensorsWriteError(`tensor '${name}': shape ${JSON.stringify(t.shape)} holds ${product(t.shape)} values but data has ${t.data.length}`);
    }
  }

  const layout = entries
    .map(([name, t]) => ({ name, dtype: t.dtype ?? 'F32', tensor: t }))
    .sort((x, y) => DTYPE_BYTES[y.dtype] - DTYPE_BYTES[x.dtype] || (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
  const offsets = new Map<string, [number, number]>();
  let dataBytes = 0;
  for (const item of layout) {
    const size = item.tensor.data.length * DTYPE_BYTES[item.dtype];
    offsets.set(item.name, [dataBytes, dataBytes + size]);
    dataBytes += size;
  }

  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    const sortedMeta: Record<string, string> = {};
    for (const key of Object.keys(metadata).sort()) sortedMeta[key] = String(metadata[key]);
    header.__metadata__ = sortedMeta;
  }
  for (const item of [...layout].sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0))) {
    header[item.name] = { dtype: item.dtype, shape: item.tensor.shape, data_offsets: offsets.get(item.name) };
  }
  const headerJson = utf8Encode(JSON.stringify(header));
  const paddedLength = Math.ceil(headerJson.byteLength / 8) * 8;

  const out = new Uint8Array(8 + paddedLength + dataBytes);
  new DataView(out.buffer).setBigUint64(0, BigInt(paddedLength), true);
  out.set(headerJson, 8);
  out.fill(0x20, 8 + headerJson.byteLength, 8 + paddedLength);
  const dataStart = 8 + paddedLength;
  for (const item of layout) {
    const [begin, end] = offsets.get(item.name)!;
    encode(item.tensor.data, item.dtype, out.subarray(dataStart + begin, dataStart + end));
  }
  return out;
}
