import { readFile } from 'node:fs/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { useTestBackend } from '../test-backend.ts';
import type { Gpt2Config } from '../model/config.ts';
import { initGpt2Weights } from '../model/gpt2.ts';
import type { Adapter } from '../model/adapter.ts';
import { decodeAdapter } from '../wire/codec.ts';
import { importPeft } from '../io/peft.ts';
import { defaultRunManifest, wireRunId } from './run.ts';
import type { RunManifest } from '../wire/run-manifest.ts';
import { checkpointSlotKeys, decodeCheckpoint, encodeCheckpoint, memoryStore, CheckpointFormatError, validateCheckpoint, type PeerCheckpoint } from './peer-checkpoint.ts';
import { NoiseSource } from '../privacy/noise-source.ts';
import { addGaussianNoiseInPlace, adapterDifference, noiseStdFor, updateNorm } from '../privacy/mechanism.ts';
import { describePrivacySpent } from '../privacy/describe.ts';
import { cloneAdapter } from '../model/adapter.ts';
import type { PrivacyConfig } from '../privacy/config.ts';
import { PeerEngine, type EngineHost } from './peer-engine.ts';
import type { EngineOptions, MainToWorker, WorkerToMain } from './engine-protocol.ts';

const TINY: Gpt2Config = { nEmbd: 16, nLayer: 1, nHead: 2, nPositions: 32, vocabSize: 256, nInner: 32, layerNormEpsilon: 1e-5 };
const SHA = 'e'.repeat(64);
const H = 3;

function tinyManifest(overrides: Partial<RunManifest> = {}): RunManifest {
  const m = defaultRunManifest(SHA, { localSteps: H, codec: 'fp32' });
  return {
    ...m,
    lora: { r: 2, alpha: 4, targetModules: ['attn.c_attn', 'mlp.c_fc'] },
    schedule: { ...m.schedule, batchSize: 2, seqLen: 16, lr: 1e-2, warmupSteps: 1 },
    ...overrides,
  };
}

const OPTIONS: EngineOptions = {
  peerKey: 'tab-1', slot: 0, maxSteps: 0, mergeEnabled: true, bootstrapWaitMs: 0, evaluateEvery: 0, checkpointEvery: 1000,
  duty: 1, slowWhenHidden: false, halfLifeMs: 60_000, dropAfterMs: 300_000, evalBatches: 1,
};

interface Harness {
  engine: PeerEngine;
  messages: WorkerToMain[];
  store: ReturnType<typeof memoryStore>;
  send(m: MainToWorker): Promise<void>;
  until(pred: (m: WorkerToMain[]) => boolean, what: string): Promise<void>;
}

function harness(store = memoryStore(), clock?: () => number, privacySeed?: number): Harness {
  const messages: WorkerToMain[] = [];
  const host: EngineHost = {
    readCorpus: (path) => readFile(`public/data/brown/${path}`, 'utf8'),
    loadBase: async () => ({ config: TINY, weights: initGpt2Weights(TINY, 7), sha256: SHA }),
    store,
    // Messages are structured-cloned like postMessage does, so the test sees exactly what would cross the boundary.
    post: (message) => messages.push(structuredClone(message)),
    backendName: () => 'wasm',
    now: clock,
    ...(privacySeed === undefined
      ? {}
      : { privacyRandomness: () => ({ sampling: NoiseSource.fromTestSeed(privacySeed), noise: NoiseSource.fromTestSeed(privacySeed + 1) }) }),
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms >= 1000 ? Math.min(ms, 3000) : 0)),
  };
  const engine = new PeerEngine(host);
  return {
    engine,
    messages,
    store,
    send: (m) => engine.handle(m),
    async until(pred, what) {
      const deadline = Date.now() + 60_000;
      while (!pred(messages)) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        const error = messages.find((m) => m.type === 'error');
        if (error) throw new Error(`engine error: ${JSON.stringify(error)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
  };
}

const lastStatus = (messages: WorkerToMain[]) => {
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i];
    if (m.type === 'status' || m.type === 'ready') return m.status;
  }
  return undefined;
};
const stepOf = (messages: WorkerToMain[]) => lastStatus(messages)?.step ?? -1;

/** Every byte string in a message: ArrayBuffers as they are, everything else as its JSON text. */
function outgoingBytes(message: WorkerToMain): Uint8Array[] {
  const buffers: Uint8Array[] = [];
  const json = JSON.stringify(message, (_key, value) => {
    if (value instanceof ArrayBuffer) {
      buffers.push(new Uint8Array(value));
      return '[buffer]';
    }
    return value;
  });
  return [new TextEncoder().encode(json), ...buffers];
}

function contains(haystack: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

function adapterOf(bytes: ArrayBuffer): Adapter {
  const decoded = decodeAdapter(new Uint8Array(bytes));
  if (!decoded.ok) throw new Error(decoded.detail);
  return decoded.adapter;
}

beforeAll(async () => {
  await useTestBackend();
});

describe('checkpoint format', () => {
  it('round-trips every field and float exactly, and refuses damaged bytes by name', () => {
    const c: PeerCheckpoint = {
      wireRunId: 'r.1', peerKey: 'k', slot: 3, savedAtMs: 123,
      counters: { step: 40, samplesSeen: 320, tokensSeen: 40960, merges: 2, publishedVersion: 2, donatedMs: 5000, adaptersAccepted: 5 },
      adapter: {
        baseModelId: 'm', config: { r: 1, alpha: 2, targetModules: ['attn.c_attn'] },
        modules: new Map([['transformer.h.0.attn.c_attn', { a: Float32Array.of(1.5, -2), b: Float32Array.of(0.1, 1e-30, -3e38), inDim: 2, outDim: 3 }]]),
      },
      optimizer: { step: 40, moments: { 'x.lora_A': { m: Float32Array.of(0.25, -0.5), v: Float32Array.of(1, 2) } } },
      lossHistory: [{ step: 1, loss: 3.25, atMs: 1 }],
      heldOutHistory: [{ step: 0, own: 2, allGenres: 2.5, byGenre: { a: 2 }, atMs: 0 }],
      baseHeldOut: null,
      mergeHistory: [{ step: 20, atMs: 9, strategy: 'fedavg', inputs: [{ peerId: 'self', weight: 1, ageMs: 0 }], ms: 3 }],
      adoptedFrom: { peerId: 'p', step: 60 },
    };
    const bytes = encodeCheckpoint(c);
    expect(decodeCheckpoint(bytes)).toEqual(c);
    expect(() => decodeCheckpoint(bytes.subarray(0, bytes.length - 4))).toThrow(CheckpointFormatError);
    const bad = bytes.slice();
    bad[0] = 0;
    expect(() => decodeCheckpoint(bad)).toThrow(/bad magic/);
  });

  it('carries the round anchor beside the adapter, and refuses an anchor of another shape', () => {
    const pair = (a: number[], b: number[]) => ({ a: Float32Array.from(a), b: Float32Array.from(b), inDim: 2, outDim: 2 });
    const adapter: Adapter = { baseModelId: 'm', config: { r: 1, alpha: 2, targetModules: ['attn.c_attn'] }, modules: new Map([['m0', pair([1, 2], [3, 4])]]) };
    const anchor: Adapter = { ...adapter, modules: new Map([['m0', pair([0.5, -1], [0, 0.25])]]) };
    const c: PeerCheckpoint = {
      wireRunId: 'r', peerKey: 'k', slot: 0, savedAtMs: 1,
      counters: { step: 5, samplesSeen: 10, tokensSeen: 100, merges: 1, publishedVersion: 1, donatedMs: 1, adaptersAccepted: 1 },
      adapter, anchor, optimizer: { step: 5, moments: {} }, lossHistory: [], heldOutHistory: [], baseHeldOut: null, mergeHistory: [], adoptedFrom: null,
    };
    const back = decodeCheckpoint(encodeCheckpoint(c));
    expect(Array.from(back.anchor!.modules.get('m0')!.a)).toEqual([0.5, -1]);
    expect(Array.from(back.anchor!.modules.get('m0')!.b)).toEqual([0, 0.25]);
    expect(Array.from(back.adapter.modules.get('m0')!.a)).toEqual([1, 2]);
    const { anchor: _none, ...withoutAnchor } = c;
    expect(decodeCheckpoint(encodeCheckpoint(withoutAnchor)).anchor).toBeUndefined();
    const wrong: Adapter = { ...adapter, modules: new Map([['m0', { ...pair([1], [2]), inDim: 1, outDim: 1 }]]) };
    expect(() => encodeCheckpoint({ ...c, anchor: wrong })).toThrow(CheckpointFormatError);
  });

  it('carries the privacy ledger, refuses a damaged one by name, and a DP run takes only a copy with its own ledger', () => {
    const pair = () => ({ a: Float32Array.of(0.5, -1), b: Float32Array.of(0, 0.25), inDim: 2, outDim: 2 });
    const adapter: Adapter = { baseModelId: 'm', config: { r: 1, alpha: 2, targetModules: ['attn.c_attn'] }, modules: new Map([['m0', pair()]]) };
    const config: PrivacyConfig = { targetEpsilon: 8, delta: 1e-5, clipNorm: 0.05, samplingRate: 0.5, maxPublishes: 3 };
    const c: PeerCheckpoint = {
      wireRunId: 'r', peerKey: 'k', slot: 0, savedAtMs: 1,
      counters: { step: 6, samplesSeen: 12, tokensSeen: 100, merges: 0, publishedVersion: 2, donatedMs: 1, adaptersAccepted: 0 },
      adapter, anchor: adapter, optimizer: { step: 6, moments: {} }, lossHistory: [], heldOutHistory: [], baseHeldOut: null, mergeHistory: [], adoptedFrom: null,
      privacyLedger: { version: 1, config, publishes: 2 },
    };
    const bytes = encodeCheckpoint(c);
    expect(decodeCheckpoint(bytes)).toEqual(c);
    // Same length, so only the ledger is wrong.
    const damaged = Buffer.from(Buffer.from(bytes).toString('latin1').replace('"version":1', '"version":2'), 'latin1');
    expect(damaged.length).toBe(bytes.length);
    expect(() => decodeCheckpoint(damaged)).toThrow(/privacy ledger is damaged: privacy ledger version 2; this build reads 1/);
    const expected = { wireRunId: 'r', adapter, privacy: config };
    expect(validateCheckpoint(c, expected)).toMatchObject({ ok: true });
    const { privacyLedger: _l, ...noLedger } = c;
    expect(validateCheckpoint(noLedger, expected)).toMatchObject({ ok: false, reason: expect.stringMatching(/no privacy ledger/) });
    expect(validateCheckpoint(c, { ...expected, privacy: { ...config, targetEpsilon: 4 } })).toMatchObject({ ok: false, reason: expect.stringMatching(/another privacy setting/) });
    expect(validateCheckpoint(c, { wireRunId: 'r', adapter })).toMatchObject({ ok: false, reason: expect.stringMatching(/does not use differential privacy/) });
    expect(validateCheckpoint(noLedger, { wireRunId: 'r', adapter })).toMatchObject({ ok: true });
  });

  it('carries the outer momentum buffer exactly, refuses one of another shape, and a restore refuses a non-finite one', () => {
    const pair = (a: number[], b: number[]) => ({ a: Float32Array.from(a), b: Float32Array.from(b), inDim: 2, outDim: 2 });
    const adapter: Adapter = { baseModelId: 'm', config: { r: 1, alpha: 2, targetModules: ['attn.c_attn'] }, modules: new Map([['m0', pair([1, 2], [3, 4])]]) };
    const outerMomentum: Adapter = { ...adapter, modules: new Map([['m0', pair([0, 0], [-0.125, 1e-7])]]) };
    const c: PeerCheckpoint = {
      wireRunId: 'r', peerKey: 'k', slot: 0, savedAtMs: 1,
      counters: { step: 5, samplesSeen: 10, tokensSeen: 100, merges: 1, publishedVersion: 1, donatedMs: 1, adaptersAccepted: 1 },
      adapter, anchor: adapter, outerMomentum, optimizer: { step: 5, moments: {} }, lossHistory: [], heldOutHistory: [], baseHeldOut: null, mergeHistory: [], adoptedFrom: null,
    };
    const back = decodeCheckpoint(encodeCheckpoint(c));
    expect(back).toEqual(c);
    expect(Array.from(back.outerMomentum!.modules.get('m0')!.b)).toEqual([-0.125, Math.fround(1e-7)]);
    const { outerMomentum: _none, ...without } = c;
    expect(decodeCheckpoint(encodeCheckpoint(without)).outerMomentum).toBeUndefined();
    const wrong: Adapter = { ...adapter, modules: new Map([['m0', { ...pair([1], [2]), inDim: 1, outDim: 1 }]]) };
    expect(() => encodeCheckpoint({ ...c, outerMomentum: wrong })).toThrow(/outer momentum's module m0/);
    const nan: Adapter = { ...adapter, modules: new Map([['m0', pair([0, 0], [Number.NaN, 0])]]) };
    expect(validateCheckpoint(decodeCheckpoint(encodeCheckpoint({ ...c, outerMomentum: nan })), { wireRunId: 'r', adapter })).toEqual({ ok: false, reason: 'outer momentum: the adapter holds NaN or Infinity' });
  });
});

describe('peer engine (tfjs WASM in Node, real Brown data)', () => {
  it('local text never leaves the worker: its marker is in no outgoing message or payload', async () => {
    const marker = 'ZQX-LOCAL-MARKER-7731';
    const text = Array.from({ length: 200 }, (_, i) => `line ${i} ${marker} private diary entry\n`).join('');
    const h = harness();
    await h.send({ type: 'init', manifest: tinyManifest(), baseModelUrl: '/m/', backend: 'wasm', options: { ...OPTIONS, peerKey: 'private' } });
    await h.send({ type: 'local-text', name: 'diary.txt', text });
    await h.until((m) => stepOf(m) >= 3 * H, `${3 * H} steps`);
    await h.send({ type: 'export-peft', requestId: 1 });
    h.engine.stop();
    const status = lastStatus(h.messages)!;
    // The local file is really trained on, at half the mixture ...
    expect(status.data.find((d) => d.kind === 'local')).toMatchObject({ name: 'diary.txt', weight: 0.5 });
    expect(h.messages.filter((m) => m.type === 'publish').length).toBeGreaterThanOrEqual(3);
    expect(h.messages.some((m) => m.type === 'peft')).toBe(true);
    // ... and the search does find the marker where it is (the inbound message), so a miss below means absence.
    const needle = new TextEncoder().encode(marker);
    expect(contains(new TextEncoder().encode(JSON.stringify({ type: 'local-text', text })), needle)).toBe(true);
    for (const message of h.messages) {
      for (const bytes of outgoingBytes(message)) expect(contains(bytes, needle)).toBe(false);
    }
  });

  it('merges a neighbour with fedavg at the H boundary: result = mean of its published self and the clipped neighbour', async () => {
    const now = 1_000_000;
    const h = harness(memoryStore(), () => now);
    const manifest = tinyManifest();
    await h.send({ type: 'pause' });
    await h.send({ type: 'init', manifest, baseModelUrl: '/m/', backend: 'wasm', options: { ...OPTIONS, maxSteps: H } });
    const neighbour = await neighbourAdapter(manifest, 0.5);
    await h.send(adapterMessage(manifest, neighbour, 'peerNEIGHBOUR1', 1, now));
    expect(h.messages.find((m) => m.type === 'adapter-verdict')).toMatchObject({ ok: true, peerId: 'peerNEIGHBOUR1' });
    await h.send({ type: 'resume' });
    await h.until((m) => lastStatus(m)?.phase === 'done', 'done');
    h.engine.stop();
    const published = h.messages.find((m) => m.type === 'publish');
    if (published?.type !== 'publish') throw new Error('nothing published');
    expect(published.step).toBe(H);
    const self = adapterOf(published.bytes);
    const saved = await newestCheckpoint(h.store, manifest);
    expect(saved.counters.merges).toBe(1);
    expect(saved.mergeHistory[0].inputs).toEqual([{ peerId: 'self', weight: 1, ageMs: 0 }, { peerId: 'peerNEIGHBOUR1', weight: 1, ageMs: 0 }]);
    // The update guard's first rounds clip a neighbour to within τ = 2‖self‖ of self (centred clipping):
    // n' = self + (n − self)·min(1, τ/‖n − self‖); fedavg then gives (self + n')/2.
    let selfSq = 0;
    let diffSq = 0;
    for (const [, mine] of self.modules) for (const t of [mine.a, mine.b]) for (const v of t) (selfSq += v * v), (diffSq += (0.5 - v) ** 2);
    const scale = Math.min(1, (2 * Math.sqrt(selfSq)) / Math.sqrt(diffSq));
    expect(scale).toBeLessThan(1);
    expect(lastStatus(h.messages)!.guard.clipped).toBe(1);
    for (const [name, pair] of saved.adapter.modules) {
      const mine = self.modules.get(name)!;
      for (let i = 0; i < pair.a.length; i++) expect(pair.a[i]).toBeCloseTo(mine.a[i] + (scale * (0.5 - mine.a[i])) / 2, 5);
      for (let i = 0; i < pair.b.length; i++) expect(pair.b[i]).toBeCloseTo(mine.b[i] + (scale * (0.5 - mine.b[i])) / 2, 5);
    }
  });

  it('with differential privacy it publishes the round anchor + the update clipped to C + noise of σ = z·2C, and continues from that', async () => {
    const clipNorm = 0.01;
    const manifest = dpManifest({ clipNorm });
    const h = await trainOnePrivateRound(manifest);
    const publishes = h.messages.filter((m) => m.type === 'publish');
    expect(publishes).toHaveLength(1);
    if (publishes[0].type !== 'publish') throw new Error('unreachable');
    // The training loss is measured on the volunteer's records without noise, so it is not announced.
    expect(publishes[0].localLoss).toBeNull();
    const published = adapterOf(publishes[0].bytes);
    // The copy written before the bytes left: the released adapter as the peer's own, the round's anchor, the ledger.
    const copies = await storedCheckpoints(h.store, manifest);
    const beforeRelease = copies.find((c) => c.privacyLedger?.publishes === 1 && c.anchor && updateNorm(adapterDifference(c.adapter, c.anchor)) > 0);
    if (!beforeRelease?.anchor) throw new Error('no checkpoint with the ledger was written before the release');
    expectSameValues(beforeRelease.adapter, published);
    const status = lastStatus(h.messages)!.privacy!;
    expect(status).toMatchObject({ publishes: 1, maxPublishes: 3, targetEpsilon: 8, delta: 1e-5, clipNorm, samplingRate: 0.5, exhausted: false });
    expect(status.epsilonSpent).toBeGreaterThan(0);
    expect(status.epsilonSpent).toBeLessThan(8);
    // Replay the noise stream: what is left of (published − anchor) is the clipped update, of norm C (3 Adam steps at
    // lr 1e-2 move a few hundred values far more than 0.01).
    const noiseStd = noiseStdFor(clipNorm, status.noiseMultiplier);
    const noise = zeroLike(published);
    addGaussianNoiseInPlace(noise, noiseStd, NoiseSource.fromTestSeed(42));
    const released = adapterDifference(published, beforeRelease.anchor);
    const clipped = adapterDifference(released, noise);
    expect(updateNorm(clipped)).toBeLessThanOrEqual(clipNorm * (1 + 1e-4));
    expect(updateNorm(clipped)).toBeGreaterThan(clipNorm * 0.999);
    // And the scale on its own: the spread of (published − anchor) is σ, up to the clipped part and sampling error.
    const values = [...released.modules.values()].flatMap((p) => [...p.a, ...p.b]);
    const rms = Math.sqrt(values.reduce((s, v) => s + v * v, 0) / values.length);
    expect(rms / noiseStd).toBeGreaterThan(0.8);
    expect(rms / noiseStd).toBeLessThan(1.2);
  });

  it('with differential privacy the ledger survives a reload, and publishing stops when the budget is spent', async () => {
    const store = memoryStore();
    const manifest = dpManifest({ maxPublishes: 2 });
    const first = harness(store, undefined, 7);
    await first.send({ type: 'init', manifest, baseModelUrl: '/m/', backend: 'wasm', options: { ...OPTIONS, maxSteps: H } });
    await first.send({ type: 'local-text', name: 'diary.txt', text: DIARY });
    await first.until((m) => lastStatus(m)?.phase === 'done', 'first run done');
    first.engine.stop();
    const spentBefore = lastStatus(first.messages)!.privacy!;
    expect(spentBefore.publishes).toBe(1);

    const second = harness(store, undefined, 8);
    await second.send({ type: 'init', manifest, baseModelUrl: '/m/', backend: 'wasm', options: { ...OPTIONS, maxSteps: 4 * H } });
    const ready = second.messages.find((m) => m.type === 'ready');
    expect(ready?.type === 'ready' && ready.status.privacy).toMatchObject({ publishes: 1, epsilonSpent: spentBefore.epsilonSpent });
    await second.until((m) => lastStatus(m)?.phase === 'done', 'second run done');
    second.engine.stop();
    // One more release (step 2H); at 3H and 4H the next one would overspend: training goes on, nothing is shared.
    expect(second.messages.filter((m) => m.type === 'publish').map((m) => m.type === 'publish' && m.step)).toEqual([2 * H]);
    expect(stepOf(second.messages)).toBe(4 * H);
    const status = lastStatus(second.messages)!.privacy!;
    expect(status).toMatchObject({ publishes: 2, exhausted: true });
    expect(status.epsilonSpent).toBeLessThanOrEqual(8);
    expect(status.epsilonSpent).toBeGreaterThan(spentBefore.epsilonSpent);
    expect(second.messages.filter((m) => m.type === 'notice' && /spent their privacy budget/.test(m.message))).toHaveLength(1);
    expect(describePrivacySpent(status)).toMatch(/^your files: ε = [\d.]+ of 8 at δ = 1e-5 \(budget spent/);

    // A third load finds the spend and still shares nothing.
    const third = harness(store, undefined, 9);
    await third.send({ type: 'init', manifest, baseModelUrl: '/m/', backend: 'wasm', options: { ...OPTIONS, maxSteps: 5 * H } });
    await third.until((m) => lastStatus(m)?.phase === 'done', 'third run done');
    third.engine.stop();
    expect(third.messages.some((m) => m.type === 'publish')).toBe(false);
    expect(lastStatus(third.messages)!.privacy).toMatchObject({ publishes: 2, exhausted: true });
  });

  it('with differential privacy a run that ends mid-round ends on its last release, not on unreleased progress', async () => {
    const manifest = dpManifest();
    const h = harness(memoryStore(), undefined, 11);
    await h.send({ type: 'init', manifest, baseModelUrl: '/m/', backend: 'wasm', options: { ...OPTIONS, maxSteps: H + 2 } });
    await h.send({ type: 'local-text', name: 'diary.txt', text: DIARY });
    await h.until((m) => lastStatus(m)?.phase === 'done', 'done');
    h.engine.stop();
    const publishes = h.messages.filter((m) => m.type === 'publish');
    expect(publishes).toHaveLength(1);
    const released = adapterOf((publishes[0] as Extract<WorkerToMain, { type: 'publish' }>).bytes);
    const saved = await newestCheckpoint(h.store, manifest);
    expect(saved.counters.step).toBe(H + 2);
    expectSameValues(saved.adapter, released);
    expect(lastStatus(h.messages)!.heldOut!.step).toBe(H + 2);
  });

  it('with differential privacy a file that δ cannot cover is refused in words; without it the status has no privacy', async () => {
    const h = harness(memoryStore(), undefined, 3);
    // δ = 0.01 covers fewer than 100 records; the file makes 117 of 17 bytes.
    await h.send({ type: 'pause' });
    await h.send({ type: 'init', manifest: dpManifest({ delta: 0.01 }), baseModelUrl: '/m/', backend: 'wasm', options: OPTIONS });
    await h.send({ type: 'local-text', name: 'big.txt', text: DIARY });
    h.engine.stop();
    expect(h.messages.find((m) => m.type === 'notice' && m.level === 'warning')).toMatchObject({ message: expect.stringMatching(/^big\.txt is not used: δ = 0\.01 is not below 1\/117/) });
    expect(lastStatus(h.messages)!.data.some((d) => d.kind === 'local')).toBe(false);
    const plain = harness();
    await plain.send({ type: 'pause' });
    await plain.send({ type: 'init', manifest: tinyManifest(), baseModelUrl: '/m/', backend: 'wasm', options: OPTIONS });
    plain.engine.stop();
    expect(lastStatus(plain.messages)!.privacy).toBeNull();
  });

  it('reports the backend choice and its reason that the host gave it before init', async () => {
    const h = harness();
    h.engine.setBackendInfo('WebGPU adapter is SwiftShader (software): WASM is faster', 'swiftshader');
    await h.send({ type: 'pause' });
    await h.send({ type: 'init', manifest: tinyManifest(), baseModelUrl: '/m/', backend: 'wasm', options: OPTIONS });
    h.engine.stop();
    expect(h.messages.find((m) => m.type === 'ready')).toMatchObject({ info: { backendReason: 'WebGPU adapter is SwiftShader (software): WASM is faster', adapterInfo: 'swiftshader' } });
  });

  it('refuses adapters of another run or another schema, with the reason', async () => {
    const h = harness();
    const manifest = tinyManifest();
    await h.send({ type: 'pause' });
    await h.send({ type: 'init', manifest, baseModelUrl: '/m/', backend: 'wasm', options: OPTIONS });
    await h.send({ ...(adapterMessage(manifest, await neighbourAdapter(manifest, 0.1), 'peerOTHERRUN1', 1, 0) as Extract<MainToWorker, { type: 'adapter' }>), runId: 'another-run.0123' });
    const otherRank = tinyManifest({ lora: { r: 4, alpha: 4, targetModules: ['attn.c_attn', 'mlp.c_fc'] } });
    await h.send(adapterMessage(manifest, await neighbourAdapter(otherRank, 0.1), 'peerOTHERRANK', 1, 0));
    h.engine.stop();
    const verdicts = h.messages.filter((m) => m.type === 'adapter-verdict');
    expect(verdicts).toMatchObject([
      { peerId: 'peerOTHERRUN1', ok: false, reason: 'wrong-run' },
      { peerId: 'peerOTHERRANK', ok: false, reason: 'schema-mismatch' },
    ]);
    expect(lastStatus(h.messages)!.adaptersRefused).toEqual({ 'wrong-run': 1, 'schema-mismatch': 1 });
  });

  it('resumes from its checkpoint: step counter, loss history and merges continue', async () => {
    const store = memoryStore();
    const manifest = tinyManifest();
    const first = harness(store);
    await first.send({ type: 'init', manifest, baseModelUrl: '/m/', backend: 'wasm', options: { ...OPTIONS, checkpointEvery: 2, maxSteps: 4 } });
    await first.until((m) => lastStatus(m)?.phase === 'done', 'first run done');
    first.engine.stop();
    const firstLosses = first.messages.flatMap((m) => (m.type === 'status' && m.newLoss ? [m.newLoss] : []));
    expect(firstLosses.map((l) => l.step)).toEqual([1, 2, 3, 4]);

    const second = harness(store);
    await second.send({ type: 'init', manifest, baseModelUrl: '/m/', backend: 'wasm', options: { ...OPTIONS, checkpointEvery: 2, maxSteps: 6 } });
    const ready = second.messages.find((m) => m.type === 'ready');
    if (ready?.type !== 'ready') throw new Error('not ready');
    expect(ready.status.resumedFromStep).toBe(4);
    expect(ready.info.lossHistory).toEqual(firstLosses);
    await second.until((m) => lastStatus(m)?.phase === 'done', 'second run done');
    second.engine.stop();
    const secondSteps = second.messages.flatMap((m) => (m.type === 'status' && m.newLoss ? [m.newLoss.step] : []));
    expect(secondSteps).toEqual([5, 6]);
    // A fresh tab (another key) starts from zero.
    const other = harness(store);
    await other.send({ type: 'pause' });
    await other.send({ type: 'init', manifest, baseModelUrl: '/m/', backend: 'wasm', options: { ...OPTIONS, peerKey: 'tab-2' } });
    other.engine.stop();
    expect(other.messages.find((m) => m.type === 'ready')).toMatchObject({ status: { step: 0, resumedFromStep: null } });
  });

  it('a late joiner adopts the offer that fits its own data best, never blindly the first: poison loses', async () => {
    const manifest = tinyManifest();
    // A veteran that trained on this genre: the offer a joiner should want.
    const veteran = harness();
    await veteran.send({ type: 'init', manifest, baseModelUrl: '/m/', backend: 'wasm', options: { ...OPTIONS, peerKey: 'veteran', maxSteps: 4 * H } });
    await veteran.until((m) => lastStatus(m)?.phase === 'done', 'veteran done');
    veteran.engine.stop();
    const trained = adapterOf([...veteran.messages].reverse().find((m) => m.type === 'publish')!.bytes as ArrayBuffer);

    const h = harness();
    await h.send({ type: 'init', manifest, baseModelUrl: '/m/', backend: 'wasm', options: { ...OPTIONS, bootstrapWaitMs: 60_000, maxSteps: 1 } });
    expect(lastStatus(h.messages)!.phase).toBe('bootstrapping');
    // Offered first: an adapter beyond the bounds, and one of legal but large values; the trained one comes last.
    await h.send(adapterMessage(manifest, await neighbourAdapter(manifest, 1e30), 'peerPOISON001', 1, Date.now()));
    await h.send(adapterMessage(manifest, await neighbourAdapter(manifest, 3), 'peerLARGE0001', 1, Date.now()));
    await h.send(adapterMessage(manifest, trained, 'peerVETERAN01', 9, Date.now()));
    await h.until((m) => lastStatus(m)?.phase === 'done', 'one step after adopting');
    h.engine.stop();
    const adopted = lastStatus(h.messages)!.adoptedFrom;
    expect(adopted).toEqual({ peerId: 'peerVETERAN01', step: 180 });
  });

  it('a late joiner offered only poison starts fresh', async () => {
    const manifest = tinyManifest();
    const h = harness();
    await h.send({ type: 'init', manifest, baseModelUrl: '/m/', backend: 'wasm', options: { ...OPTIONS, bootstrapWaitMs: 60_000, maxSteps: 1 } });
    for (const [i, value] of [1e30, 65504, 3].entries()) {
      await h.send(adapterMessage(manifest, await neighbourAdapter(manifest, value), `peerPOISON00${i}`, 1, Date.now()));
    }
    await h.until((m) => lastStatus(m)?.phase === 'done', 'one step');
    h.engine.stop();
    expect(lastStatus(h.messages)!.adoptedFrom).toBeNull();
    expect(h.messages.some((m) => m.type === 'notice' && /fits this peer's data better than starting fresh/.test(m.message))).toBe(true);
  });
});

describe('outer optimiser and frozen A in the engine', () => {
  /** Every value of the adapter after one outer Nesterov step from θ with zero momentum: θ − η·(Δ + β·m), m = Δ. */
  const expectNesterovFromZero = (saved: PeerCheckpoint, theta: Adapter, lr: number, beta: number) => {
    const m = saved.outerMomentum!;
    expect(m).toBeDefined();
    let moved = 0;
    for (const [name, pair] of saved.adapter.modules) {
      for (const k of ['a', 'b'] as const) {
        const got = pair[k], start = theta.modules.get(name)![k], mom = m.modules.get(name)![k];
        for (let i = 0; i < got.length; i++) {
          expect(got[i]).toBeCloseTo(start[i] - lr * (1 + beta) * mom[i], 5);
          moved = Math.max(moved, Math.abs(mom[i]));
        }
      }
    }
    expect(moved).toBeGreaterThan(1e-3); // the buffer is not trivially zero
  };

  it('nesterov steps from the round anchor after a merge, and its momentum survives a reload of the engine', async () => {
    const now = 1_000_000;
    const store = memoryStore();
    const manifest = tinyManifest({ outer: { name: 'nesterov', params: { lr: 0.5, momentum: 0.5 } } });
    const h = harness(store, () => now);
    await h.send({ type: 'pause' });
    await h.send({ type: 'init', manifest, baseModelUrl: '/m/', backend: 'wasm', options: { ...OPTIONS, maxSteps: H } });
    await h.send(adapterMessage(manifest, await neighbourAdapter(manifest, 0.5), 'peerNEIGHBOUR1', 1, now));
    await h.send({ type: 'resume' });
    await h.until((m) => lastStatus(m)?.phase === 'done', 'done');
    h.engine.stop();
    const saved = await newestCheckpoint(store, manifest);
    expect(saved.counters.merges).toBe(1);
    // The round started from the fresh adapter (the run's seeded A, B = 0); the neighbour arrived this round, so the
    // whole Δ is fresh: m = Δ and the adapter is θ₀ − 0.5·(Δ + 0.5·Δ).
    expectNesterovFromZero(saved, await freshAdapter(manifest), 0.5, 0.5);
    expect(saved.anchor).toEqual(saved.adapter);

    // A reloaded engine goes on with the same buffer: one more step (no boundary) and its checkpoint holds it unchanged.
    const second = harness(store, () => now);
    await second.send({ type: 'init', manifest, baseModelUrl: '/m/', backend: 'wasm', options: { ...OPTIONS, maxSteps: H + 1 } });
    await second.until((m) => lastStatus(m)?.phase === 'done', 'second done');
    second.engine.stop();
    const resumed = await newestCheckpoint(store, manifest);
    expect(resumed.counters.step).toBe(H + 1);
    expect(resumed.outerMomentum).toEqual(saved.outerMomentum);
  });

  it('a late joiner adopts an adapter but not a momentum: its first outer step starts from zero', async () => {
    const now = 2_000_000;
    const manifest = tinyManifest({ outer: { name: 'nesterov', params: { lr: 1, momentum: 0.9 } } });
    const veteran = harness(memoryStore(), () => now);
    await veteran.send({ type: 'init', manifest, baseModelUrl: '/m/', backend: 'wasm', options: { ...OPTIONS, peerKey: 'veteran', maxSteps: 2 * H } });
    await veteran.until((m) => lastStatus(m)?.phase === 'done', 'veteran done');
    veteran.engine.stop();
    const trained = adapterOf([...veteran.messages].reverse().find((m) => m.type === 'publish')!.bytes as ArrayBuffer);

    const store = memoryStore();
    const h = harness(store, () => now);
    await h.send({ type: 'init', manifest, baseModelUrl: '/m/', backend: 'wasm', options: { ...OPTIONS, bootstrapWaitMs: 60_000, maxSteps: H } });
    for (const peer of ['peerVETERAN01', 'peerVETERAN02', 'peerVETERAN03']) await h.send(adapterMessage(manifest, trained, peer, 1, now));
    await h.until((m) => lastStatus(m)?.phase === 'done', 'joiner done');
    h.engine.stop();
    expect(lastStatus(h.messages)!.adoptedFrom?.peerId).toMatch(/^peerVETERAN0/);
    const saved = await newestCheckpoint(store, manifest);
    expect(saved.counters.merges).toBe(1);
    expectNesterovFromZero(saved, trained, 1, 0.9);
  });

  it("with differential privacy in a frozen-A run the release carries the run's A exactly (receivers refuse any other), and noised B", async () => {
    const dp = dpManifest({ clipNorm: 0.01 });
    const manifest: RunManifest = { ...dp, lora: { ...dp.lora, mode: 'frozen-a' } };
    const h = await trainOnePrivateRound(manifest);
    const publish = h.messages.find((m) => m.type === 'publish');
    if (publish?.type !== 'publish') throw new Error('nothing was published');
    const published = adapterOf(publish.bytes);
    const runA = await freshAdapter(manifest);
    for (const [name, pair] of runA.modules) {
      expect(Array.from(published.modules.get(name)!.a)).toEqual(Array.from(pair.a));
      expect(published.modules.get(name)!.b.some((v) => v !== 0)).toBe(true);
    }
  });

  it("in a frozen-A run A never moves: not by training, not by a merge that re-factorises, not by a neighbour's A", async () => {
    const now = 3_000_000;
    const manifest = tinyManifest({ strategy: { name: 'exact-average', params: {} }, lora: { ...tinyManifest().lora, mode: 'frozen-a' } });
    const store = memoryStore();
    const h = harness(store, () => now);
    await h.send({ type: 'pause' });
    await h.send({ type: 'init', manifest, baseModelUrl: '/m/', backend: 'wasm', options: { ...OPTIONS, maxSteps: H } });
    const runA = await freshAdapter(manifest);
    const onRunA = await neighbourAdapter(manifest, 0.05);
    for (const [name, pair] of onRunA.modules) pair.a.set(runA.modules.get(name)!.a);
    const movedA = await neighbourAdapter(manifest, 0.05);
    for (const [name, pair] of movedA.modules) pair.a.set(runA.modules.get(name)!.a.map((v, i) => (i === 0 ? v + 1e-3 : v)));
    await h.send(adapterMessage(manifest, onRunA, 'peerHONEST001', 1, now));
    await h.send(adapterMessage(manifest, movedA, 'peerMOVEDA001', 1, now));
    await h.send({ type: 'resume' });
    await h.until((m) => lastStatus(m)?.phase === 'done', 'done');
    await h.send({ type: 'export-peft', requestId: 7 });
    h.engine.stop();
    const verdicts = h.messages.filter((m) => m.type === 'adapter-verdict');
    expect(verdicts).toMatchObject([{ peerId: 'peerHONEST001', ok: true }, { peerId: 'peerMOVEDA001', ok: false, reason: 'frozen-factor' }]);
    const published = adapterOf(h.messages.find((m) => m.type === 'publish')!.bytes as ArrayBuffer);
    const saved = await newestCheckpoint(store, manifest);
    expect(saved.counters.merges).toBe(1);
    const peft = h.messages.find((m) => m.type === 'peft');
    if (peft?.type !== 'peft') throw new Error('no PEFT export');
    const exported = importPeft({ adapterConfig: new Uint8Array(peft.files['adapter_config.json']), safetensors: new Uint8Array(peft.files['adapter_model.safetensors']) }, manifest.baseModel.id);
    for (const [name, pair] of runA.modules) {
      for (const held of [published, saved.adapter, saved.anchor!, exported]) expect(Array.from(held.modules.get(name)!.a)).toEqual(Array.from(pair.a));
      // B trained and merged: it moved away from zero.
      expect(saved.adapter.modules.get(name)!.b.some((v) => v !== 0)).toBe(true);
    }
  });
});

describe('a hostile neighbour or a damaged store never halts the peer', () => {
  it('a neighbour adapter beyond the bounds is refused at the merge: the checkpoint holds the peer\'s own adapter', async () => {
    const now = 1_000_000;
    const h = harness(memoryStore(), () => now);
    const manifest = tinyManifest();
    await h.send({ type: 'pause' });
    await h.send({ type: 'init', manifest, baseModelUrl: '/m/', backend: 'wasm', options: { ...OPTIONS, maxSteps: H } });
    await h.send(adapterMessage(manifest, await neighbourAdapter(manifest, 1e30), 'peerPOISON001', 1, now));
    await h.send({ type: 'resume' });
    await h.until((m) => lastStatus(m)?.phase === 'done', 'done');
    h.engine.stop();
    const published = h.messages.find((m) => m.type === 'publish');
    if (published?.type !== 'publish') throw new Error('nothing published');
    const self = adapterOf(published.bytes);
    const saved = await newestCheckpoint(h.store, manifest);
    const status = lastStatus(h.messages)!;
    expect(status.merges).toBe(0);
    expect(status.guard.refused).toBe(1);
    expect(status.guard.byPeer.peerPOISON001).toEqual({ clipped: 0, refused: 1 });
    expect(saved.mergeHistory.at(-1)?.outcome).toBe('no-usable-input');
    for (const [name, pair] of saved.adapter.modules) {
      expect(Array.from(pair.a)).toEqual(Array.from(self.modules.get(name)!.a));
      expect(Array.from(pair.b)).toEqual(Array.from(self.modules.get(name)!.b));
    }
  });

  it('a torn newest copy falls back to the other slot; unusable copies start fresh with a message', async () => {
    const manifest = tinyManifest();
    const store = memoryStore();
    const first = harness(store);
    await first.send({ type: 'init', manifest, baseModelUrl: '/m/', backend: 'wasm', options: { ...OPTIONS, checkpointEvery: 2, maxSteps: 4 } });
    await first.until((m) => lastStatus(m)?.phase === 'done', 'first run done');
    first.engine.stop();
    const [slotA, slotB] = checkpointSlotKeys(`checkpoint/${wireRunId(manifest)}/tab-1`);
    const copies = await Promise.all([slotA, slotB].map(async (k) => decodeCheckpoint((await store.get(k))!)));
    const newestKey = copies[0].counters.step > copies[1].counters.step ? slotA : slotB;
    const olderStep = Math.min(copies[0].counters.step, copies[1].counters.step);
    const torn = (await store.get(newestKey))!;
    await store.put(newestKey, torn.subarray(0, torn.length - 100));
    const resumed = harness(store);
    await resumed.send({ type: 'pause' });
    await resumed.send({ type: 'init', manifest, baseModelUrl: '/m/', backend: 'wasm', options: OPTIONS });
    resumed.engine.stop();
    expect(resumed.messages.find((m) => m.type === 'ready')).toMatchObject({ status: { resumedFromStep: olderStep } });
    expect(resumed.messages.some((m) => m.type === 'notice' && /could not be used/.test(m.message))).toBe(true);

    // Now damage both: garbage in one, a header without its fields in the other.
    await store.put(slotA, Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9]));
    const header = new TextEncoder().encode('{"formatVersion":1}');
    const noFields = new Uint8Array(8 + header.length);
    noFields.set([0x53, 0x57, 0x43, 0x4b]);
    new DataView(noFields.buffer).setUint32(4, header.length, true);
    noFields.set(header, 8);
    await store.put(slotB, noFields);
    const fresh = harness(store);
    await fresh.send({ type: 'pause' });
    await fresh.send({ type: 'init', manifest, baseModelUrl: '/m/', backend: 'wasm', options: OPTIONS });
    fresh.engine.stop();
    expect(fresh.messages.find((m) => m.type === 'ready')).toMatchObject({ status: { step: 0, resumedFromStep: null } });
    expect(fresh.messages.some((m) => m.type === 'notice' && /starts fresh/.test(m.message))).toBe(true);
    expect(fresh.messages.some((m) => m.type === 'error')).toBe(false);
  });

  it('refuses a stored checkpoint with NaN values or of another run, by validation and not by accident', async () => {
    const manifest = tinyManifest();
    const store = memoryStore();
    const first = harness(store);
    await first.send({ type: 'init', manifest, baseModelUrl: '/m/', backend: 'wasm', options: { ...OPTIONS, checkpointEvery: 2, maxSteps: 2 } });
    await first.until((m) => lastStatus(m)?.phase === 'done', 'first run done');
    first.engine.stop();
    const keys = checkpointSlotKeys(`checkpoint/${wireRunId(manifest)}/tab-1`);
    const good = (await Promise.all(keys.map((k) => store.get(k)))).find(Boolean)!;
    const c = decodeCheckpoint(good);
    const nan = structuredClone(c);
    nan.adapter.modules.values().next().value!.b[0] = Number.NaN;
    const other = { ...structuredClone(c), wireRunId: 'another-run.0123456789abcdef' };
    for (const [bad, reason] of [[nan, /NaN/], [other, /belongs to run another-run/]] as const) {
      await store.put(keys[0], encodeCheckpoint(bad));
      await store.delete(keys[1]);
      const h = harness(store);
      await h.send({ type: 'pause' });
      await h.send({ type: 'init', manifest, baseModelUrl: '/m/', backend: 'wasm', options: OPTIONS });
      h.engine.stop();
      expect(h.messages.find((m) => m.type === 'ready')).toMatchObject({ status: { step: 0, resumedFromStep: null } });
      expect(h.messages.some((m) => m.type === 'notice' && reason.test(m.message))).toBe(true);
    }
  });
});

const DIARY = Array.from({ length: 70 }, (_, i) => `day ${i}: a private line of my own\n`).join('').slice(0, 2000);

/** A fresh DP peer with the volunteer's diary trains one round of H steps (one release), then stops. */
async function trainOnePrivateRound(manifest: RunManifest): Promise<Harness> {
  const h = harness(memoryStore(), undefined, 41);
  await h.send({ type: 'pause' });
  await h.send({ type: 'init', manifest, baseModelUrl: '/m/', backend: 'wasm', options: { ...OPTIONS, maxSteps: H } });
  await h.send({ type: 'local-text', name: 'diary.txt', text: DIARY });
  await h.send({ type: 'resume' });
  await h.until((m) => lastStatus(m)?.phase === 'done', 'done');
  h.engine.stop();
  return h;
}

function dpManifest(privacy: Partial<PrivacyConfig> = {}): RunManifest {
  return { ...tinyManifest(), privacy: { targetEpsilon: 8, delta: 1e-5, clipNorm: 0.05, samplingRate: 0.5, maxPublishes: 3, ...privacy } };
}

async function storedCheckpoints(store: ReturnType<typeof memoryStore>, manifest: RunManifest): Promise<PeerCheckpoint[]> {
  const copies: PeerCheckpoint[] = [];
  for (const key of checkpointSlotKeys(`checkpoint/${wireRunId(manifest)}/tab-1`)) {
    const bytes = await store.get(key);
    if (bytes) copies.push(decodeCheckpoint(bytes));
  }
  return copies;
}

function zeroLike(adapter: Adapter): Adapter {
  const z = cloneAdapter(adapter);
  for (const p of z.modules.values()) {
    p.a.fill(0);
    p.b.fill(0);
  }
  return z;
}

function expectSameValues(x: Adapter, y: Adapter): void {
  expect([...x.modules.keys()].sort()).toEqual([...y.modules.keys()].sort());
  for (const [name, p] of x.modules) {
    expect(Array.from(p.a)).toEqual(Array.from(y.modules.get(name)!.a));
    expect(Array.from(p.b)).toEqual(Array.from(y.modules.get(name)!.b));
  }
}

async function newestCheckpoint(store: ReturnType<typeof memoryStore>, manifest: RunManifest): Promise<PeerCheckpoint> {
  const copies = [];
  for (const key of checkpointSlotKeys(`checkpoint/${wireRunId(manifest)}/tab-1`)) {
    const bytes = await store.get(key);
    if (bytes) copies.push(decodeCheckpoint(bytes));
  }
  copies.sort((a, b) => b.counters.step - a.counters.step || b.savedAtMs - a.savedAtMs);
  if (!copies[0]) throw new Error('no checkpoint stored');
  return copies[0];
}

/** The adapter a peer of this run starts from: the run's seeded A, B = 0 (built outside the engine). */
async function freshAdapter(manifest: RunManifest): Promise<Adapter> {
  const { Gpt2Model } = await import('../model/gpt2.ts');
  const model = new Gpt2Model(TINY, initGpt2Weights(TINY, 7), { baseModelId: manifest.baseModel.id });
  model.attachLora(manifest.lora, manifest.schedule.seed as number);
  const adapter = await model.getAdapter();
  model.dispose();
  return adapter;
}

/** An adapter of the manifest's schema built outside the engine, every factor value set to `value`. */
async function neighbourAdapter(manifest: RunManifest, value: number): Promise<Adapter> {
  const { Gpt2Model } = await import('../model/gpt2.ts');
  const model = new Gpt2Model(TINY, initGpt2Weights(TINY, 7), { baseModelId: manifest.baseModel.id });
  model.attachLora(manifest.lora, 99);
  const adapter = await model.getAdapter();
  model.dispose();
  for (const p of adapter.modules.values()) {
    p.a.fill(value);
    p.b.fill(value);
  }
  return adapter;
}

function adapterMessage(manifest: RunManifest, adapter: Adapter, peerId: string, version: number, receivedAtMs: number): MainToWorker {
  return {
    type: 'adapter', adapter, peerId, version, step: version * 20, samplesSeen: version * 160, localLoss: 2,
    runId: wireRunId(manifest), baseModelSha256: manifest.baseModel.sha256, schemaHash: 'unused-by-engine', receivedAtMs,
  };
}
