import { describe, expect, it } from 'vitest';
import { createRng } from '../util/random.ts';
import { AdapterShapeError, moduleNames, schemaHash, type Adapter } from '../model/adapter.ts';
import { WireFormatError } from './bytes.ts';
import { CodecRangeError, decodeAdapter, encodeAdapter, encodedAdapterSize, type PayloadCodec } from './codec.ts';
import { float32ToFloat16Bits } from './fp16.ts';
import { makeAdapter } from './test-support.ts';

const small = () => makeAdapter({ nEmbd: 16, nLayer: 2, r: 2, targets: ['attn.c_attn', 'mlp.c_proj'], seed: 7 });

function bitsOf(values: Float32Array): Uint32Array {
  return new Uint32Array(values.buffer, values.byteOffset, values.length);
}

function decodeOk(bytes: Uint8Array): { adapter: Adapter; codec: PayloadCodec } {
  const result = decodeAdapter(bytes);
  if (!result.ok) throw new Error(`expected a valid payload, got ${result.reason}: ${result.detail}`);
  return result;
}

function tensorCount(adapter: Adapter): number {
  return adapter.modules.size * 2;
}

function valueCount(adapter: Adapter): number {
  let n = 0;
  for (const p of adapter.modules.values()) n += p.a.length + p.b.length;
  return n;
}

/** Reference float16 grid built from the IEEE definition, independent of fp16.ts: bits 0..0x7bff → value. */
const positiveHalfValues = (() => {
  const values = new Float64Array(0x7c00);
  for (let bits = 0; bits < 0x7c00; bits++) {
    const e = bits >> 10;
    const m = bits & 0x3ff;
    values[bits] = e === 0 ? m * 2 ** -24 : (1024 + m) * 2 ** (e - 25);
  }
  return values;
})();

/** Nearest float16 by binary search over the grid, ties to the even bit pattern; null when it would overflow. */
function referenceHalfBits(x: number): number | null {
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const magnitude = Math.abs(x);
  if (magnitude >= 65520) return null;
  let lo = 0;
  let hi = 0x7bff;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (positiveHalfValues[mid] <= magnitude) lo = mid;
    else hi = mid;
  }
  if (magnitude >= positiveHalfValues[0x7bff]) return sign | 0x7bff;
  const below = magnitude - positiveHalfValues[lo];
  const above = positiveHalfValues[hi] - magnitude;
  const chosen = below < above ? lo : above < below ? hi : lo % 2 === 0 ? lo : hi;
  return sign | chosen;
}

describe('fp32 codec', () => {
  it('round-trips every bit, including -0, subnormals and the extremes of float32', () => {
    const adapter = small();
    const first = adapter.modules.get(moduleNames(adapter)[0])!;
    first.a.set([-0, 1e-45, -1.17549435e-38, 3.4028234663852886e38, -3.4028234663852886e38, 1 / 3]);
    const decoded = decodeOk(encodeAdapter(adapter, 'fp32'));
    expect(decoded.codec).toBe('fp32');
    expect(moduleNames(decoded.adapter)).toEqual(moduleNames(adapter));
    for (const name of moduleNames(adapter)) {
      const original = adapter.modules.get(name)!;
      const copy = decoded.adapter.modules.get(name)!;
      expect([copy.inDim, copy.outDim]).toEqual([original.inDim, original.outDim]);
      expect(bitsOf(copy.a)).toEqual(bitsOf(original.a));
      expect(bitsOf(copy.b)).toEqual(bitsOf(original.b));
    }
    expect(decoded.adapter.baseModelId).toBe(adapter.baseModelId);
    expect(decoded.adapter.config.r).toBe(adapter.config.r);
    expect(decoded.adapter.config.alpha).toBe(adapter.config.alpha);
    expect(schemaHash(decoded.adapter)).toBe(schemaHash(adapter));
  });

  it('has the size the layout implies: 4 bytes per value plus the header', () => {
    const adapter = small();
    const bytes = encodeAdapter(adapter, 'fp32');
    // Header by hand: magic 4 + version 2 + codec 1 + flags 1 + id (1+15) + r 2 + alpha 8 + target count 1 + two targets (1 + length each)
    // + module count 4 + per module (1 + name + 8).
    let header = 4 + 2 + 1 + 1 + (1 + 'swarm/gpt2-test'.length) + 2 + 8 + 1 + (1 + 'attn.c_attn'.length) + (1 + 'mlp.c_proj'.length) + 4;
    for (const name of adapter.modules.keys()) header += 1 + name.length + 8;
    expect(bytes.length).toBe(header + 4 * valueCount(adapter));
    expect(encodedAdapterSize(adapter, 'fp32')).toBe(bytes.length);
  });

  it('is canonical: module insertion order and target order do not change the bytes', () => {
    const adapter = small();
    const reordered: Adapter = {
      baseModelId: adapter.baseModelId,
      config: { ...adapter.config, targetModules: [...adapter.config.targetModules].reverse() },
      modules: new Map([...adapter.modules].reverse()),
    };
    expect(encodeAdapter(reordered, 'fp32')).toEqual(encodeAdapter(adapter, 'fp32'));
  });
});

describe('fp16 codec', () => {
  it('rounds to the nearest float16, ties to even, matching a reference grid search', () => {
    const random = createRng(11);
    const samples: number[] = [0, -0, 65504, -65504, 65519.99, 2 ** -24, 2 ** -25, 1.5 * 2 ** -25, 2 ** -14, 1 + 2 ** -11, 1 + 3 * 2 ** -11];
    for (let i = 0; i < 20000; i++) {
      const exponent = -30 + random() * 46; // magnitudes 2^-30 .. 2^16, subnormals and normals alike
      samples.push(Math.fround((random() < 0.5 ? -1 : 1) * 2 ** exponent));
    }
    for (const x of samples) {
      const expected = referenceHalfBits(Math.fround(x));
      if (expected === null) {
        expect(float32ToFloat16Bits(x), `x = ${x}`).toBe(-1);
      } else {
        expect(float32ToFloat16Bits(x), `x = ${x}`).toBe(expected);
      }
    }
    // Hand-checked ties: 1 + 2^-11 lies halfway between 1 and 1 + 2^-10 → even (1); 1 + 3·2^-11 → 1 + 2^-9.
    expect(float32ToFloat16Bits(1 + 2 ** -11)).toBe(0x3c00);
    expect(float32ToFloat16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(float32ToFloat16Bits(2 ** -25)).toBe(0x0000);
    expect(float32ToFloat16Bits(1.5 * 2 ** -25)).toBe(0x0001);
  });

  it('decodes within 2^-11 relative error for normal values and 2^-25 absolute below 2^-14', () => {
    const adapter = makeAdapter({ nEmbd: 64, nLayer: 2, seed: 3 });
    const name = moduleNames(adapter)[0];
    adapter.modules.get(name)!.b.set([65504, -65519, 6.1e-5, 3e-8, 1e-9]);
    const decoded = decodeOk(encodeAdapter(adapter, 'fp16')).adapter;
    let checked = 0;
    for (const n of moduleNames(adapter)) {
      for (const key of ['a', 'b'] as const) {
        const x = adapter.modules.get(n)![key];
        const y = decoded.modules.get(n)![key];
        for (let i = 0; i < x.length; i++) {
          // Round to nearest: half an ulp, i.e. 2^-11 relative for normals; half the subnormal step 2^-24 below.
          const bound = Math.abs(x[i]) >= 2 ** -14 ? Math.abs(x[i]) * 2 ** -11 : 2 ** -25;
          expect(Math.abs(y[i] - x[i])).toBeLessThanOrEqual(bound);
          checked++;
        }
      }
    }
    expect(checked).toBe(valueCount(adapter));
  });

  it('refuses values beyond float16 range with CodecRangeError instead of writing Infinity', () => {
    const adapter = small();
    adapter.modules.get(moduleNames(adapter)[1])!.a[3] = 65520;
    expect(() => encodeAdapter(adapter, 'fp16')).toThrow(CodecRangeError);
    adapter.modules.get(moduleNames(adapter)[1])!.a[3] = -70000;
    expect(() => encodeAdapter(adapter, 'fp16')).toThrow(/beyond float16/);
    expect(encodeAdapter(adapter, 'fp32').length).toBeGreaterThan(0);
  });
});

describe('int8 codec', () => {
  it('decodes each tensor within scale/2 of the original, scale = maxabs/127', () => {
    const adapter = makeAdapter({ nEmbd: 64, nLayer: 3, seed: 5 });
    const decoded = decodeOk(encodeAdapter(adapter, 'int8')).adapter;
    for (const n of moduleNames(adapter)) {
      for (const key of ['a', 'b'] as const) {
        const x = adapter.modules.get(n)![key];
        const y = decoded.modules.get(n)![key];
        let maxAbs = 0;
        for (const v of x) maxAbs = Math.max(maxAbs, Math.abs(v));
        const scale = maxAbs / 127;
        for (let i = 0; i < x.length; i++) {
          // scale/2 from rounding; the stored float32 scale differs from maxabs/127 by ≤ 2^-24 relative, times
          // |q| ≤ 127; the decoded product is rounded to float32 (≤ 2^-24 relative).
          const bound = scale / 2 + 127 * scale * 2 ** -24 + Math.abs(y[i]) * 2 ** -24;
          expect(Math.abs(y[i] - x[i])).toBeLessThanOrEqual(bound);
        }
        // The largest magnitude is reproduced (it sits at q = ±127).
        let maxDecoded = 0;
        for (const v of y) maxDecoded = Math.max(maxDecoded, Math.abs(v));
        expect(Math.abs(maxDecoded - maxAbs)).toBeLessThanOrEqual(maxAbs * 2 ** -22);
      }
    }
  });

  it('encodes an all-zero tensor as scale 0 and decodes it to zeros', () => {
    const adapter = small();
    const pair = adapter.modules.get(moduleNames(adapter)[0])!;
    pair.b.fill(0);
    const decoded = decodeOk(encodeAdapter(adapter, 'int8')).adapter;
    expect([...decoded.modules.get(moduleNames(adapter)[0])!.b].every((v) => v === 0)).toBe(true);
  });

  it('cuts bytes at least 3.5x against fp32 on a GPT-2-small-shaped rank-8 adapter (fp16 about 2x)', () => {
    const adapter = makeAdapter();
    const fp32 = encodeAdapter(adapter, 'fp32').length;
    const fp16 = encodeAdapter(adapter, 'fp16').length;
    const int8 = encodeAdapter(adapter, 'int8').length;
    // 12 layers × (c_attn 8·768 + 2304·8, c_proj 8·768 + 768·8) = 442,368 values.
    expect(valueCount(adapter)).toBe(442_368);
    const header = fp32 - 4 * 442_368;
    expect(fp16).toBe(header + 2 * 442_368);
    expect(int8).toBe(header + 442_368 + 4 * tensorCount(adapter));
    expect(fp32 / int8).toBeGreaterThanOrEqual(3.5);
    expect(fp32 / fp16).toBeGreaterThan(1.99);
  });
});

describe('encodeAdapter refusals', () => {
  it('refuses NaN or Infinity for every codec with CodecRangeError', () => {
    for (const codec of ['fp32', 'fp16', 'int8'] as const) {
      const adapter = small();
      adapter.modules.get(moduleNames(adapter)[0])!.a[0] = codec === 'int8' ? Infinity : NaN;
      expect(() => encodeAdapter(adapter, codec)).toThrow(CodecRangeError);
    }
  });

  it('refuses arrays that disagree with their dims, and names the format cannot carry', () => {
    const adapter = small();
    adapter.modules.get(moduleNames(adapter)[0])!.a = new Float32Array(3);
    expect(() => encodeAdapter(adapter, 'fp32')).toThrow(AdapterShapeError);
    const badName = small();
    const pair = badName.modules.get(moduleNames(badName)[0])!;
    badName.modules.set('transformer.h.0.attn.c_attn\u00e9', pair);
    expect(() => encodeAdapter(badName, 'fp32')).toThrow(WireFormatError);
    const badTarget = small();
    badTarget.modules.set('transformer.h.0.lm_head', pair);
    expect(() => encodeAdapter(badTarget, 'fp32')).toThrow(/matches none of the target modules/);
  });
});

/** Offsets of the fixed-position header fields (magic 4 bytes, then version, codec, flags). */
const VERSION_OFFSET = 4;
const CODEC_OFFSET = 6;
const FLAGS_OFFSET = 7;
const BASE_ID_OFFSET = 8;

function moduleCountOffset(adapter: Adapter): number {
  let offset = BASE_ID_OFFSET + 1 + adapter.baseModelId.length + 2 + 8 + 1;
  for (const t of adapter.config.targetModules) offset += 1 + t.length;
  return offset;
}

function rejectionOf(bytes: Uint8Array, limits?: Parameters<typeof decodeAdapter>[1]): string {
  const result = decodeAdapter(bytes, limits);
  return result.ok ? 'accepted' : result.reason;
}

describe('decodeAdapter rejections', () => {
  const adapter = small();
  const valid = encodeAdapter(adapter, 'fp32');
  const patched = (edit: (bytes: Uint8Array, view: DataView) => void, source = valid) => {
    const copy = source.slice();
    edit(copy, new DataView(copy.buffer));
    return copy;
  };

  it('accepts the untouched payload (the baseline every case below departs from)', () => {
    expect(rejectionOf(valid)).toBe('accepted');
  });

  it('names each defect', () => {
    expect(rejectionOf(patched((b) => (b[0] = 0x00)))).toBe('malformed');
    expect(rejectionOf(patched((_, v) => v.setUint16(VERSION_OFFSET, 2, true)))).toBe('unknown-version');
    expect(rejectionOf(patched((b) => (b[CODEC_OFFSET] = 9)))).toBe('malformed');
    expect(rejectionOf(patched((b) => (b[FLAGS_OFFSET] = 1)))).toBe('malformed');
    expect(rejectionOf(valid.subarray(0, valid.length - 1))).toBe('truncated');
    expect(rejectionOf(valid.subarray(0, 3))).toBe('truncated');
    expect(rejectionOf(new Uint8Array(0))).toBe('truncated');
    const extended = new Uint8Array(valid.length + 1);
    extended.set(valid);
    expect(rejectionOf(extended)).toBe('malformed');
    expect(rejectionOf(valid, { maxBytes: valid.length - 1 })).toBe('oversized');
    expect(rejectionOf(valid, { expectSchemaHash: '0'.repeat(32) })).toBe('schema-mismatch');
    expect(rejectionOf(valid, { expectSchemaHash: schemaHash(adapter) })).toBe('accepted');
    // The last 4 bytes are the last float of the last lora_B.
    expect(rejectionOf(patched((_, v) => v.setUint32(valid.length - 4, 0x7fc00000, true)))).toBe('non-finite');
    expect(rejectionOf(patched((_, v) => v.setUint32(valid.length - 4, 0xff800000, true)))).toBe('non-finite');
  });

  it('refuses huge declared counts and dims without allocating for them', () => {
    const countAt = moduleCountOffset(adapter);
    expect(rejectionOf(patched((_, v) => v.setUint32(countAt, 0xffffffff, true)))).toBe('malformed');
    expect(rejectionOf(patched((_, v) => v.setUint32(countAt, 4000, true)))).toBe('truncated');
    const firstName = moduleNames(adapter)[0];
    const inDimAt = countAt + 4 + 1 + firstName.length;
    expect(rejectionOf(patched((_, v) => v.setUint32(inDimAt, 0xffffffff, true)))).toBe('malformed');
    expect(rejectionOf(patched((_, v) => v.setUint32(inDimAt, 60000, true)))).toBe('truncated');
    expect(rejectionOf(patched((_, v) => v.setUint32(inDimAt, 0, true)))).toBe('malformed');
    expect(rejectionOf(patched((b) => (b[BASE_ID_OFFSET] = 255)))).not.toBe('accepted');
  });

  it('refuses an unsorted module order, so every adapter has one encoding', () => {
    const countAt = moduleCountOffset(adapter);
    const firstNameAt = countAt + 5;
    // 'transformer.h.0…' → 'transformer.h.9…' sorts after the second module 'transformer.h.0.mlp.c_proj'.
    const digitAt = firstNameAt + 'transformer.h.'.length;
    expect(String.fromCharCode(valid[digitAt])).toBe('0');
    expect(rejectionOf(patched((b) => (b[digitAt] = '9'.charCodeAt(0))))).toBe('malformed');
  });

  it('refuses float16 Inf/NaN patterns and non-canonical or overflowing int8 tensors', () => {
    const half = encodeAdapter(adapter, 'fp16');
    expect(rejectionOf(patched((_, v) => v.setUint16(half.length - 2, 0x7c00, true), half))).toBe('non-finite');
    expect(rejectionOf(patched((_, v) => v.setUint16(half.length - 2, 0xfe01, true), half))).toBe('non-finite');

    const int8 = encodeAdapter(adapter, 'int8');
    const lastPair = adapter.modules.get(moduleNames(adapter).at(-1)!)!;
    const lastScaleAt = int8.length - lastPair.b.length - 4;
    expect(rejectionOf(patched((_, v) => v.setFloat32(lastScaleAt, Infinity, true), int8))).toBe('non-finite');
    expect(rejectionOf(patched((_, v) => v.setFloat32(lastScaleAt, 3e38, true), int8))).toBe('non-finite');
    expect(rejectionOf(patched((_, v) => v.setFloat32(lastScaleAt, -1, true), int8))).toBe('malformed');
    expect(rejectionOf(patched((b) => (b[int8.length - 1] = 0x80), int8))).toBe('malformed');
    // Divide every q by two: no value sits at ±127 any more, which the encoder never produces.
    expect(
      rejectionOf(patched((b) => {
        for (let i = int8.length - lastPair.b.length; i < int8.length; i++) b[i] = (((b[i] << 24) >> 24) >> 1) & 0xff;
      }, int8)),
    ).toBe('malformed');
  });

  it('returns a rejection, not an exception, for inputs that are not bytes', () => {
    expect(rejectionOf('SWAD' as unknown as Uint8Array)).toBe('malformed');
    expect(rejectionOf(null as unknown as Uint8Array)).toBe('malformed');
  });
});
