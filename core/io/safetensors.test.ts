import { describe, expect, it } from 'vitest';
import {
  floatToBfloat16Bits,
  floatToHalfBits,
  halfBitsToFloat,
  parseSafetensors,
  SafetensorsHeaderError,
  SafetensorsTruncatedError,
  serializeSafetensors,
  UnsupportedDtypeError,
} from './safetensors.ts';

/** Builds a safetensors file by hand from the spec: u64 LE header length, raw JSON text, raw data bytes. */
function assemble(headerText: string, data: number[]): Uint8Array {
  const header = Buffer.from(headerText, 'utf8');
  const out = new Uint8Array(8 + header.length + data.length);
  const n = header.length;
  for (let i = 0; i < 8; i++) out[i] = Math.floor(n / 256 ** i) % 256;
  out.set(header, 8);
  out.set(data, 8 + header.length);
  return out;
}

function bitsOf(values: Float32Array): number[] {
  return [...new Uint32Array(values.buffer, values.byteOffset, values.length)];
}

describe('parseSafetensors on a hand-assembled file', () => {
  // Header length 162 is not a multiple of 4, so the F32 tensor sits unaligned in the file buffer.
  const header =
    '{"__metadata__":{"format":"pt"},' +
    '"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},' +
    '"h":{"dtype":"F16","shape":[1,3],"data_offsets":[8,14]},' +
    '"b":{"dtype":"BF16","shape":[],"data_offsets":[14,16]}}';
  const data = [
    0x00, 0x00, 0x80, 0x3f, // F32 1.0 = 0x3f800000
    0x00, 0x00, 0x20, 0xc0, // F32 -2.5 = 0xc0200000
    0x00, 0x3c, // F16 1.0
    0x01, 0x00, // F16 smallest subnormal 2^-24
    0x00, 0xfc, // F16 -inf
    0x49, 0x40, // BF16 0x4049 = 3.140625
  ];

  it('decodes every dtype and the metadata', () => {
    const parsed = parseSafetensors(assemble(header, data));
    expect(parsed.metadata).toEqual({ format: 'pt' });
    const w = parsed.tensors.get('w')!;
    expect(w.dtype).toBe('F32');
    expect(w.shape).toEqual([2]);
    expect([...w.data]).toEqual([1, -2.5]);
    const h = parsed.tensors.get('h')!;
    expect(h.dtype).toBe('F16');
    expect(h.shape).toEqual([1, 3]);
    expect([...h.data]).toEqual([1, 2 ** -24, -Infinity]);
    const b = parsed.tensors.get('b')!;
    expect(b.shape).toEqual([]);
    expect([...b.data]).toEqual([3.140625]);
  });

  it('parses a file given as a view into a larger buffer', () => {
    const file = assemble(header, data);
    const bigger = new Uint8Array(file.length + 5);
    bigger.set(file, 3);
    const parsed = parseSafetensors(bigger.subarray(3, 3 + file.length));
    expect([...parsed.tensors.get('w')!.data]).toEqual([1, -2.5]);
  });

  it('skips tensors that include() rejects without checking their dtype', () => {
    const withMask = assemble('{"mask":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]},"x":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}}', [
      1, 0, 0, 0, 0x80, 0x3f,
    ]);
    const parsed = parseSafetensors(withMask, { include: (name) => name !== 'mask' });
    expect([...parsed.tensors.keys()]).toEqual(['x']);
    expect([...parsed.tensors.get('x')!.data]).toEqual([1]);
  });
});

describe('half-precision conversions', () => {
  it('widens half values exactly', () => {
    const cases: [number, number][] = [
      [0x0000, 0], [0x3c00, 1], [0xc000, -2], [0x3800, 0.5], [0x7bff, 65504], [0x0400, 2 ** -14],
      [0x03ff, 1023 * 2 ** -24], [0x0001, 2 ** -24], [0x3555, 0.333251953125], [0x7c00, Infinity], [0xfc00, -Infinity],
    ];
    for (const [bits, value] of cases) expect(halfBitsToFloat(bits)).toBe(value);
    expect(Object.is(halfBitsToFloat(0x8000), -0)).toBe(true);
    expect(halfBitsToFloat(0x7e00)).toBeNaN();
  });

  it('narrows to half with round-to-nearest-even', () => {
    const cases: [number, number][] = [
      [1, 0x3c00],
      [1 + 2 ** -11, 0x3c00], // tie between 1 (even) and 1+2^-10 → 1
      [1 + 3 * 2 ** -11, 0x3c02], // tie between 1+2^-10 (odd) and 1+2^-9 → up
      [1 + 2 ** -11 + 2 ** -20, 0x3c01], // just above the tie → up
      [65504, 0x7bff],
      [65519, 0x7bff], // below the tie with 65536
      [65520, 0x7c00], // tie: 65504 has an odd mantissa → rounds to infinity
      [1e6, 0x7c00],
      [-1e6, 0xfc00],
      [2 ** -25, 0x0000], // tie between 0 (even) and 2^-24 → 0
      [1.5 * 2 ** -25, 0x0001],
      [3 * 2 ** -25, 0x0002], // tie between 1 and 2 units → 2
      [1023.5 * 2 ** -24, 0x0400], // rounds up out of the subnormals into the smallest normal
      [1e-8, 0x0000],
      [-0, 0x8000],
      [Infinity, 0x7c00],
    ];
    for (const [value, bits] of cases) expect(floatToHalfBits(value), `f16(${value})`).toBe(bits);
    const nanBits = floatToHalfBits(NaN);
    expect(nanBits & 0x7c00).toBe(0x7c00);
    expect(nanBits & 0x3ff).not.toBe(0);
  });

  it('narrows to bfloat16 with round-to-nearest-even', () => {
    const cases: [number, number][] = [
      [1, 0x3f80],
      [3.140625, 0x4049],
      [1 + 2 ** -8, 0x3f80], // tie → even
      [1 + 3 * 2 ** -8, 0x3f82], // tie → even (up)
      [1 + 2 ** -8 + 2 ** -20, 0x3f81],
      [-2, 0xc000],
      [3.4e38, 0x7f80], // beyond the largest bf16 (≈3.39e38) after rounding → inf
      [-0, 0x8000],
    ];
    for (const [value, bits] of cases) expect(floatToBfloat16Bits(value), `bf16(${value})`).toBe(bits);
    expect(floatToBfloat16Bits(NaN) & 0x7f).not.toBe(0);
  });
});

describe('serializeSafetensors', () => {
  it('round-trips F32 bit-exactly, including NaN payloads, signed zero and denormals', () => {
    const bits = new Uint32Array([0x7fc01234, 0x80000000, 0x00000001, 0x3f800000, 0xff800000, 0x12345678]);
    const data = new Float32Array(bits.buffer);
    const file = serializeSafetensors({ x: { shape: [2, 3], data } });
    const back = parseSafetensors(file).tensors.get('x')!;
    expect(back.dtype).toBe('F32');
    expect(back.shape).toEqual([2, 3]);
    expect(bitsOf(back.data)).toEqual([...bits]);
  });

  it('round-trips exactly representable F16 and BF16 values bit-exactly', () => {
    const half = new Float32Array([0, -0, 1, -2, 0.5, 65504, 2 ** -24, 1023 * 2 ** -24, 0.333251953125, Infinity, -Infinity]);
    const brain = new Float32Array([1, -2, 3.140625, 2 ** -126, 2 ** -133, 1.5 * 2 ** 100, -Infinity]);
    const file = serializeSafetensors(
      new Map([
        ['half', { dtype: 'F16' as const, shape: [half.length], data: half }],
        ['brain', { dtype: 'BF16' as const, shape: [brain.length], data: brain }],
      ]),
    );
    const parsed = parseSafetensors(file);
    expect(bitsOf(parsed.tensors.get('half')!.data)).toEqual(bitsOf(half));
    expect(bitsOf(parsed.tensors.get('brain')!.data)).toEqual(bitsOf(brain));
    expect(parsed.tensors.get('half')!.dtype).toBe('F16');
    expect(parsed.tensors.get('brain')!.dtype).toBe('BF16');
  });

  it('rounds when storing as F16/BF16', () => {
    const values = new Float32Array([1 + 3 * 2 ** -11, 1 + 2 ** -8 + 2 ** -20]);
    const file = serializeSafetensors({
      h: { dtype: 'F16', shape: [1], data: values.subarray(0, 1) },
      b: { dtype: 'BF16', shape: [1], data: values.subarray(1, 2) },
    });
    const parsed = parseSafetensors(file);
    expect(parsed.tensors.get('h')!.data[0]).toBe(1 + 2 ** -9);
    expect(parsed.tensors.get('b')!.data[0]).toBe(1 + 2 ** -7);
  });

  it('writes the standard layout: LE header length, sorted keys, space padding to 8 bytes, aligned data', () => {
    const file = serializeSafetensors(
      { zeta: { dtype: 'F16', shape: [1], data: new Float32Array([1]) }, alpha: { shape: [1], data: new Float32Array([2]) } },
      { format: 'pt' },
    );
    const n = Number(new DataView(file.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    const text = Buffer.from(file.subarray(8, 8 + n)).toString('utf8');
    expect(text.trimEnd().length).toBeLessThanOrEqual(n);
    expect(/^ *$/.test(text.slice(text.trimEnd().length))).toBe(true);
    const header = JSON.parse(text);
    expect(Object.keys(header)).toEqual(['__metadata__', 'alpha', 'zeta']);
    expect(header.__metadata__).toEqual({ format: 'pt' });
    // The 4-byte tensor goes first so it is aligned; the 2-byte one follows.
    expect(header.alpha).toEqual({ dtype: 'F32', shape: [1], data_offsets: [0, 4] });
    expect(header.zeta).toEqual({ dtype: 'F16', shape: [1], data_offsets: [4, 6] });
    expect([...file.subarray(8 + n)]).toEqual([0x00, 0x00, 0x00, 0x40, 0x00, 0x3c]);
  });
});

describe('named errors', () => {
  const good = serializeSafetensors({ x: { shape: [4], data: new Float32Array([1, 2, 3, 4]) } });

  it('SafetensorsTruncatedError for a file shorter than its header length, its header, or its data', () => {
    expect(() => parseSafetensors(good.subarray(0, 5))).toThrow(SafetensorsTruncatedError);
    expect(() => parseSafetensors(good.subarray(0, 12))).toThrow(SafetensorsTruncatedError);
    expect(() => parseSafetensors(good.subarray(0, good.length - 1))).toThrow(/ends at data byte 16/);
    try {
      parseSafetensors(good.subarray(0, good.length - 1));
    } catch (error) {
      expect((error as Error).name).toBe('SafetensorsTruncatedError');
    }
  });

  it('SafetensorsHeaderError for bad JSON, inconsistent offsets and overlaps', () => {
    expect(() => parseSafetensors(assemble('{"x": nope}', []))).toThrow(SafetensorsHeaderError);
    expect(() => parseSafetensors(assemble('[1,2]', []))).toThrow(SafetensorsHeaderError);
    expect(() => parseSafetensors(assemble('{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', [0, 0, 0, 0]))).toThrow(
      /needs 8/,
    );
    expect(() => parseSafetensors(assemble('{"x":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}', [0, 0, 0, 0]))).toThrow(
      SafetensorsHeaderError,
    );
    expect(() =>
      parseSafetensors(
        assemble('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', [0, 0, 0, 0, 0, 0, 0, 0]),
      ),
    ).toThrow(/overlap/);
    const hugeHeader = new Uint8Array(16);
    hugeHeader[6] = 1; // header length 2^48
    expect(() => parseSafetensors(hugeHeader)).toThrow(SafetensorsHeaderError);
    expect(() => parseSafetensors(assemble('{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"__metadata__":{"k":1}}', [0, 0, 0, 0]))).toThrow(
      SafetensorsHeaderError,
    );
  });

  it('UnsupportedDtypeError names the dtype and the tensor', () => {
    const file = assemble('{"ids":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}', [1, 0, 0, 0, 0, 0, 0, 0]);
    expect(() => parseSafetensors(file)).toThrow(UnsupportedDtypeError);
    expect(() => parseSafetensors(file)).toThrow(/'ids' has dtype I64/);
    const f64 = assemble('{"d":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}', [0, 0, 0, 0, 0, 0, 0xf0, 0x3f]);
    try {
      parseSafetensors(f64, { fileName: 'model.safetensors' });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(UnsupportedDtypeError);
      expect((error as UnsupportedDtypeError).dtype).toBe('F64');
      expect((error as UnsupportedDtypeError).tensorName).toBe('d');
      expect((error as Error).message).toContain('model.safetensors');
    }
  });
});

describe('F16 narrowing against a naive reference', () => {
  // Reference: the nearest of all finite half values (found by search over the widened table), ties to the even
  // bit pattern, overflow past 65520 to infinity — written from the definition, not from the bit tricks.
  const finite: { value: number; bits: number }[] = [];
  for (let bits = 0; bits < 0x7c00; bits++) finite.push({ value: halfBitsToFloat(bits), bits });
  function referenceHalf(x: number): number {
    const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
    const a = Math.abs(x);
    if (a >= 65520) return sign | 0x7c00;
    let lo = 0;
    let hi = finite.length - 1;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (finite[mid].value <= a) lo = mid;
      else hi = mid;
    }
    const below = finite[lo];
    const above = finite[hi];
    const dBelow = a - below.value;
    const dAbove = above.value - a;
    if (dBelow < dAbove) return sign | below.bits;
    if (dAbove < dBelow) return sign | above.bits;
    return sign | ((below.bits & 1) === 0 ? below.bits : above.bits);
  }

  it('agrees on 100k random float32 values across the whole half range', () => {
    let s = 99;
    const rand = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32);
    const x = new Float32Array(1);
    const mismatches: string[] = [];
    for (let i = 0; i < 100_000; i++) {
      x[0] = (rand() - 0.5) * 2 ** Math.floor(rand() * 50 - 30);
      const got = floatToHalfBits(x[0]);
      const want = referenceHalf(x[0]);
      if (got !== want) mismatches.push(`${x[0]}: got ${got.toString(16)}, want ${want.toString(16)}`);
    }
    expect(mismatches).toEqual([]);
  });
});

describe('hostile safetensors headers (issue 12)', () => {
  it('refuses a tensor name given twice instead of letting the last one win', () => {
    const text = '{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}';
    expect(() => parseSafetensors(assemble(text, [0, 0, 128, 63, 0, 0, 0, 64]))).toThrow(SafetensorsHeaderError);
    expect(() => parseSafetensors(assemble(text, [0, 0, 128, 63, 0, 0, 0, 64]))).toThrow(/names 'w' twice/);
    // A key repeated inside one entry as well, and an escaped spelling of the same name.
    const inner = '{"w":{"dtype":"F32","dtype":"F16","shape":[1],"data_offsets":[0,4]}}';
    expect(() => parseSafetensors(assemble(inner, [0, 0, 128, 63]))).toThrow(/names 'w\.dtype' twice/);
    const escaped = '{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"\\u0077":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}';
    expect(() => parseSafetensors(assemble(escaped, [0, 0, 128, 63, 0, 0, 0, 64]))).toThrow(/names 'w' twice/);
  });

  it('refuses a header beyond the cap (8 MiB by default, or the caller\u2019s) before decoding it', () => {
    const claims100MB = new Uint8Array(16);
    new DataView(claims100MB.buffer).setBigUint64(0, 100_000_000n, true);
    expect(() => parseSafetensors(claims100MB)).toThrow(/header length 100000000 exceeds the 8388608-byte limit/);
    const padded = assemble(`{}${' '.repeat(2 * 1024 * 1024)}`, []);
    expect(() => parseSafetensors(padded, { maxHeaderBytes: 1024 * 1024 })).toThrow(/exceeds the 1048576-byte limit/);
    expect(parseSafetensors(padded).tensors.size).toBe(0);
  });
});
