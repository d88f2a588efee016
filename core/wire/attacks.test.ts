// The wire-level attacks of issue 12, replayed: each is refused with its reason before a merge can see it.
import { describe, expect, it } from 'vitest';
import { schemaHash, type Adapter } from '../model/adapter.ts';
import { encodeAdapter, expectedPayloadBytes, type PayloadCodec } from './codec.ts';
import { announcementFor, decodeRunManifest, validateAnnouncement, validatePayload, type AnnouncementContext, type RunManifest } from './manifest.ts';
import { makeAdapter } from './test-support.ts';
import { decodeAdapter } from './codec.ts';
import { DeltaReceiver, DeltaSender } from './delta-stream.ts';
import { SPARSE_MAX_SCALE } from './sparse-delta.ts';
import { decodeTelemetry, encodeTelemetry, type TelemetryReport } from './telemetry.ts';

const PEER = '12D3KooWGzh9rWkZ3hPpnmYkzLaLM9C4wGxKXn5c1QJ7mkd8bSuq';
const BASE_SHA = 'ab'.repeat(32);

function tiny(values: (i: number) => number = () => 0.25): Adapter {
  const a = Float32Array.from({ length: 18 }, (_, i) => values(i));
  const b = Float32Array.from({ length: 27 }, (_, i) => values(i + 18));
  return {
    baseModelId: 'test/tiny',
    config: { r: 3, alpha: 6, targetModules: ['attn.c_attn'] },
    modules: new Map([['transformer.h.0.attn.c_attn', { a, b, inDim: 6, outDim: 9 }]]),
  };
}

function announced(adapter: Adapter, codec: PayloadCodec, payload = encodeAdapter(adapter, codec)) {
  return announcementFor(payload, {
    runId: 'run-1', peerId: PEER, baseModelId: adapter.baseModelId, baseModelSha256: BASE_SHA, schemaHash: schemaHash(adapter),
    version: 1, step: 1, samplesSeen: 1, localLoss: 1, codec, createdAtMs: 1,
  });
}

describe('expectedPayloadBytes', () => {
  it('is the header plus the tensors, hand-counted for a 6→9 rank-3 module', () => {
    // magic 4 + version 2 + codec 1 + flags 1 + "test/tiny" 1+9 + r 2 + alpha 8 + target count 1 + "attn.c_attn" 1+11
    // + module count 4 + ("transformer.h.0.attn.c_attn" 1+27 + in 4 + out 4) = 81 header bytes; 18 + 27 values.
    expect(expectedPayloadBytes(tiny(), 'fp32')).toBe(81 + 4 * 45);
    expect(expectedPayloadBytes(tiny(), 'fp16')).toBe(81 + 2 * 45);
    expect(expectedPayloadBytes(tiny(), 'int8')).toBe(81 + 45 + 2 * 4);
    expect(encodeAdapter(tiny(), 'int8').length).toBe(81 + 45 + 8);
  });

  it('needs only the shapes (no values) and agrees with the encoder on a GPT-2-shaped adapter', () => {
    const adapter = makeAdapter({ nEmbd: 64, nLayer: 3, r: 8, targets: ['attn.c_attn', 'mlp.c_proj'] });
    const shape = { ...adapter, modules: new Map([...adapter.modules].map(([n, p]) => [n, { inDim: p.inDim, outDim: p.outDim }])) };
    for (const codec of ['fp32', 'fp16', 'int8'] as const) expect(expectedPayloadBytes(shape, codec)).toBe(encodeAdapter(adapter, codec).length);
  });
});

describe('the run codec and exact size are enforced', () => {
  const adapter = tiny((i) => Math.sin(i));
  const ctx = (codec: PayloadCodec): AnnouncementContext => ({
    runId: 'run-1', baseModelSha256: BASE_SHA, schemaHash: schemaHash(adapter), senderPeerId: PEER,
    codec, payloadBytes: expectedPayloadBytes(adapter, codec),
  });

  it('fp32 in an fp16 run (issue 12): refused at the announcement and at the payload', async () => {
    const m = announced(adapter, 'fp32');
    expect(validateAnnouncement(m, ctx('fp16'))).toMatchObject({ ok: false, reason: 'malformed', detail: 'codec fp32, the run uses fp16' });
    const payload = encodeAdapter(adapter, 'fp32');
    const verdict = await validatePayload(payload, m, { schemaHash: schemaHash(adapter), codec: 'fp16' });
    expect(verdict).toMatchObject({ ok: false, reason: 'malformed', detail: 'payload is fp32, the run uses fp16' });
    expect(validateAnnouncement(announced(adapter, 'fp16'), ctx('fp16'))).toEqual({ ok: true, value: undefined });
  });

  it('a huge announced size (issue 12: 64 MiB for a 171-byte schema) is refused before fetching', () => {
    const m = { ...announced(adapter, 'fp16'), payloadBytes: 64 * 1024 * 1024 };
    expect(validateAnnouncement(m, ctx('fp16'))).toMatchObject({
      ok: false, reason: 'oversized', detail: "announced payload of 67108864 bytes; the run's schema and codec imply exactly 171",
    });
    expect(validateAnnouncement({ ...m, payloadBytes: 170 }, ctx('fp16'))).toMatchObject({ ok: false, reason: 'truncated' });
  });

  it('a payload whose size differs from the schema\u2019s is refused even when its announcement matches it', async () => {
    const payload = encodeAdapter(adapter, 'fp16');
    const longer = new Uint8Array(payload.length + 2);
    longer.set(payload);
    const verdict = await validatePayload(longer, announced(adapter, 'fp16', longer), { schemaHash: schemaHash(adapter), payloadBytes: payload.length });
    expect(verdict).toMatchObject({ ok: false, reason: 'oversized' });
  });

  it('65504 (fp16 maximum) passes the wire, as it must: the update guard refuses it (core/swarm/guard.test.ts)', async () => {
    const loud = tiny((i) => (i % 2 ? 65504 : -65504));
    const verdict = await validatePayload(encodeAdapter(loud, 'fp16'), announced(loud, 'fp16'), { schemaHash: schemaHash(loud), codec: 'fp16' });
    expect(verdict.ok).toBe(true);
  });
});

describe('run manifest bounds (issue 12: lr 0.99, clipNorm 0 and unknown strategies were accepted)', () => {
  const base = (): RunManifest => ({
    formatVersion: 1,
    runId: 'brown-fiction',
    baseModel: { id: 'swarm-brown-byte-gpt2', url: '/models/swarm-brown-byte-gpt2/', sha256: BASE_SHA },
    lora: { r: 8, alpha: 16, targetModules: ['attn.c_attn'] },
    strategy: { name: 'trimmed-mean', params: { beta: 0.2 } },
    localSteps: 20,
    schedule: { lr: 3e-3, clipNorm: 1, warmupSteps: 10 },
    data: { kind: 'genre', genres: ['mystery'] },
    codec: 'fp16',
  });
  const detailOf = (change: (m: RunManifest) => void) => {
    const m = base();
    change(m);
    const v = decodeRunManifest(m);
    return v.ok ? 'accepted' : `${v.reason}: ${v.detail}`;
  };

  it('accepts the base manifest', () => {
    expect(detailOf(() => undefined)).toBe('accepted');
  });

  it('refuses each bad value with its reason in words', () => {
    expect(detailOf((m) => { m.schedule.lr = 0.99; })).toBe('malformed: run.schedule.lr = 0.99 outside 5e-324..0.1');
    expect(detailOf((m) => { m.schedule.lr = 0; })).toMatch(/^malformed: run\.schedule\.lr = 0 outside/);
    expect(detailOf((m) => { m.schedule.clipNorm = 0; })).toBe('malformed: run.schedule.clipNorm = 0 outside 0.001..1000');
    expect(detailOf((m) => { m.schedule.clipNorm = '1'; })).toBe('malformed: run.schedule.clipNorm must be a number');
    expect(detailOf((m) => { m.localSteps = 0; })).toBe('malformed: run.localSteps = 0 must be an integer in 1..10000');
    expect(detailOf((m) => { m.localSteps = 10_001; })).toMatch(/localSteps = 10001 must be an integer in 1\.\.10000/);
    expect(detailOf((m) => { m.lora.r = 0; })).toMatch(/run\.lora\.r = 0 must be an integer in 1\.\.1024/);
    expect(detailOf((m) => { m.lora.r = 1025; })).toMatch(/run\.lora\.r = 1025/);
    expect(detailOf((m) => { m.lora.alpha = 1e308; })).toBe('malformed: run.lora.alpha = 1e+308 outside 5e-324..16384');
    expect(detailOf((m) => { m.strategy = { name: 'avg', params: {} }; })).toMatch(/^malformed: run\.strategy\.name: unknown merge strategy 'avg' \(known: fedavg, /);
    expect(detailOf((m) => { m.strategy.params = { beta: 0.9 }; })).toBe("malformed: run.strategy.params: trimmed-mean: parameter 'beta' must be <= 0.5, got 0.9");
    expect(detailOf((m) => { m.strategy.params = { betta: 0.2 }; })).toMatch(/has no parameter 'betta'/);
    expect(detailOf((m) => { m.strategy = { name: 'dare', params: { density: 'half' } }; })).toMatch(/parameter 'density' must be a number/);
  });
});

describe('telemetry in trouble (issue 12: a poisoned peer went silent)', () => {
  const report = (): TelemetryReport => ({
    formatVersion: 1, peerId: PEER, runId: 'brown-fiction.0123456789abcdef', timeMs: 1_760_000_000_000, step: 40,
    trainLoss: 2.5, heldOutLoss: 2.6, merges: 2, bytesSent: 10, bytesReceived: 20, versionsAnnounced: 2, versionsFetched: 3,
    neighbours: [], rejections: {}, tokensPerSecond: 300, backend: 'wasm',
  });
  const roundTrip = (r: TelemetryReport) => {
    const v = decodeTelemetry(encodeTelemetry(r));
    if (!v.ok) throw new Error(v.detail);
    return v.value;
  };

  it('encodes non-finite losses as null and marks the report unhealthy with the reason, instead of refusing it', () => {
    const back = roundTrip({ ...report(), trainLoss: NaN, heldOutLoss: Infinity, tokensPerSecond: -1, consensusDistance: 5e29 * 1e10 });
    expect(back).toMatchObject({ trainLoss: null, heldOutLoss: null, tokensPerSecond: null, health: 'unhealthy' });
    expect(back.healthReason).toBe('trainLoss was NaN, heldOutLoss was Infinity, tokensPerSecond was -1, consensusDistance was 5e+39');
    expect(back.consensusDistance).toBeUndefined();
    expect(back.step).toBe(40);
  });

  it('carries a state the peer gives, keeps its own reason first, and leaves a healthy report as it was', () => {
    expect(roundTrip({ ...report(), health: 'unhealthy', healthReason: 'merged adapter refused: norm 5e+29' })).toMatchObject({
      health: 'unhealthy', healthReason: 'merged adapter refused: norm 5e+29',
    });
    expect(roundTrip({ ...report(), trainLoss: NaN, health: 'unhealthy', healthReason: 'poisoned\u00e9' }).healthReason).toBe('poisoned?; trainLoss was NaN');
    expect(roundTrip({ ...report(), health: 'ok' }).health).toBe('ok');
    const plain = roundTrip(report());
    expect(plain.health).toBeUndefined();
    expect(plain.healthReason).toBeUndefined();
  });

  it('decoding refuses an unknown state and a reason on a healthy report', () => {
    const bytes = (extra: Record<string, unknown>) => new TextEncoder().encode(JSON.stringify({ ...report(), ...extra }));
    expect(decodeTelemetry(bytes({ health: 'dead' }))).toMatchObject({ ok: false, reason: 'malformed' });
    expect(decodeTelemetry(bytes({ health: 'ok', healthReason: 'x' }))).toMatchObject({ ok: false, reason: 'malformed' });
    expect(decodeTelemetry(bytes({ health: 'unhealthy', healthReason: 'y'.repeat(201) }))).toMatchObject({ ok: false, reason: 'malformed' });
    expect(decodeTelemetry(bytes({ health: 'unhealthy', healthReason: 'loss NaN' }))).toMatchObject({ ok: true });
  });
});

describe('sparse deltas from a hostile sender (issue 13, item 4)', () => {
  const config = { chunk: 16, keep: 2, keyframeEvery: 100 };
  const adapter = tiny((i) => Math.sin(i));
  const receiver = () => {
    const r = new DeltaReceiver({ template: adapter, schemaHash: schemaHash(adapter), codec: 'fp16', config });
    expect(r.receive(PEER, encodeAdapter(adapter, 'fp16'), 1).ok).toBe(true);
    return r;
  };
  const sender = new DeltaSender(config);
  sender.publish(encodeAdapter(adapter, 'fp16'), 1);
  const honest = sender.publish(encodeAdapter(tiny((i) => Math.cos(i)), 'fp16'), 2).bytes;

  it('a delta that would move values past fp16’s range is refused, and the copy is left as it was', () => {
    const loud = honest.slice();
    new DataView(loud.buffer).setFloat32(40, SPARSE_MAX_SCALE * 1.01, true);
    const r = receiver();
    expect(r.receive(PEER, loud, 2)).toMatchObject({ ok: false, reason: 'malformed', detail: expect.stringContaining('above 65504') });
    expect(r.versionOf(PEER)).toBe(1);
    expect(r.receive(PEER, honest, 2).ok).toBe(true);
  });

  it('a 64 MiB "delta" is refused by its size alone, and a delta sent as a full adapter payload is not an adapter', () => {
    const huge = new Uint8Array(64 * 1024 * 1024);
    huge.set(honest.subarray(0, 40));
    expect(receiver().receive(PEER, huge, 2)).toMatchObject({ ok: false, reason: 'oversized' });
    expect(decodeAdapter(honest)).toMatchObject({ ok: false, reason: 'malformed', detail: 'not an adapter payload (magic bytes differ from "SWAD")' });
  });

  it('a keyframe of another schema (a larger adapter) is refused by size before it is decoded', () => {
    const larger = makeAdapter({ nEmbd: 16, nLayer: 1, r: 2, targets: ['attn.c_attn'] });
    expect(receiver().receive(PEER, encodeAdapter(larger, 'fp16'), 2)).toMatchObject({ ok: false, reason: 'oversized' });
  });
});
