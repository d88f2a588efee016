// The peer session between real libp2p nodes in this process (WebSockets on 127.0.0.1): what an engine publishes
// reaches the other peer's engine decoded, refusals are explained once, telemetry carries the neighbours, and the
// relay watchdog says when a peer is alone and when it no longer is.
import { afterEach, describe, expect, it } from 'vitest';
import { webSockets } from '@libp2p/websockets';
import { PeerSession, type PeerSessionHost, type SessionProblemKind } from './peer-session.ts';
import { syntheticPayload, syntheticRunContext } from './synthetic-adapter.ts';
import { defaultRunManifest } from '../core/swarm/run.ts';
import { runManifestId } from '../core/wire/run-manifest.ts';
import type { EngineStatus, MainToWorker, ReadyInfo } from '../core/swarm/engine-protocol.ts';
import type { SwarmNodeInit } from './node.ts';

const RUN = 'session-test';
const SIZE = 60_000;
const sessions: PeerSession[] = [];

interface RecordingHost extends PeerSessionHost {
  toEngineLog: MainToWorker[];
  notices: string[];
  problems: Array<{ kind: SessionProblemKind; message: string }>;
  cleared: SessionProblemKind[];
}

function recordingHost(): RecordingHost {
  const host: RecordingHost = {
    toEngineLog: [], notices: [], problems: [], cleared: [],
    toEngine: (message) => void host.toEngineLog.push(message),
    notice: (_level, message) => void host.notices.push(message),
    problem: (kind, message) => void host.problems.push({ kind, message }),
    clearProblem: (kind) => void host.cleared.push(kind),
  };
  return host;
}

const LOCAL: Omit<SwarmNodeInit, 'relays'> = {
  transport: { transports: [webSockets()], addresses: { listen: ['/ip4/127.0.0.1/tcp/0/ws'] } },
  dial: { isDirectAddress: (ma) => ma.toString().includes('/ws') },
};

function readyInfo(): ReadyInfo {
  const context = syntheticRunContext(SIZE);
  const manifest = { ...defaultRunManifest(context.baseModelSha256), runId: RUN };
  return {
    manifest, manifestId: runManifestId(manifest), wireRunId: RUN, schemaHash: context.schemaHash, baseModelId: context.baseModelId,
    baseModelSha256: context.baseModelSha256, backend: 'wasm', backendReason: '', codec: 'fp32', payloadBytes: syntheticPayload(SIZE, 0).bytes.length, lossHistory: [], heldOutHistory: [], mergeHistory: [],
  };
}

function engineStatus(step: number): EngineStatus {
  return {
    phase: 'training', backend: 'wasm', step, samplesSeen: step * 4, tokensSeen: step * 256, tokensPerSecond: 100, trainLoss: 2.5, heldOut: null,
    baseHeldOut: null, merges: 1, publishedVersion: 1, neighbours: [], lastMerge: null, checkpoint: null, resumedFromStep: null, adoptedFrom: null,
    donatedMs: 0, duty: 1, data: [], adaptersAccepted: 0, adaptersRefused: {}, guard: { clipped: 0, refused: 0, mergesRefused: 0, byPeer: {} },
    health: { state: 'ok', reason: null },
  };
}

async function waitFor(condition: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function joinedPeer(options: ConstructorParameters<typeof PeerSession>[1] = {}): Promise<{ session: PeerSession; host: RecordingHost }> {
  const host = recordingHost();
  const session = new PeerSession(host, options);
  sessions.push(session);
  expect(await session.start([], LOCAL)).toBeDefined();
  const info = readyInfo();
  session.onEngineMessage({ type: 'ready', info, status: engineStatus(0) });
  expect(await session.joinRun(info)).toBe(true);
  return { session, host };
}

async function connect(a: PeerSession, b: PeerSession): Promise<void> {
  const [na, nb] = [a.swarmNode!, b.swarmNode!];
  await na.libp2p.dial(nb.multiaddrs()[0]);
  const topic = na.exchange.topic;
  await waitFor(
    () => na.libp2p.services.pubsub.getSubscribers(topic).some((p) => p.equals(nb.peerId)) && nb.libp2p.services.pubsub.getSubscribers(topic).some((p) => p.equals(na.peerId)),
    'gossipsub subscriptions',
  );
}

afterEach(async () => {
  await Promise.all(sessions.splice(0).map((s) => s.stop()));
});

describe('PeerSession', () => {
  it('announces what its engine publishes; the other peer\'s engine gets the adapter decoded, with the manifest\'s fields', async () => {
    const a = await joinedPeer();
    const b = await joinedPeer();
    await connect(a.session, b.session);
    const payload = syntheticPayload(SIZE, 7);
    a.session.onEngineMessage({
      type: 'publish', bytes: payload.bytes.slice().buffer, version: 3, step: 15, samplesSeen: 60, localLoss: 2.25, codec: 'fp32', schemaHash: payload.schemaHash,
    });
    await waitFor(() => b.host.toEngineLog.some((m) => m.type === 'adapter'), 'the adapter at the other engine');
    const received = b.host.toEngineLog.find((m) => m.type === 'adapter') as Extract<MainToWorker, { type: 'adapter' }>;
    expect(received).toMatchObject({ peerId: a.session.swarmNode!.peerId.toString(), version: 3, step: 15, samplesSeen: 60, localLoss: 2.25, runId: RUN, schemaHash: payload.schemaHash });
    const [name, pair] = [...payload.adapter.modules][0];
    expect(received.adapter.modules.get(name)!.a).toEqual(pair.a);
    expect(received.adapter.modules.get(name)!.b).toEqual(pair.b);
    const network = a.session.tick();
    expect(network.versionsAnnounced).toBe(1);
    expect(network.neighbours).toEqual([b.session.swarmNode!.peerId.toString()]);
    await waitFor(() => b.session.tick().bytesReceived === payload.bytes.length, 'the fetched byte count');
  });

  it('explains a refusal by the engine once per peer and reason, counts each, and shows run mismatches as problems', async () => {
    const { session, host } = await joinedPeer();
    const peer = '12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq';
    session.onEngineMessage({ type: 'adapter-verdict', peerId: peer, version: 1, ok: false, reason: 'out-of-bounds', detail: 'norm 1e9' });
    session.onEngineMessage({ type: 'adapter-verdict', peerId: peer, version: 2, ok: false, reason: 'out-of-bounds', detail: 'norm 1e9' });
    session.onEngineMessage({ type: 'adapter-verdict', peerId: peer, version: 3, ok: false, reason: 'wrong-base-model', detail: 'sha 00' });
    session.onEngineMessage({ type: 'adapter-verdict', peerId: peer, version: 4, ok: true });
    expect(host.notices.filter((n) => n.includes(peer.slice(-4)))).toHaveLength(1);
    expect(host.problems.map((p) => p.kind)).toEqual(['run-mismatch']);
    expect(host.problems[0].message).toContain('not merged');
    expect(session.tick().rejections).toEqual({ 'out-of-bounds': 2, 'wrong-base-model': 1 });
  });

  it('publishes telemetry that names its direct neighbours, at most once per interval', async () => {
    const a = await joinedPeer({ telemetryMs: 60_000 });
    const b = await joinedPeer();
    await connect(a.session, b.session);
    a.session.onEngineMessage({ type: 'status', status: engineStatus(12) });
    a.session.tick();
    a.session.tick();
    const reports = a.session.telemetry();
    expect(reports).toHaveLength(1);
    expect(reports[0]).toMatchObject({ peerId: a.session.swarmNode!.peerId.toString(), runId: RUN, step: 12, merges: 1, neighbours: [b.session.swarmNode!.peerId.toString()] });
  });

  it('says when a peer has neither relay nor neighbour for the grace time, and clears it once a neighbour connects', async () => {
    const a = await joinedPeer({ relayGraceMs: 100, relayHint: 'start one' });
    a.session.tick();
    expect(a.host.problems).toEqual([]);
    await new Promise((r) => setTimeout(r, 150));
    a.session.tick();
    expect(a.host.problems).toHaveLength(1);
    expect(a.host.problems[0]).toMatchObject({ kind: 'relay-unreachable' });
    expect(a.host.problems[0].message).toContain('start one');
    a.session.tick();
    expect(a.host.problems).toHaveLength(1);
    const b = await joinedPeer();
    await connect(a.session, b.session);
    await waitFor(() => (a.session.tick(), a.host.cleared.includes('relay-unreachable')), 'the problem to clear');
    expect(a.host.notices.at(-1)).toContain('reachable again');
  });
});
