/**
 * Fuzzing every decoder and validator of core/wire with seeded random and mutated inputs (16,000 cases, sparse deltas included).
 * Properties: no exception escapes; whatever a decoder accepts is well-formed by the encoder's own rules (it
 * re-encodes to the same value); and validation against the original announcement rejects every payload mutation.
 */
import { describe, expect, it } from 'vitest';
import { createRng } from '../util/random.ts';
import { assertAdapterShapes, moduleNames, schemaHash, type Adapter } from '../model/adapter.ts';
import { decodeAdapter, encodeAdapter, type PayloadCodec } from './codec.ts';
import {
  announcementFor,
  decodeAnnouncement,
  validatePayload,
  decodeRunManifest,
  decodeTelemetry,
  encodeAnnouncement,
  encodeRunManifest,
  encodeTelemetry,
  runManifestId,
  validateAnnouncement,
  validatePayloadSync,
  type AnnouncementContext,
  type AnnouncementManifest,
  type RunManifest,
  type TelemetryReport,
} from './manifest.ts';
import { makeAdapter } from './test-support.ts';
import { DeltaReceiver, DeltaSender } from './delta-stream.ts';
import { decodeSparseDelta, encodeSparseDelta, sparseLayout, type SparseConfig } from './sparse-delta.ts';
import type { RejectReason } from './verdict.ts';

const random = createRng(0x5eed_f00d);
const below = (n: number) => Math.floor(random() * n);
const pick = <T>(items: readonly T[]): T => items[below(items.length)];

const PEER = '12D3KooWGzh9rWkZ3hPpnmYkzLaLM9C4wGxKXn5c1QJ7mkd8bSuq';
const OTHER_PEER = '12D3KooWQbM3nFZbBqz8Z1k2eYgVjVx9rGZQ1aTgT3dTn9mKq7Pa';
const BASE_SHA = 'ab'.repeat(32);

function randomBytes(length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = below(256);
  return out;
}

function sameBytes(x: Uint8Array, y: Uint8Array): boolean {
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/** Offsets near the start are where lengths and counts live, so mutations favour them half of the time. */
function position(length: number): number {
  return random() < 0.5 ? below(Math.min(length, 160)) : below(length);
}

const BYTE_MUTATIONS = ['bit-flips', 'truncate', 'extend', 'overwrite-run', 'huge-u32', 'insert', 'delete', 'swap-ranges', 'set-byte'] as const;

function mutateBytes(source: Uint8Array): { bytes: Uint8Array; kind: string } {
  const kind = pick(BYTE_MUTATIONS);
  const b = source.slice();
  if (b.length === 0) return { bytes: randomBytes(1 + below(8)), kind: 'extend' };
  switch (kind) {
    case 'bit-flips': {
      const flips = 1 + below(8);
      for (let i = 0; i < flips; i++) b[position(b.length)] ^= 1 << below(8);
      return { bytes: b, kind };
    }
    case 'truncate':
      return { bytes: b.slice(0, below(b.length)), kind };
    case 'extend': {
      const extra = random() < 0.5 ? new Uint8Array(1 + below(8)) : randomBytes(1 + below(64));
      const out = new Uint8Array(b.length + extra.length);
      out.set(b);
      out.set(extra, b.length);
      return { bytes: out, kind };
    }
    case 'overwrite-run': {
      const at = position(b.length);
      b.fill(pick([0x00, 0xff, 0x7f, 0x80]), at, at + 1 + below(8));
      return { bytes: b, kind };
    }
    case 'huge-u32': {
      // A declared length, count or dim turned huge (or zero).
      const at = position(Math.max(1, b.length - 3));
      new DataView(b.buffer).setUint32(at, pick([0xffffffff, 0x7fffffff, 0x10000, 0x01000000, 0]), true);
      return { bytes: b, kind };
    }
    case 'insert': {
      const at = position(b.length);
      const extra = randomBytes(1 + below(6));
      const out = new Uint8Array(b.length + extra.length);
      out.set(b.subarray(0, at));
      out.set(extra, at);
      out.set(b.subarray(at), at + extra.length);
      return { bytes: out, kind };
    }
    case 'delete': {
      const at = position(b.length);
      const count = Math.min(1 + below(6), b.length - at);
      const out = new Uint8Array(b.length - count);
      out.set(b.subarray(0, at));
      out.set(b.subarray(at + count), at);
      return { bytes: out, kind };
    }
    case 'swap-ranges': {
      const width = 1 + below(8);
      if (b.length < 2 * width) return { bytes: b.slice(0, b.length - 1), kind: 'truncate' };
      const x = below(b.length - width);
      const y = below(b.length - width);
      const tmp = b.slice(x, x + width);
      b.copyWithin(x, y, y + width);
      b.set(tmp, y);
      return { bytes: b, kind };
    }
    case 'set-byte':
      b[position(b.length)] = below(256);
      return { bytes: b, kind };
  }
}

/** Runs a call, rethrowing any escaping exception with the case that produced it. */
function noThrow<T>(label: string, call: () => T): T {
  try {
    return call();
  } catch (error) {
    throw new Error(`${label}: exception escaped: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`);
  }
}

/** What every accepted adapter must satisfy, independent of how it was produced. */
function checkAcceptedAdapter(adapter: Adapter, label: string): void {
  assertAdapterShapes(adapter);
  const names = moduleNames(adapter);
  expect([...adapter.modules.keys()], label).toEqual(names);
  for (const pair of adapter.modules.values()) {
    for (const values of [pair.a, pair.b]) {
      for (let i = 0; i < values.length; i++) {
        if (!Number.isFinite(values[i])) throw new Error(`${label}: accepted a non-finite value`);
      }
    }
  }
}

const adapter = makeAdapter({ nEmbd: 12, nLayer: 2, r: 2, targets: ['attn.c_attn', 'mlp.c_fc'], seed: 21 });
const payloads = Object.fromEntries((['fp32', 'fp16', 'int8'] as const).map((codec) => [codec, encodeAdapter(adapter, codec)])) as Record<PayloadCodec, Uint8Array>;
const ctx: AnnouncementContext = {
  runId: 'brown-lora-1',
  baseModelSha256: BASE_SHA,
  schemaHash: schemaHash(adapter),
  senderPeerId: PEER,
  lastVersionFromPeer: 6,
  maxPayloadBytes: 1 << 20,
};
const manifests = Object.fromEntries(
  (['fp32', 'fp16', 'int8'] as const).map((codec) => [
    codec,
    announcementFor(payloads[codec], {
      runId: ctx.runId, peerId: PEER, baseModelId: adapter.baseModelId, baseModelSha256: BASE_SHA, schemaHash: ctx.schemaHash,
      version: 7, step: 140, samplesSeen: 2240, localLoss: 3.25, codec, createdAtMs: 1_760_000_000_000,
    }),
  ]),
) as Record<PayloadCodec, AnnouncementManifest>;

describe('fuzz: adapter payloads', () => {
  const mutatedCopies: { bytes: Uint8Array; codec: PayloadCodec; reason: string }[] = [];

  it('4,500 mutated payloads: no exception, accepted ones are canonical, validation rejects every mutation', () => {
    const reasons = new Set<RejectReason>();
    let decodedOk = 0;
    let cases = 0;
    for (const codec of ['fp32', 'fp16', 'int8'] as const) {
      const original = payloads[codec];
      for (let i = 0; i < 1500; i++, cases++) {
        const { bytes, kind } = mutateBytes(original);
        const label = `${codec} case ${i} (${kind})`;
        const decoded = noThrow(label, () => decodeAdapter(bytes));
        if (decoded.ok) {
          decodedOk++;
          checkAcceptedAdapter(decoded.adapter, label);
          expect(decoded.schemaHash, label).toBe(schemaHash(decoded.adapter));
          // Canonical: one encoding per adapter, so an accepted payload is exactly what the encoder writes for it.
          expect(sameBytes(noThrow(label, () => encodeAdapter(decoded.adapter, decoded.codec)), bytes), label).toBe(true);
        } else {
          reasons.add(decoded.reason);
        }
        const verdict = noThrow(label, () => validatePayloadSync(bytes, manifests[codec], { schemaHash: ctx.schemaHash }));
        if (!sameBytes(bytes, original)) expect(verdict.ok, `${label} passed payload validation`).toBe(false);
        if (i < 200) mutatedCopies.push({ bytes, codec, reason: verdict.ok ? 'accepted' : verdict.reason });
      }
    }
    expect(cases).toBe(4500);
    // The mutations reach past the header (some tensor flips decode) and trip the deep checks too.
    expect(decodedOk).toBeGreaterThan(100);
    for (const reason of ['malformed', 'truncated', 'unknown-version', 'non-finite'] as const) expect(reasons).toContain(reason);
  });

  it('the async validator (WebCrypto hashing) gives the same verdict as the sync one on 600 of those mutations', async () => {
    expect(mutatedCopies.length).toBe(600);
    for (const { bytes, codec, reason } of mutatedCopies) {
      const verdict = await validatePayload(bytes, manifests[codec], { schemaHash: ctx.schemaHash });
      expect(verdict.ok ? 'accepted' : verdict.reason).toBe(reason);
    }
    const honest = await validatePayload(payloads.int8, manifests.int8, { schemaHash: ctx.schemaHash });
    expect(honest.ok).toBe(true);
  });

  it('2,500 random byte strings, half behind a valid header prefix, to every decoder', () => {
    const prefix = payloads.fp32.subarray(0, 8);
    for (let i = 0; i < 2500; i++) {
      const body = randomBytes(below(i % 10 === 0 ? 4096 : 300));
      const bytes = i % 2 === 0 ? body : new Uint8Array([...prefix, ...body]);
      const label = `random case ${i}`;
      const decoded = noThrow(label, () => decodeAdapter(bytes));
      if (decoded.ok) checkAcceptedAdapter(decoded.adapter, label);
      for (const decoder of [decodeAnnouncement, decodeTelemetry, decodeRunManifest] as const) {
        const verdict = noThrow(label, () => decoder(bytes));
        // Random bytes almost never form JSON; if they did, they would still have to be a complete manifest.
        expect(verdict.ok, label).toBe(false);
      }
      expect(noThrow(label, () => validatePayloadSync(bytes, manifests.fp32, { schemaHash: ctx.schemaHash })).ok).toBe(false);
    }
  });
});

describe('fuzz: sparse deltas', () => {
  const config: SparseConfig = { chunk: 16, keep: 2, keyframeEvery: 100 };
  const layout = sparseLayout(adapter, config);
  const hash = schemaHash(adapter);
  const sender = new DeltaSender(config);
  const keyframe = sender.publish(encodeAdapter(adapter, 'fp16'), 1);
  const moved = makeAdapter({ nEmbd: 12, nLayer: 2, r: 2, targets: ['attn.c_attn', 'mlp.c_fc'], seed: 22 });
  const delta = sender.publish(encodeAdapter(moved, 'fp16'), 2);
  const receiverFor = () => {
    const receiver = new DeltaReceiver({ template: adapter, schemaHash: hash, codec: 'fp16', config });
    expect(receiver.receive(PEER, keyframe.bytes, 1).ok).toBe(true);
    return receiver;
  };

  it('3,000 mutated deltas: no exception, accepted ones are canonical, and what a receiver rebuilds is finite', () => {
    expect([keyframe.keyframe, delta.keyframe]).toEqual([true, false]);
    const reasons = new Set<RejectReason>();
    let decodedOk = 0;
    for (let i = 0; i < 3000; i++) {
      const { bytes, kind } = mutateBytes(delta.bytes);
      const label = `delta case ${i} (${kind})`;
      const decoded = noThrow(label, () => decodeSparseDelta(bytes, hash, layout));
      if (decoded.ok) {
        decodedOk++;
        expect(sameBytes(noThrow(label, () => encodeSparseDelta(decoded, layout)), bytes), label).toBe(true);
      } else {
        reasons.add(decoded.reason);
      }
      const rebuilt = noThrow(label, () => receiverFor().receive(PEER, bytes, 2));
      if (rebuilt.ok) checkAcceptedAdapter(rebuilt.value.adapter, label);
      // A delta that decodes is refused only for naming another version than announced, or another base.
      else if (decoded.ok) expect(rebuilt.reason, label).toBe(decoded.version !== 2 ? 'malformed' : 'delta-base-mismatch');
    }
    expect(decodedOk).toBeGreaterThan(100);
    for (const reason of ['malformed', 'truncated', 'oversized', 'schema-mismatch', 'non-finite'] as const) expect(reasons).toContain(reason);
  });

  it('1,000 random byte strings behind the delta’s header: refused, never thrown', () => {
    const prefix = delta.bytes.subarray(0, 40);
    for (let i = 0; i < 1000; i++) {
      const body = randomBytes(below(i % 10 === 0 ? 4096 : 300));
      const bytes = i % 2 === 0 ? body : new Uint8Array([...prefix, ...body]);
      const label = `random delta case ${i}`;
      const decoded = noThrow(label, () => decodeSparseDelta(bytes, hash, layout));
      if (decoded.ok) expect(bytes.length, label).toBe(layout.payloadBytes);
      noThrow(label, () => receiverFor().receive(PEER, bytes, 2));
    }
  });
});

const HOSTILE_VALUES: unknown[] = [
  -1, 0, 1.5, 2 ** 53, 1e308, -0, '', 'x'.repeat(300), null, true, [], {}, [1, 2], { version: 8 }, '0'.repeat(64), 'AB'.repeat(32),
  PEER, OTHER_PEER, 'fp32', 'int8', 'bf16', 'brown-lora-1', 'other-run', '../../etc/passwd', '\u0000', '\u00e9', 8, 7, 6,
];

/** JSON-level mutations: drop, add, swap, retype, duplicate or rename fields. */
function mutateObject(source: Record<string, unknown>): { text: string; kind: string } {
  const obj: Record<string, unknown> = JSON.parse(JSON.stringify(source));
  const keys = Object.keys(obj);
  const kind = pick(['drop', 'add', 'swap', 'retype', 'duplicate', 'rename', 'nest', 'numeric-text'] as const);
  switch (kind) {
    case 'drop':
      delete obj[pick(keys)];
      break;
    case 'add':
      obj[pick(['extra', '__proto__', 'constructor', 'Version', ''])] = pick(HOSTILE_VALUES);
      break;
    case 'swap': {
      const x = pick(keys);
      const y = pick(keys);
      [obj[x], obj[y]] = [obj[y], obj[x]];
      break;
    }
    case 'retype':
      obj[pick(keys)] = pick(HOSTILE_VALUES);
      break;
    case 'duplicate': {
      // JSON.parse keeps the last duplicate: an attacker's way to hide a second value.
      const text = JSON.stringify(obj);
      return { text: `${text.slice(0, -1)},${JSON.stringify(pick(keys))}:${JSON.stringify(pick(HOSTILE_VALUES))}}`, kind };
    }
    case 'rename': {
      const key = pick(keys);
      obj[key.toUpperCase()] = obj[key];
      delete obj[key];
      break;
    }
    case 'nest': {
      const key = pick(keys);
      obj[key] = { value: obj[key] };
      break;
    }
    case 'numeric-text': {
      const text = JSON.stringify(obj);
      return { text: text.replace(/:(\d+)/, `:${pick(['1e999', '-1e999', '1.0000000000000002', '9007199254740993', '0x10', '01'])}`), kind };
    }
  }
  return { text: JSON.stringify(obj), kind };
}

function asBytes(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i) & 0xff;
  return out;
}

function mutatedJson(valid: Uint8Array): { bytes: Uint8Array; kind: string } {
  if (random() < 0.5) return mutateBytes(valid);
  const source = JSON.parse(String.fromCharCode(...valid)) as Record<string, unknown>;
  const { text, kind } = mutateObject(source);
  return { bytes: asBytes(text), kind };
}

describe('fuzz: announcements', () => {
  it('3,000 mutated announcements: accepted ones are valid, and only the true announcement admits the payload', () => {
    let decodedOk = 0;
    let validated = 0;
    for (let i = 0; i < 3000; i++) {
      const codec = pick(['fp32', 'fp16', 'int8'] as const);
      const { bytes, kind } = mutatedJson(encodeAnnouncement(manifests[codec]));
      const label = `announcement case ${i} (${kind})`;
      const decoded = noThrow(label, () => decodeAnnouncement(bytes));
      if (!decoded.ok) continue;
      decodedOk++;
      const m = decoded.value;
      // Accepted means well-formed by the encoder's rules, and stable under re-encoding.
      const reencoded = noThrow(label, () => encodeAnnouncement(m));
      expect(decodeAnnouncement(reencoded), label).toEqual({ ok: true, value: m });
      const verdict = noThrow(label, () => validateAnnouncement(m, ctx));
      if (verdict.ok) {
        validated++;
        expect([m.peerId, m.runId, m.baseModelSha256, m.schemaHash], label).toEqual([PEER, ctx.runId, BASE_SHA, ctx.schemaHash]);
        expect(m.version, label).toBeGreaterThan(ctx.lastVersionFromPeer!);
        expect(m.payloadBytes, label).toBeLessThanOrEqual(ctx.maxPayloadBytes!);
      }
      // The honest payload passes only under an announcement that describes it truthfully.
      const payload = noThrow(label, () => validatePayloadSync(payloads[codec], m, { schemaHash: ctx.schemaHash }));
      if (payload.ok) {
        expect([m.payloadBytes, m.payloadSha256, m.codec, m.schemaHash, m.baseModelId], label).toEqual([
          manifests[codec].payloadBytes, manifests[codec].payloadSha256, codec, ctx.schemaHash, adapter.baseModelId,
        ]);
      }
    }
    expect(decodedOk).toBeGreaterThan(100);
    expect(validated).toBeGreaterThan(10);
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

const report: TelemetryReport = {
  formatVersion: 1, peerId: PEER, runId: 'brown-lora-1', timeMs: 1_760_000_000_000, step: 400, trainLoss: 2.9, heldOutLoss: null,
  merges: 19, bytesSent: 12_000_000, bytesReceived: 30_000_000, versionsAnnounced: 20, versionsFetched: 55,
  neighbours: [OTHER_PEER], rejections: { 'bad-hash': 2, replayed: 1 }, tokensPerSecond: 5120.5, backend: 'webgpu',
};

describe('fuzz: run manifests and telemetry', () => {
  it('1,000 mutated run manifests: accepted ones re-encode to themselves and have an id', () => {
    let decodedOk = 0;
    for (let i = 0; i < 1000; i++) {
      const { bytes, kind } = mutatedJson(encodeRunManifest(run));
      const label = `run manifest case ${i} (${kind})`;
      const decoded = noThrow(label, () => decodeRunManifest(bytes));
      if (!decoded.ok) continue;
      decodedOk++;
      expect(decodeRunManifest(noThrow(label, () => encodeRunManifest(decoded.value))), label).toEqual(decoded);
      expect(noThrow(label, () => runManifestId(decoded.value))).toMatch(/^[0-9a-f]{64}$/);
    }
    expect(decodedOk).toBeGreaterThan(50);
  });

  it('1,000 mutated telemetry reports: accepted ones re-encode to themselves', () => {
    let decodedOk = 0;
    for (let i = 0; i < 1000; i++) {
      const { bytes, kind } = mutatedJson(encodeTelemetry(report));
      const label = `telemetry case ${i} (${kind})`;
      const decoded = noThrow(label, () => decodeTelemetry(bytes));
      if (!decoded.ok) continue;
      decodedOk++;
      expect(decodeTelemetry(noThrow(label, () => encodeTelemetry(decoded.value))), label).toEqual(decoded);
    }
    expect(decodedOk).toBeGreaterThan(50);
  });
});
