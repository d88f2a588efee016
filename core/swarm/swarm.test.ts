import { describe, expect, it } from 'vitest';
import { NeighbourTable, type NeighbourAdapterMeta } from './neighbours.ts';
import { stalenessWeight, StalenessPolicyError, DEFAULT_STALENESS } from './staleness.ts';
import { actionsAfterStep, CadenceError, checkCadence, restAfterStep } from './cadence.ts';
import { checkCompatibility, explainRejection } from './compatibility.ts';
import {
  base64UrlDecode,
  base64UrlEncode,
  defaultRunManifest,
  encodeRunLink,
  parseRunLink,
  runTrainingSettings,
  RunSettingsError,
  wireRunId,
} from './run.ts';
import { TelemetryGate, telemetryReport, telemetryTopic } from './telemetry.ts';
import { decodeTelemetry, encodeTelemetry } from '../wire/telemetry.ts';
import { mergeWith } from '../merge/registry.ts';
import type { Adapter } from '../model/adapter.ts';
import { RUN_ID_PATTERN } from '../wire/constants.ts';

const SHA = 'a'.repeat(64);
const OTHER_SHA = 'b'.repeat(64);
const ID = { runId: 'run.x', baseModelSha256: SHA, schemaHash: 'c'.repeat(32) };

/** A one-module adapter whose every A value is `a` and every B value is `b`. */
function constantAdapter(a: number, b: number): Adapter {
  return {
    baseModelId: 'm',
    config: { r: 1, alpha: 1, targetModules: ['attn.c_attn'] },
    modules: new Map([['transformer.h.0.attn.c_attn', { a: new Float32Array(2).fill(a), b: new Float32Array(3).fill(b), inDim: 2, outDim: 3 }]]),
  };
}

function meta(peerId: string, version: number, receivedAtMs: number): NeighbourAdapterMeta {
  return { peerId, version, step: version * 20, samplesSeen: version * 160, localLoss: 2, receivedAtMs };
}

describe('staleness weights', () => {
  it('halve every half-life and drop to zero at the limit', () => {
    const p = { halfLifeMs: 1000, dropAfterMs: 5000 };
    expect(stalenessWeight(0, p)).toBe(1);
    expect(stalenessWeight(-50, p)).toBe(1);
    expect(stalenessWeight(1000, p)).toBeCloseTo(0.5, 12);
    expect(stalenessWeight(3000, p)).toBeCloseTo(0.125, 12);
    expect(stalenessWeight(4999, p)).toBeGreaterThan(0);
    expect(stalenessWeight(5000, p)).toBe(0);
    expect(stalenessWeight(Number.NaN, p)).toBe(0);
  });
  it('refuses a nonsensical policy', () => {
    expect(() => new NeighbourTable(ID, { halfLifeMs: 0, dropAfterMs: 10 })).toThrow(StalenessPolicyError);
    expect(() => new NeighbourTable(ID, { halfLifeMs: 10, dropAfterMs: Number.POSITIVE_INFINITY })).toThrow(StalenessPolicyError);
  });
});

describe('neighbour table', () => {
  it('keeps only the freshest version per neighbour and refuses replays', () => {
    const table = new NeighbourTable(ID);
    expect(table.offer(constantAdapter(1, 1), meta('peerAAAAAAAA', 2, 0), ID).ok).toBe(true);
    const replay = table.offer(constantAdapter(9, 9), meta('peerAAAAAAAA', 2, 10), ID);
    expect(replay).toMatchObject({ ok: false, reason: 'replayed' });
    const older = table.offer(constantAdapter(9, 9), meta('peerAAAAAAAA', 1, 10), ID);
    expect(older).toMatchObject({ ok: false, reason: 'replayed' });
    expect(table.get('peerAAAAAAAA')!.adapter.modules.get('transformer.h.0.attn.c_attn')!.a[0]).toBe(1);
    expect(table.offer(constantAdapter(3, 3), meta('peerAAAAAAAA', 5, 20), ID).ok).toBe(true);
    expect(table.get('peerAAAAAAAA')!.meta.version).toBe(5);
    expect(table.get('peerAAAAAAAA')!.accepted).toBe(2);
    expect(table.size).toBe(1);
  });

  it('refuses neighbours of another run, base model or schema, with the reason', () => {
    const table = new NeighbourTable(ID);
    expect(table.offer(constantAdapter(1, 1), meta('p1AAAAAAAA', 1, 0), { ...ID, runId: 'run.y' })).toMatchObject({ ok: false, reason: 'wrong-run' });
    expect(table.offer(constantAdapter(1, 1), meta('p1AAAAAAAA', 1, 0), { ...ID, baseModelSha256: OTHER_SHA })).toMatchObject({ ok: false, reason: 'wrong-base-model' });
    expect(table.offer(constantAdapter(1, 1), meta('p1AAAAAAAA', 1, 0), { ...ID, schemaHash: 'd'.repeat(32) })).toMatchObject({ ok: false, reason: 'schema-mismatch' });
    expect(table.size).toBe(0);
    expect(checkCompatibility(ID, ID).ok).toBe(true);
    expect(explainRejection('12D3KooWabcdefghijkl', 'wrong-run', 'x')).toBe('Peer 12D3Ko…ijkl is in a different run (another run manifest: strategy, data, schedule or model differ): x.');
  });

  it('builds merge inputs self first, weighted by age, and drops neighbours past the limit', () => {
    const policy = { halfLifeMs: 1000, dropAfterMs: 4000 };
    const table = new NeighbourTable(ID, policy);
    table.offer(constantAdapter(2, 2), meta('zzzzPEERzz', 1, 10_000), ID); // age 0 at t=10 000
    table.offer(constantAdapter(4, 4), meta('aaaaPEERaa', 1, 8_000), ID); // age 2000
    table.offer(constantAdapter(8, 8), meta('mmmmPEERmm', 1, 5_000), ID); // age 5000: dropped
    const self = constantAdapter(0, 0);
    const inputs = table.mergeInputs({ peerId: 'selfPEERxx', adapter: self, samples: 10 }, 10_000);
    expect(inputs.map((i) => i.meta.peerId)).toEqual(['selfPEERxx', 'aaaaPEERaa', 'zzzzPEERzz']);
    expect(inputs.map((i) => i.weight)).toEqual([1, 0.25, 1]);
    expect(inputs[1].meta.ageMs).toBe(2000);
    expect(table.size).toBe(2);
    // fedavg over these inputs: (1·0 + 0.25·4 + 1·2) / 2.25 for every value.
    const merged = mergeWith('fedavg', inputs);
    const pair = merged.modules.get('transformer.h.0.attn.c_attn')!;
    expect(pair.a[0]).toBeCloseTo(3 / 2.25, 6);
    expect(pair.b[2]).toBeCloseTo(3 / 2.25, 6);
    // Inputs are untouched by the merge.
    expect(self.modules.get('transformer.h.0.attn.c_attn')!.a[0]).toBe(0);
    expect(table.summary(10_000).map((s) => [s.peerId, s.weight])).toEqual([['zzzzPEERzz', 1], ['aaaaPEERaa', 0.25]]);
    expect(table.prune(12_500)).toEqual(['aaaaPEERaa']);
  });

  it('with no neighbours the merge input is self alone', () => {
    const table = new NeighbourTable(ID);
    const inputs = table.mergeInputs({ peerId: 'selfPEERxx', adapter: constantAdapter(1, 1), samples: 0 }, 0);
    expect(inputs).toHaveLength(1);
    expect(DEFAULT_STALENESS.dropAfterMs).toBeGreaterThan(DEFAULT_STALENESS.halfLifeMs);
  });
});

describe('cadence', () => {
  const c = { localSteps: 20, checkpointEvery: 50, evaluateEvery: 60 };
  it('publishes every H steps, merges only when a neighbour counts, checkpoints after merges and every N', () => {
    expect(actionsAfterStep(19, 3, c)).toEqual({ publish: false, merge: false, evaluate: false, checkpoint: false });
    expect(actionsAfterStep(20, 3, c)).toEqual({ publish: true, merge: true, evaluate: false, checkpoint: true });
    expect(actionsAfterStep(40, 0, c)).toEqual({ publish: true, merge: false, evaluate: false, checkpoint: false });
    expect(actionsAfterStep(50, 0, c)).toEqual({ publish: false, merge: false, evaluate: false, checkpoint: true });
    expect(actionsAfterStep(60, 0, c)).toEqual({ publish: true, merge: false, evaluate: true, checkpoint: false });
    expect(actionsAfterStep(0, 3, c).publish).toBe(false);
  });
  it('rests in proportion to the duty cycle', () => {
    expect(restAfterStep(100, 1)).toBe(0);
    expect(restAfterStep(100, 0.5)).toBe(100);
    expect(restAfterStep(100, 0.25)).toBe(300);
    expect(restAfterStep(100, 0)).toBe(Number.POSITIVE_INFINITY);
  });
  it('refuses H = 0', () => {
    expect(() => checkCadence({ ...c, localSteps: 0 })).toThrow(CadenceError);
  });
});

describe('run manifests and links', () => {
  it('the default run is a valid manifest with the documented settings', () => {
    const m = defaultRunManifest(SHA);
    expect(m.lora).toEqual({ r: 8, alpha: 16, targetModules: ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj'] });
    expect(m.localSteps).toBe(20);
    expect(m.codec).toBe('fp16');
    const settings = runTrainingSettings(m);
    expect(settings.partition).toEqual({ kind: 'genre', genres: ['fiction', 'mystery', 'science_fiction', 'adventure', 'romance', 'humor'] });
    expect(settings.batchSize).toBe(8);
  });
  it('the wire run id changes with anything in the manifest', () => {
    const a = wireRunId(defaultRunManifest(SHA));
    expect(RUN_ID_PATTERN.test(a)).toBe(true);
    expect(wireRunId(defaultRunManifest(SHA))).toBe(a);
    expect(wireRunId(defaultRunManifest(OTHER_SHA))).not.toBe(a);
    expect(wireRunId(defaultRunManifest(SHA, { localSteps: 10 }))).not.toBe(a);
    expect(wireRunId(defaultRunManifest(SHA, { strategy: { name: 'ties', params: {} } }))).not.toBe(a);
  });
  it('base64url matches the RFC 4648 test vectors', () => {
    const enc = (s: string) => base64UrlEncode(new TextEncoder().encode(s));
    expect(['', 'f', 'fo', 'foo', 'foob', 'fooba', 'foobar'].map(enc)).toEqual(['', 'Zg', 'Zm8', 'Zm9v', 'Zm9vYg', 'Zm9vYmE', 'Zm9vYmFy']);
    expect(base64UrlEncode(Uint8Array.of(0xfb, 0xff))).toBe('-_8');
    expect(Array.from(base64UrlDecode('-_8')!)).toEqual([0xfb, 0xff]);
    expect(new TextDecoder().decode(base64UrlDecode('Zm9vYmFy')!)).toBe('foobar');
    expect(base64UrlDecode('a')).toBeNull();
    expect(base64UrlDecode('ab+c')).toBeNull();
  });
  it('a run link round-trips the manifest; bad links are refused with a reason', () => {
    const m = defaultRunManifest(SHA, { localSteps: 7 });
    const parsed = parseRunLink(encodeRunLink(m));
    expect(parsed.ok && parsed.value.kind === 'manifest' && parsed.value.manifest).toEqual(m);
    expect(parseRunLink(null)).toEqual({ ok: true, value: { kind: 'default' } });
    expect(parseRunLink('f'.repeat(64))).toEqual({ ok: true, value: { kind: 'id', id: 'f'.repeat(64) } });
    expect(parseRunLink('%%%')).toMatchObject({ ok: false, reason: 'malformed' });
    expect(parseRunLink(base64UrlEncode(new TextEncoder().encode('{"formatVersion":1}')))).toMatchObject({ ok: false, reason: 'malformed' });
  });
  it('refuses unusable training settings by name', () => {
    const m = defaultRunManifest(SHA);
    expect(() => runTrainingSettings({ ...m, schedule: { ...m.schedule, lr: -1 } })).toThrow(RunSettingsError);
    expect(() => runTrainingSettings({ ...m, data: { kind: 'zipf', genres: ['a'] } })).toThrow(/unknown partition kind/);
  });
});

describe('telemetry', () => {
  const snapshot = {
    peerId: '12D3KooWselfselfself',
    runId: 'run.x',
    timeMs: 1_700_000_000_000.7,
    step: 40,
    trainLoss: Number.NaN,
    heldOutLoss: 1.5,
    merges: 2,
    bytesSent: 1000,
    bytesReceived: -5,
    versionsAnnounced: 2,
    versionsFetched: 3,
    neighbours: ['12D3KooWbbbbbbbbbb', '12D3KooWaaaaaaaaaa', '12D3KooWbbbbbbbbbb', 'bad id!'],
    rejections: { 'wrong-run': 2, malformed: 0 },
    tokensPerSecond: Number.POSITIVE_INFINITY,
    backend: 'WebGPU!',
  };
  it('turns any snapshot into a report the wire codec accepts', () => {
    const report = telemetryReport(snapshot);
    expect(report.trainLoss).toBeNull();
    expect(report.bytesReceived).toBe(0);
    expect(report.timeMs).toBe(1_700_000_000_000);
    expect(report.neighbours).toEqual(['12D3KooWaaaaaaaaaa', '12D3KooWbbbbbbbbbb']);
    expect(report.rejections).toEqual({ 'wrong-run': 2 });
    expect(report.tokensPerSecond).toBeNull();
    expect(report.backend).toBe('other');
    const decoded = decodeTelemetry(encodeTelemetry(report));
    expect(decoded.ok && decoded.value).toEqual(report);
    expect(telemetryTopic('run.x')).toBe('swarm/run/run.x/telemetry/1');
  });
  it('lets one report through per interval', () => {
    const gate = new TelemetryGate(10_000);
    expect(gate.take(0)).toBe(true);
    expect(gate.take(9_999)).toBe(false);
    expect(gate.take(10_000)).toBe(true);
    expect(gate.due(15_000)).toBe(false);
  });
});
