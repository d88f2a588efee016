import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js';
import { describe, expect, it } from 'vitest';
import { schemaHash, type Adapter } from '../model/adapter.ts';
import { WireFormatError } from './bytes.ts';
import { encodeAdapter } from './codec.ts';
import {
  announcementFor,
  canonicalRunManifestJson,
  checkAnnouncement,
  decodeAnnouncement,
  decodeRunManifest,
  decodeTelemetry,
  encodeAnnouncement,
  encodeRunManifest,
  encodeTelemetry,
  runManifestId,
  validateAnnouncement,
  validatePayload,
  type AnnouncementContext,
  type AnnouncementManifest,
  type RunManifest,
  type TelemetryReport,
} from './manifest.ts';
import { makeAdapter } from './test-support.ts';

const PEER = '12D3KooWGzh9rWkZ3hPpnmYkzLaLM9C4wGxKXn5c1QJ7mkd8bSuq';
const OTHER_PEER = '12D3KooWQbM3nFZbBqz8Z1k2eYgVjVx9rGZQ1aTgT3dTn9mKq7Pa';
const BASE_SHA = 'ab'.repeat(32);

function fixture(adapter: Adapter = makeAdapter({ nEmbd: 32, nLayer: 2, r: 4, seed: 9 }), codec: 'fp32' | 'fp16' | 'int8' = 'fp16') {
  const payload = encodeAdapter(adapter, codec);
  const manifest = announcementFor(payload, {
    runId: 'brown-lora-1',
    peerId: PEER,
    baseModelId: adapter.baseModelId,
    baseModelSha256: BASE_SHA,
    schemaHash: schemaHash(adapter),
    version: 7,
    step: 140,
    samplesSeen: 2240,
    localLoss: 3.25,
    codec,
    createdAtMs: 1_760_000_000_000,
  });
  const ctx: AnnouncementContext = {
    runId: 'brown-lora-1',
    baseModelSha256: BASE_SHA,
    schemaHash: schemaHash(adapter),
    senderPeerId: PEER,
    lastVersionFromPeer: 6,
    maxPayloadBytes: 1 << 20,
  };
  return { adapter, payload, manifest, ctx };
}

const text = (s: string) => utf8ToBytes(s);

describe('announcement manifest', () => {
  it('round-trips and carries the payload size and sha256 computed independently', () => {
    const { payload, manifest } = fixture();
    expect(manifest.payloadBytes).toBe(payload.length);
    expect(manifest.payloadSha256).toBe(bytesToHex(sha256(payload)));
    const decoded = decodeAnnouncement(encodeAnnouncement(manifest));
    expect(decoded).toEqual({ ok: true, value: manifest });
  });

  it('stays under 1 KiB with every string field at its longest', () => {
    const longest: AnnouncementManifest = {
      ...fixture().manifest,
      runId: 'r'.repeat(96),
      peerId: 'P'.repeat(100),
      baseModelId: 'm'.repeat(128),
      version: Number.MAX_SAFE_INTEGER,
      step: Number.MAX_SAFE_INTEGER,
      samplesSeen: Number.MAX_SAFE_INTEGER,
      localLoss: 0.12345678901234568,
      payloadBytes: Number.MAX_SAFE_INTEGER,
      createdAtMs: Number.MAX_SAFE_INTEGER,
    };
    expect(encodeAnnouncement(longest).length).toBeLessThan(1024);
  });

  it('refuses to encode a manifest others would reject', () => {
    expect(() => encodeAnnouncement({ ...fixture().manifest, version: -1 })).toThrow(WireFormatError);
    expect(() => encodeAnnouncement({ ...fixture().manifest, payloadSha256: 'XYZ' })).toThrow(WireFormatError);
  });

  it('names each defect of the bytes', () => {
    const good = JSON.parse(new TextDecoder().decode(encodeAnnouncement(fixture().manifest))) as Record<string, unknown>;
    const withField = (patch: Record<string, unknown>) => text(JSON.stringify({ ...good, ...patch }));
    const reasonOf = (bytes: Uint8Array) => {
      const v = decodeAnnouncement(bytes);
      return v.ok ? 'accepted' : v.reason;
    };
    expect(reasonOf(text(JSON.stringify(good)))).toBe('accepted');
    expect(reasonOf(text('{"formatVersion":1,'))).toBe('malformed');
    expect(reasonOf(text('[]'))).toBe('malformed');
    expect(reasonOf(withField({ formatVersion: 2 }))).toBe('unknown-version');
    expect(reasonOf(withField({ formatVersion: '1' }))).toBe('malformed');
    expect(reasonOf(withField({ extra: 1 }))).toBe('malformed');
    const { localLoss: _dropped, ...missing } = good;
    expect(reasonOf(text(JSON.stringify(missing)))).toBe('malformed');
    expect(reasonOf(withField({ version: 1.5 }))).toBe('malformed');
    expect(reasonOf(withField({ version: -1 }))).toBe('malformed');
    expect(reasonOf(withField({ version: 2 ** 60 }))).toBe('malformed');
    expect(reasonOf(withField({ payloadBytes: 0 }))).toBe('malformed');
    expect(reasonOf(withField({ payloadSha256: BASE_SHA.toUpperCase() }))).toBe('malformed');
    expect(reasonOf(withField({ codec: 'bf16' }))).toBe('malformed');
    expect(reasonOf(withField({ peerId: 'not a peer id' }))).toBe('malformed');
    expect(reasonOf(withField({ localLoss: null }))).toBe('accepted');
    expect(reasonOf(text(JSON.stringify(good).replace('3.25', '1e999')))).toBe('non-finite');
    expect(reasonOf(text(JSON.stringify({ ...good, runId: 'r\u00e9' })))).toBe('malformed');
    expect(reasonOf(withField({ runId: 'r'.repeat(900) }))).toBe('oversized');
  });

  it('validates against the local run, one reason per mismatch', () => {
    const { manifest, ctx } = fixture();
    const reasonOf = (m: AnnouncementManifest, c: AnnouncementContext = ctx) => {
      const v = validateAnnouncement(m, c);
      return v.ok ? 'accepted' : v.reason;
    };
    expect(reasonOf(manifest)).toBe('accepted');
    expect(reasonOf(manifest, { ...ctx, senderPeerId: OTHER_PEER })).toBe('bad-signature');
    expect(reasonOf({ ...manifest, runId: 'another-run' })).toBe('wrong-run');
    expect(reasonOf({ ...manifest, baseModelSha256: 'cd'.repeat(32) })).toBe('wrong-base-model');
    expect(reasonOf({ ...manifest, schemaHash: '0'.repeat(32) })).toBe('schema-mismatch');
    expect(reasonOf({ ...manifest, payloadBytes: (1 << 20) + 1 })).toBe('oversized');
    expect(reasonOf({ ...manifest, version: 6 })).toBe('replayed');
    expect(reasonOf({ ...manifest, version: 3 })).toBe('replayed');
    expect(reasonOf({ ...manifest, version: 0 }, { ...ctx, lastVersionFromPeer: undefined })).toBe('accepted');
    expect(reasonOf(manifest, { ...ctx, acceptedCodecs: ['fp32'] })).toBe('malformed');
    const combined = checkAnnouncement(encodeAnnouncement(manifest), { ...ctx, senderPeerId: OTHER_PEER });
    expect(combined.ok ? 'accepted' : combined.reason).toBe('bad-signature');
  });
});

describe('validatePayload', () => {
  const reasonOf = async (bytes: Uint8Array, m: AnnouncementManifest, schema: string) => {
    const v = await validatePayload(bytes, m, { schemaHash: schema });
    return v.ok ? 'accepted' : v.reason;
  };

  it('accepts the announced payload and returns the adapter it encodes', async () => {
    const { adapter, payload, manifest } = fixture(undefined, 'fp32');
    const v = await validatePayload(payload, manifest, { schemaHash: schemaHash(adapter), baseModelId: adapter.baseModelId });
    expect(v.ok).toBe(true);
    if (v.ok) {
      expect(v.value.modules.get('transformer.h.1.attn.c_proj')!.b).toEqual(adapter.modules.get('transformer.h.1.attn.c_proj')!.b);
    }
  });

  it('names each defect', async () => {
    const { adapter, payload, manifest } = fixture();
    const schema = schemaHash(adapter);
    expect(await reasonOf(payload.subarray(0, payload.length - 10), manifest, schema)).toBe('truncated');
    const longer = new Uint8Array(payload.length + 1);
    longer.set(payload);
    expect(await reasonOf(longer, manifest, schema)).toBe('oversized');
    const flipped = payload.slice();
    flipped[flipped.length - 1] ^= 1;
    expect(await reasonOf(flipped, manifest, schema)).toBe('bad-hash');
    expect((await validatePayload(payload, manifest, { schemaHash: schema, maxPayloadBytes: 100 })).ok).toBe(false);

    // A different adapter announced honestly (matching hash) but with our schema hash claimed.
    const other = makeAdapter({ nEmbd: 32, nLayer: 3, r: 4, seed: 9 });
    const otherPayload = encodeAdapter(other, 'fp16');
    const lying = announcementFor(otherPayload, { ...manifest, schemaHash: schema });
    expect(await reasonOf(otherPayload, lying, schema)).toBe('schema-mismatch');
    // Announced with its true schema, which is not ours.
    expect(await reasonOf(otherPayload, announcementFor(otherPayload, { ...manifest, schemaHash: schemaHash(other) }), schema)).toBe('schema-mismatch');

    expect(await reasonOf(payload, { ...manifest, codec: 'int8' }, schema)).toBe('malformed');
    expect(await reasonOf(payload, { ...manifest, baseModelId: 'someone/else' }, schema)).toBe('wrong-base-model');

    // NaN in a payload whose announcement hashes it correctly: the encoder refuses NaN, so patch the bytes.
    const fp32 = encodeAdapter(adapter, 'fp32');
    new DataView(fp32.buffer).setUint32(fp32.length - 4, 0x7fc00001, true);
    expect(await reasonOf(fp32, announcementFor(fp32, { ...manifest, codec: 'fp32' }), schema)).toBe('non-finite');
  });
});

const run: RunManifest = {
  formatVersion: 1,
  runId: 'brown-lora-1',
  baseModel: { id: 'swarm/gpt2-tiny', url: '/models/gpt2-tiny/', sha256: BASE_SHA },
  lora: { r: 8, alpha: 16, targetModules: ['attn.c_attn', 'attn.c_proj'] },
  strategy: { name: 'dare', params: { density: 0.5, consensus: 'ties' } },
  localSteps: 20,
  schedule: { learningRate: 0.001, warmupSteps: 10 },
  data: { partition: 'dirichlet', alpha: 0.5, seed: 1 },
  codec: 'fp16',
};

describe('run manifest', () => {
  it('has a canonical JSON with sorted keys and an id that is its sha256', () => {
    const expected =
      '{"baseModel":{"id":"swarm/gpt2-tiny","sha256":"' + BASE_SHA + '","url":"/models/gpt2-tiny/"},"codec":"fp16",' +
      '"data":{"alpha":0.5,"partition":"dirichlet","seed":1},"formatVersion":1,' +
      '"localSteps":20,"lora":{"alpha":16,"r":8,"targetModules":["attn.c_attn","attn.c_proj"]},"runId":"brown-lora-1",' +
      '"schedule":{"learningRate":0.001,"warmupSteps":10},"strategy":{"name":"dare","params":{"consensus":"ties","density":0.5}}}';
    expect(canonicalRunManifestJson(run)).toBe(expected);
    expect(runManifestId(run)).toBe(bytesToHex(sha256(utf8ToBytes(expected))));
  });

  it('gives the same id whatever the key order, and a different one for any change', () => {
    const shuffled = { ...Object.fromEntries(Object.entries(run).reverse()), data: { seed: 1, alpha: 0.5, partition: 'dirichlet' } } as unknown as RunManifest;
    expect(Object.keys(shuffled)[0]).toBe('codec');
    expect(runManifestId(shuffled)).toBe(runManifestId(run));
    expect(runManifestId({ ...run, localSteps: 21 })).not.toBe(runManifestId(run));
  });

  it('decodes from bytes, text (pretty-printed too) and objects', () => {
    expect(decodeRunManifest(encodeRunManifest(run))).toEqual({ ok: true, value: run });
    expect(decodeRunManifest(JSON.stringify(run, null, 2))).toEqual({ ok: true, value: run });
    expect(decodeRunManifest(run)).toEqual({ ok: true, value: run });
  });

  it('names each defect', () => {
    const reasonOf = (input: unknown) => {
      const v = decodeRunManifest(input as object);
      return v.ok ? 'accepted' : v.reason;
    };
    expect(reasonOf({ ...run, formatVersion: 3 })).toBe('unknown-version');
    expect(reasonOf({ ...run, surprise: true })).toBe('malformed');
    expect(reasonOf({ ...run, baseModel: { ...run.baseModel, sha256: 'abc' } })).toBe('malformed');
    expect(reasonOf({ ...run, lora: { ...run.lora, targetModules: ['attn.c_attn', 'attn.c_attn'] } })).toBe('malformed');
    expect(reasonOf({ ...run, lora: { ...run.lora, targetModules: ['lm_head'] } })).toBe('malformed');
    expect(reasonOf({ ...run, lora: { ...run.lora, r: 0 } })).toBe('malformed');
    expect(reasonOf({ ...run, codec: 'fp8' })).toBe('malformed');
    expect(reasonOf({ ...run, localSteps: 0 })).toBe('malformed');
    expect(reasonOf({ ...run, strategy: { name: 'fedavg', params: { nested: { x: 1 } } } })).toBe('malformed');
    expect(reasonOf(JSON.stringify(run).replace('"density":0.5', '"density":1e400'))).toBe('non-finite');
    let deep: unknown = 1;
    for (let i = 0; i < 10; i++) deep = { d: deep };
    expect(reasonOf({ ...run, schedule: deep })).toBe('malformed');
    expect(reasonOf(JSON.stringify(run).replace('"warmupSteps":10', '"__proto__":{"polluted":true}'))).toBe('malformed');
    expect(reasonOf('x'.repeat(70_000))).toBe('oversized');
    expect(reasonOf(new Uint8Array([0x7b, 0xff, 0x7d]))).toBe('malformed');
    expect(reasonOf(42)).toBe('malformed');
    expect(() => runManifestId({ ...run, localSteps: -1 })).toThrow(WireFormatError);
  });
});

describe('run manifest: sparse updates', () => {
  const sparse = { ...run, sparse: { chunk: 256, keep: 8, keyframeEvery: 16 } };
  const detailOf = (value: unknown) => {
    const v = decodeRunManifest({ ...run, sparse: value });
    return v.ok ? 'accepted' : `${v.reason}: ${v.detail}`;
  };

  it('is optional, round-trips, and is part of the run id', () => {
    expect(decodeRunManifest(encodeRunManifest(sparse))).toEqual({ ok: true, value: sparse });
    expect(runManifestId(sparse)).not.toBe(runManifestId(run));
    expect(runManifestId({ ...sparse, sparse: { chunk: 256, keep: 16, keyframeEvery: 16 } })).not.toBe(runManifestId(sparse));
    expect(canonicalRunManifestJson(sparse)).toContain('"sparse":{"chunk":256,"keep":8,"keyframeEvery":16}');
  });

  it('bounds every parameter, with the reason in words', () => {
    expect(detailOf({ chunk: 512, keep: 8, keyframeEvery: 16 })).toBe('malformed: run.sparse.chunk = 512 must be an integer in 16..256');
    expect(detailOf({ chunk: 8, keep: 1, keyframeEvery: 16 })).toMatch(/chunk = 8 must be an integer in 16\.\.256/);
    expect(detailOf({ chunk: 256, keep: 129, keyframeEvery: 16 })).toBe('malformed: run.sparse.keep = 129 must be an integer in 1..128');
    expect(detailOf({ chunk: 256, keep: 0, keyframeEvery: 16 })).toMatch(/keep = 0/);
    expect(detailOf({ chunk: 256, keep: 8.5, keyframeEvery: 16 })).toMatch(/keep = 8.5/);
    expect(detailOf({ chunk: 256, keep: 8, keyframeEvery: 0 })).toBe('malformed: run.sparse.keyframeEvery = 0 must be an integer in 1..1000');
    expect(detailOf({ chunk: 256, keep: 8, keyframeEvery: 1001 })).toMatch(/keyframeEvery = 1001/);
    expect(detailOf({ chunk: 256, keep: 8 })).toBe("malformed: run.sparse: missing field 'keyframeEvery'");
    expect(detailOf({ chunk: 256, keep: 8, keyframeEvery: 16, density: 0.1 })).toBe("malformed: run.sparse: unknown field 'density'");
    expect(detailOf('8/256')).toBe('malformed: run.sparse must be an object');
  });
});

const report: TelemetryReport = {
  formatVersion: 1,
  peerId: PEER,
  runId: 'brown-lora-1',
  timeMs: 1_760_000_000_000,
  step: 400,
  trainLoss: 2.9,
  heldOutLoss: null,
  merges: 19,
  bytesSent: 12_000_000,
  bytesReceived: 30_000_000,
  versionsAnnounced: 20,
  versionsFetched: 55,
  neighbours: [OTHER_PEER],
  rejections: { 'bad-hash': 2, replayed: 1 },
  tokensPerSecond: 5120.5,
  backend: 'webgpu',
};

describe('telemetry report', () => {
  it('round-trips, and 64 neighbours still fit the size cap', () => {
    expect(decodeTelemetry(encodeTelemetry(report))).toEqual({ ok: true, value: report });
    const many = Array.from({ length: 64 }, (_, i) => `12D3KooW${String(i).padStart(44, 'x')}`);
    const full = { ...report, neighbours: many, rejections: { malformed: 1, truncated: 2, 'bad-hash': 3, timeout: 4 } };
    expect(decodeTelemetry(encodeTelemetry(full))).toEqual({ ok: true, value: full });
  });

  it('names each defect', () => {
    const reasonOf = (patch: Record<string, unknown>) => {
      const v = decodeTelemetry(utf8ToBytes(JSON.stringify({ ...report, ...patch })));
      return v.ok ? 'accepted' : v.reason;
    };
    expect(reasonOf({})).toBe('accepted');
    expect(reasonOf({ formatVersion: 9 })).toBe('unknown-version');
    expect(reasonOf({ rejections: { 'not-a-reason': 1 } })).toBe('malformed');
    expect(reasonOf({ rejections: { malformed: -1 } })).toBe('malformed');
    expect(reasonOf({ neighbours: [OTHER_PEER, OTHER_PEER] })).toBe('malformed');
    expect(reasonOf({ neighbours: Array.from({ length: 65 }, (_, i) => `12D3KooW${i}aaaa`) })).toBe('malformed');
    expect(reasonOf({ backend: 'Web GPU!' })).toBe('malformed');
    expect(reasonOf({ merges: 1.5 })).toBe('malformed');
    expect(reasonOf({ backend: 'x'.repeat(20_000) })).toBe('oversized');
    // A NaN loss is the peer's trouble, not a defect of the report: it goes out as null, marked unhealthy.
    expect(decodeTelemetry(encodeTelemetry({ ...report, trainLoss: NaN }))).toMatchObject({ ok: true, value: { trainLoss: null, health: 'unhealthy' } });
    expect(() => encodeTelemetry({ ...report, merges: -1 })).toThrow(WireFormatError);
  });
});
