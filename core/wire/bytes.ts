/**
 * Byte helpers for the wire formats. Reading is bounds-checked: a read past the end raises WireTruncation,
 * which the decoders catch at their boundary and turn into a 'truncated' verdict.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';

/** A value handed to an encoder cannot be written in the wire format (a bad id, a too-long name, a bad count). */
export class WireFormatError extends Error {
  static override readonly name = 'WireFormatError';
  override readonly name = WireFormatError.name;
}

/** Internal signal of a read past the end of the input; never escapes a decoder. */
export class WireTruncation extends Error {
  static override readonly name = 'WireTruncation';
  override readonly name = WireTruncation.name;
}

export function sha256Hex(bytes: Uint8Array): string {
  return bytesToHex(sha256(bytes));
}

/** Printable ASCII (0x20..0x7e) only; throws WireFormatError otherwise. */
export function asciiToBytes(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) throw new WireFormatError(`non-printable-ASCII character (code ${c}) at index ${i} of a wire string`);
    out[i] = c;
  }
  return out;
}

/**
 * Decodes printable ASCII; returns null on any other byte. `allowLayoutWhitespace` also admits tab, LF and CR
 * (for hand-edited JSON files). No Unicode on the wire means no confusable ids and no invalid UTF-8 to handle.
 */
export function bytesToAscii(bytes: Uint8Array, allowLayoutWhitespace = false): string | null {
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i];
    if (c >= 0x20 && c <= 0x7e) continue;
    if (allowLayoutWhitespace && (c === 0x09 || c === 0x0a || c === 0x0d)) continue;
    return null;
  }
  let text = '';
  const chunk = 8192;
  for (let i = 0; i < bytes.length; i += chunk) {
    text += String.fromCharCode(...bytes.subarray(i, i + chunk));
  }
  return text;
}

/** Little-endian writer that grows as needed. */
export class ByteWriter {
  private buffer = new Uint8Array(256);
  private view = new DataView(this.buffer.buffer);
  private length = 0;

  private reserve(extra: number): number {
    const start = this.length;
    const needed = start + extra;
    if (needed > this.buffer.length) {
      let capacity = this.buffer.length * 2;
      while (capacity < needed) capacity *= 2;
      const grown = new Uint8Array(capacity);
      grown.set(this.buffer.subarray(0, start));
      this.buffer = grown;
      this.view = new DataView(grown.buffer);
    }
    this.length = needed;
    return start;
  }

  u8(value: number): void {
    const at = this.reserve(1);
    this.view.setUint8(at, value);
  }
  u16(value: number): void {
    const at = this.reserve(2);
    this.view.setUint16(at, value, true);
  }
  u32(value: number): void {
    const at = this.reserve(4);
    this.view.setUint32(at, value, true);
  }
  f32(value: number): void {
    const at = this.reserve(4);
    this.view.setFloat32(at, value, true);
  }
  f64(value: number): void {
    const at = this.reserve(8);
    this.view.setFloat64(at, value, true);
  }
  bytes(data: Uint8Array): void {
    // reserve() may replace the buffer, so it must run before this.buffer is read.
    const start = this.reserve(data.length);
    this.buffer.set(data, start);
  }
  /** One length byte, then printable ASCII. */
  shortAscii(text: string): void {
    const encoded = asciiToBytes(text);
    if (encoded.length > 255) throw new WireFormatError(`wire string of ${encoded.length} characters exceeds 255`);
    this.u8(encoded.length);
    this.bytes(encoded);
  }
  get size(): number {
    return this.length;
  }
  finish(): Uint8Array {
    return this.buffer.slice(0, this.length);
  }
}

/** Little-endian reader; every read checks bounds and raises WireTruncation past the end. */
export class ByteReader {
  private readonly view: DataView;
  offset = 0;

  constructor(private readonly data: Uint8Array) {
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  }

  get remaining(): number {
    return this.data.length - this.offset;
  }

  private take(count: number, what: string): number {
    if (count > this.remaining) {
      throw new WireTruncation(`input ends at byte ${this.data.length} while reading ${what} (needs ${count} bytes at offset ${this.offset})`);
    }
    const start = this.offset;
    this.offset += count;
    return start;
  }

  u8(what: string): number {
    return this.view.getUint8(this.take(1, what));
  }
  u16(what: string): number {
    return this.view.getUint16(this.take(2, what), true);
  }
  u32(what: string): number {
    return this.view.getUint32(this.take(4, what), true);
  }
  f32(what: string): number {
    return this.view.getFloat32(this.take(4, what), true);
  }
  f64(what: string): number {
    return this.view.getFloat64(this.take(8, what), true);
  }
  /** A view (not a copy) of the next `count` bytes. */
  bytes(count: number, what: string): Uint8Array {
    const start = this.take(count, what);
    return this.data.subarray(start, start + count);
  }
  /** One length byte, then printable ASCII; null when a byte is not printable ASCII. */
  shortAscii(what: string): string | null {
    const length = this.u8(`${what} length`);
    return bytesToAscii(this.bytes(length, what));
  }
}
