// Sparse deltas (issue 13, item 4): the codec's layout and strictness, top-k, error feedback, and the stream's
// version rule, on hand-computed cases.
import { describe, expect, it } from 'vitest';
import { schemaHash, type Adapter } from '../model/adapter.ts';
import { encodeAdapter, expectedPayloadBytes } from './codec.ts';
import { DeltaReceiver, DeltaSender } from './delta-stream.ts';
import {
  decodeSparseDelta,
  encodeSparseDelta,
  flattenAdapter,
  selectTopK,
  sparseLayout,
  SPARSE_HEADER_BYTES,
  SPARSE_MAX_SCALE,
  type SparseConfig,
} from './sparse-delta.ts';

/** r = 1, 16 → 16: lora_A and lora_B have 16 values each, so with chunk 16 each tensor is one chunk. */
function square(a: Record<number, number> = {}, b: Record<number, number> = {}): Adapter {
  const A = new Float32Array(16);
  const B = new Float32Array(16);
  for (const [i, v] of Object.entries(a)) A[Number(i)] = v;
  for (const [i, v] of Object.entries(b)) B[Number(i)] = v;
  return {
    baseModelId: 'test/square',
    config: { r: 1, alpha: 2, targetModules: ['attn.c_attn'] },
    modules: new Map([['transformer.h.0.attn.c_attn', { a: A, b: B, inDim: 16, outDim: 16 }]]),
  };
}

/** The 6 → 9 rank-3 module of attacks.test.ts: A has 18 values, B 27, so chunks of 16 leave partial chunks. */
function tiny(values: (i: number) => number = (i) => Math.sin(i + 1)): Adapter {
  return {
    baseModelId: 'test/tiny',
    config: { r: 3, alpha: 6, targetModules: ['attn.c_attn'] },
    modules: new Map([['transformer.h.0.attn.c_attn', { a: Float32Array.from({ length: 18 }, (_, i) => values(i)), b: Float32Array.from({ length: 27 }, (_, i) => values(18 + i)), inDim: 6, outDim: 9 }]]),
  };
}

const CHUNK16: SparseConfig = { chunk: 16, keep: 2, keyframeEvery: 100 };

describe('sparse layout', () => {
  it('is fixed by the schema and the config, hand-counted for the 18 + 27 value module', () => {
    const layout = sparseLayout(tiny(), CHUNK16);
    // A: chunks of 16 and 2 values keep 2 and ceil(2·2/16) = 1; B: 16 and 11 keep 2 and ceil(2·11/16) = 2.
    expect([...layout.chunkStart]).toEqual([0, 16, 18, 34]);
    expect([...layout.chunkLength]).toEqual([16, 2, 16, 11]);
    expect([...layout.chunkKeep]).toEqual([2, 1, 2, 2]);
    expect(layout.keptTotal).toBe(7);
    // 40 header bytes + 4 scales of 4 bytes + 7 kept entries of 2 bytes (offset, value).
    expect(SPARSE_HEADER_BYTES).toBe(40);
    expect(layout.payloadBytes).toBe(40 + 16 + 14);
  });

  it('costs 20 bytes per 256 values at the default 8 of 256: 25.6x below fp16 on the default model\u2019s shapes', () => {
    // Four modules of the default model's width (128), rank 8: 4 layers' worth of c_attn, c_proj, c_fc, mlp.c_proj.
    const shape = { baseModelId: 'm', config: { r: 8, alpha: 16, targetModules: ['attn.c_attn'] }, modules: new Map([['h.0.attn.c_attn', { inDim: 128, outDim: 384 }]]) };
    const layout = sparseLayout(shape, { chunk: 256, keep: 8, keyframeEvery: 16 });
    // 1024 + 3072 values = 16 chunks of 256, each 4 + 2·8 = 20 bytes.
    expect(layout.payloadBytes).toBe(40 + 16 * 20);
    expect(expectedPayloadBytes(shape, 'fp16') - 40).toBeGreaterThan(2 * 4096);
  });
});

describe('top-k', () => {
  it('keeps the largest magnitudes of each chunk (ties to the lower index), int8 with scale maxabs/127', () => {
    const layout = sparseLayout(square(), CHUNK16);
    const residual = new Float32Array(32);
    residual.set([0.1, -3, 0.5, 2, 2, -0.2], 0);
    residual.set([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -1, 0, 0, 0, 0.25, 0], 16);
    const top = selectTopK(residual, layout);
    // Chunk A: -3 (index 1), then 2 at indices 3 and 4: the tie goes to 3.
    // Chunk B: -1 (index 10) and 0.25 (index 14).
    expect([...top.offsets]).toEqual([1, 3, 10, 14]);
    expect(top.scales[0]).toBe(Math.fround(3 / 127));
    expect(top.scales[1]).toBe(Math.fround(1 / 127));
    // 2 / (3/127) = 84.67 -> 85; 0.25 / (1/127) = 31.75 -> 32.
    expect([...top.q]).toEqual([-127, 85, -127, 32]);
  });

  it('flushes a chunk of tiny values to a zero scale, and sends zeros where fewer than k values moved', () => {
    const layout = sparseLayout(square(), CHUNK16);
    const residual = new Float32Array(32);
    residual[20] = 2 ** -130;
    const top = selectTopK(residual, layout);
    expect([...top.scales]).toEqual([0, 0]);
    expect([...top.offsets]).toEqual([0, 1, 0, 4]);
    expect([...top.q]).toEqual([0, 0, 0, 0]);
  });
});

describe('error feedback', () => {
  // Values are multiples of powers of two whose largest is 127·2^-m, so every scale and every sent value is exact.
  const config: SparseConfig = { chunk: 16, keep: 2, keyframeEvery: 100 };
  const rounds = [
    square(),
    square({ 0: 127 / 64, 1: 0.25, 2: 0.5, 3: -127 / 256 }),
    square({ 0: 127 / 64, 1: 0.25, 2: 0.5, 3: -127 / 256 }),
    square({ 0: 127 / 64, 1: 0.25, 2: 0.5, 3: -127 / 256, 4: 127 / 64 + 1, 5: 0.3 }),
  ];

  function run() {
    const sender = new DeltaSender(config);
    const layout = sparseLayout(rounds[0], config);
    const sent: Float64Array[] = [];
    const residuals: (Float64Array | null)[] = [];
    rounds.forEach((adapter, i) => {
      const out = sender.publish(encodeAdapter(adapter, 'fp32'), i + 1);
      const values = new Float64Array(32);
      if (!out.keyframe) {
        const d = decodeSparseDelta(out.bytes, schemaHash(adapter), layout);
        if (!d.ok) throw new Error(d.detail);
        let entry = 0;
        for (let c = 0; c < 2; c++) for (let j = 0; j < 2; j++, entry++) values[16 * c + d.offsets[entry]] = d.q[entry] * d.scales[c];
      }
      sent.push(values);
      residuals.push(sender.residual(adapter));
    });
    return { sent, residuals };
  }

  it('sends the two largest, keeps the dropped mass in the residual, and sends it in the next round', () => {
    const { sent, residuals } = run();
    // Round 1 (the first delta): 127/64 and 0.5 are kept (scale 1/64, q 127 and 32); 0.25 and -127/256 are dropped.
    expect(sent[1][0]).toBe(127 / 64);
    expect(sent[1][2]).toBe(0.5);
    expect(sent[1][1]).toBe(0);
    expect(sent[1][3]).toBe(0);
    expect(residuals[1]![1]).toBe(0.25);
    expect(residuals[1]![3]).toBe(-127 / 256);
    // Round 2, nothing changed: the dropped values are what is sent now (scale 1/256: q 64 and -127), exactly.
    expect(sent[2][1]).toBe(0.25);
    expect(sent[2][3]).toBe(-127 / 256);
    expect([...residuals[2]!].every((r) => r === 0)).toBe(true);
  });

  it('puts the rounding error of int8 into the residual: 0.3 is sent as 13 · (191/64)/127, the rest stays', () => {
    const { sent, residuals } = run();
    const scale = Math.fround((127 / 64 + 1) / 127);
    expect(sent[3][4]).toBe(127 * scale);
    // 0.3 / scale = 12.77 -> q = 13.
    expect(sent[3][5]).toBe(13 * scale);
    // What is left is 0.3 − 13·scale (up to the float32 rounding of the public copy).
    expect(residuals[3]![5]).toBeCloseTo(Math.fround(0.3) - 13 * scale, 7);
    expect(Math.abs(residuals[3]![5])).toBeGreaterThan(0.001);
  });

  it('sum over rounds of what was sent + the residual = the total change', () => {
    const { sent, residuals } = run();
    const total = flattenAdapter(rounds[3]);
    for (let i = 0; i < 32; i++) {
      const carried = sent.reduce((s, v) => s + v[i], 0) + residuals[3]![i];
      expect(carried).toBeCloseTo(total[i] - 0, 6);
    }
  });
});

describe('the stream: versions, a lost delta, the keyframe', () => {
  const config: SparseConfig = { chunk: 16, keep: 2, keyframeEvery: 3 };
  const versions = [1, 2, 3, 4, 5];
  const adapters = versions.map((v) => tiny((i) => Math.sin(i + 1) + 0.1 * v * Math.cos(3 * i)));
  const hash = schemaHash(adapters[0]);

  function publications() {
    const sender = new DeltaSender(config);
    return versions.map((v, i) => ({ version: v, ...sender.publish(encodeAdapter(adapters[i], 'fp16'), v), state: sender.publicState()! }));
  }

  it('sends a keyframe first and every 3rd publication, deltas between', () => {
    expect(publications().map((p) => p.keyframe)).toEqual([true, false, false, true, false]);
  });

  it('a receiver that got everything holds the sender\u2019s public copy bit for bit', () => {
    const receiver = new DeltaReceiver({ template: adapters[0], schemaHash: hash, codec: 'fp16', config });
    for (const p of publications()) {
      const got = receiver.receive('peer-a', p.bytes, p.version);
      if (!got.ok) throw new Error(got.detail);
      expect(flattenAdapter(got.value.adapter)).toEqual(p.state.values);
    }
  });

  it('a receiver that missed a delta refuses the next one and recovers at the keyframe', () => {
    const receiver = new DeltaReceiver({ template: adapters[0], schemaHash: hash, codec: 'fp16', config });
    const [k1, d2, d3, k4, d5] = publications();
    expect(receiver.receive('peer-a', k1.bytes, 1).ok).toBe(true);
    // d2 lost on the way.
    expect(receiver.receive('peer-a', d3.bytes, 3)).toMatchObject({ ok: false, reason: 'delta-base-mismatch', detail: expect.stringContaining('holds version 1') });
    expect(receiver.versionOf('peer-a')).toBe(1);
    const back = receiver.receive('peer-a', k4.bytes, 4);
    expect(back).toMatchObject({ ok: true, value: { keyframe: true, version: 4 } });
    const next = receiver.receive('peer-a', d5.bytes, 5);
    if (!next.ok) throw new Error(next.detail);
    expect(flattenAdapter(next.value.adapter)).toEqual(d5.state.values);
    expect(d2.keyframe).toBe(false);
  });

  it('a delta before any keyframe, a delta announced as another version, and another sender\u2019s delta are refused', () => {
    const receiver = new DeltaReceiver({ template: adapters[0], schemaHash: hash, codec: 'fp16', config });
    const [k1, d2] = publications();
    expect(receiver.receive('peer-b', d2.bytes, 2)).toMatchObject({ ok: false, reason: 'delta-base-mismatch', detail: expect.stringContaining('no keyframe') });
    expect(receiver.receive('peer-b', k1.bytes, 1).ok).toBe(true);
    expect(receiver.receive('peer-b', d2.bytes, 7)).toMatchObject({ ok: false, reason: 'malformed', detail: 'sparse delta makes version 2, announced as 7' });
    // Streams are per sender: peer-a's delta means nothing for peer-b's copy.
    expect(receiver.receive('peer-c', d2.bytes, 2)).toMatchObject({ ok: false, reason: 'delta-base-mismatch' });
  });

  it('a keyframe in another codec than the run\u2019s is refused', () => {
    const receiver = new DeltaReceiver({ template: adapters[0], schemaHash: hash, codec: 'fp16', config });
    expect(receiver.receive('peer-a', encodeAdapter(adapters[0], 'int8'), 1)).toMatchObject({ ok: false, reason: 'malformed', detail: 'keyframe is int8, the run uses fp16' });
    expect(receiver.receive('peer-a', encodeAdapter(adapters[0], 'fp32'), 1)).toMatchObject({ ok: false, reason: 'oversized' });
  });

  it('keeps at most maxStreams public copies, forgetting the least recently updated', () => {
    const receiver = new DeltaReceiver({ template: adapters[0], schemaHash: hash, codec: 'fp16', config, maxStreams: 2 });
    const [k1] = publications();
    for (const peer of ['a', 'b', 'c']) expect(receiver.receive(peer, k1.bytes, 1).ok).toBe(true);
    expect([receiver.versionOf('a'), receiver.versionOf('b'), receiver.versionOf('c')]).toEqual([undefined, 1, 1]);
  });
});

describe('decoding hostile deltas', () => {
  const config: SparseConfig = { chunk: 16, keep: 2, keyframeEvery: 100 };
  const adapter = tiny();
  const hash = schemaHash(adapter);
  const layout = sparseLayout(adapter, config);
  const honest = encodeSparseDelta({ schemaHash: hash, baseVersion: 4, version: 5, ...selectTopK(flattenAdapter(adapter), layout) }, layout);
  const edit = (change: (b: Uint8Array, view: DataView) => void) => {
    const b = honest.slice();
    change(b, new DataView(b.buffer));
    return decodeSparseDelta(b, hash, layout);
  };
  // Offsets of the first chunk's fields: scale at 40, offsets at 44..45, values at 46..47.
  const verdict = (r: ReturnType<typeof decodeSparseDelta>) => (r.ok ? 'accepted' : `${r.reason}: ${r.detail}`);

  it('accepts the honest delta, and it re-encodes to the same bytes', () => {
    const d = decodeSparseDelta(honest, hash, layout);
    if (!d.ok) throw new Error(d.detail);
    expect([d.baseVersion, d.version]).toEqual([4, 5]);
    expect(encodeSparseDelta(d, layout)).toEqual(honest);
  });

  it('refuses each defect with its reason', () => {
    expect(verdict(decodeSparseDelta(new Uint8Array(64 * 1024 * 1024), hash, layout))).toBe("oversized: sparse delta of 67108864 bytes; the run's schema and sparse config imply exactly 70");
    expect(verdict(decodeSparseDelta(honest.subarray(0, 69), hash, layout))).toMatch(/^truncated: sparse delta of 69 bytes/);
    expect(verdict(decodeSparseDelta(honest.subarray(0, 30), hash, layout))).toMatch(/^truncated: input ends/);
    expect(verdict(edit((b) => (b[3] = 0x41)))).toMatch(/^malformed: not a sparse delta/);
    expect(verdict(edit((b, v) => v.setUint16(4, 2, true)))).toMatch(/^unknown-version/);
    expect(verdict(edit((b) => (b[6] = 1)))).toMatch(/^malformed: flags 1/);
    expect(verdict(edit((b) => (b[8] ^= 1)))).toMatch(/^schema-mismatch/);
    expect(verdict(edit((b, v) => v.setUint32(28, 4, true)))).toBe('malformed: version 4 is not above its base version 4');
    expect(verdict(edit((b, v) => v.setUint32(32, 46, true)))).toMatch(/^schema-mismatch: sparse delta over 46 values/);
    expect(verdict(edit((b, v) => v.setUint16(38, 3, true)))).toBe('malformed: sparse delta keeps 3 of 16 per chunk; the run keeps 2 of 16');
    expect(verdict(edit((b, v) => v.setFloat32(40, NaN, true)))).toMatch(/^non-finite: chunk 0: scale is NaN/);
    expect(verdict(edit((b, v) => v.setFloat32(40, Infinity, true)))).toMatch(/^non-finite/);
    expect(verdict(edit((b, v) => v.setFloat32(40, -0.5, true)))).toMatch(/^malformed: chunk 0: scale -0.5 is negative/);
    expect(verdict(edit((b, v) => v.setFloat32(40, 2 ** -130, true)))).toMatch(/subnormal/);
    expect(verdict(edit((b, v) => v.setFloat32(40, SPARSE_MAX_SCALE * 2, true)))).toMatch(/^malformed: chunk 0: scale .* above 65504/);
    expect(verdict(edit((b) => ([b[44], b[45]] = [b[45], b[44]])))).toMatch(/^malformed: chunk 0: offsets are not strictly increasing/);
    expect(verdict(edit((b) => (b[45] = b[44])))).toMatch(/not strictly increasing/);
    // The second chunk of A has 2 values: offset 2 is outside it (the flat index 18 is B's first value).
    expect(verdict(edit((b) => (b[52] = 2)))).toBe('malformed: chunk 1: offset 2 is outside its 2 values');
    expect(verdict(edit((b) => (b[46] = 0x80)))).toMatch(/value -128/);
    expect(verdict(edit((b) => { b[46] = 100; b[47] = 50; }))).toMatch(/^malformed: chunk 0: scale .* but largest \|q\| is 100, not 127$/);
    expect(verdict(edit((b, v) => v.setFloat32(40, 0, true)))).toMatch(/scale 0 with non-zero values/);
    expect(verdict(decodeSparseDelta('x' as unknown as Uint8Array, hash, layout))).toMatch(/^malformed/);
  });

  it('refuses a delta built for another run\u2019s chunking even when its size happens to fit', () => {
    const other = sparseLayout(adapter, { chunk: 32, keep: 4, keyframeEvery: 100 });
    const bytes = encodeSparseDelta({ schemaHash: hash, baseVersion: 1, version: 2, ...selectTopK(flattenAdapter(adapter), other) }, other);
    expect(verdict(decodeSparseDelta(bytes, hash, layout))).toMatch(/^(malformed|oversized|truncated)/);
  });
});
