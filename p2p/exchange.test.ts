// The adapter exchange between real libp2p nodes in this process, talking over WebSockets on 127.0.0.1.
import { afterEach, describe, expect, it } from 'vitest';
import { webSockets } from '@libp2p/websockets';
import type { Stream } from '@libp2p/interface';
import { createHash } from 'node:crypto';
import { createSwarmNode, type SwarmNode } from './node.ts';
import { ADAPTER_PROTOCOL } from './constants.ts';
import { syntheticPayload, syntheticRunContext } from './synthetic-adapter.ts';
import { encodeAnnouncement, announcementFor, type AnnouncementManifest } from '../core/wire/manifest.ts';
import { ExchangeNotReadyError, RunAlreadyJoinedError, type ReceivedAdapter, type RejectedInput } from './exchange.ts';

const RUN = 'exchange-test';
const SIZE = 200_000;
const nodes: SwarmNode[] = [];

async function startNode(exchange: { maxPayloadBytes?: number; fetchTimeoutMs?: number } = {}, runId: string | null = RUN): Promise<SwarmNode> {
  const node = await createSwarmNode({
    relays: [],
    runId: runId ?? undefined,
    transport: { transports: [webSockets()], addresses: { listen: ['/ip4/127.0.0.1/tcp/0/ws'] } },
    dial: { isDirectAddress: (ma) => ma.toString().includes('/ws') },
    exchange: { ...exchange, context: syntheticRunContext(SIZE) },
  });
  nodes.push(node);
  return node;
}

/** Connects a to b and waits until each sees the other subscribed to the run topic. */
async function connect(a: SwarmNode, b: SwarmNode): Promise<void> {
  await a.libp2p.dial(b.multiaddrs()[0]);
  const topic = a.exchange.topic;
  await waitFor(() => {
    const aSees = a.libp2p.services.pubsub.getSubscribers(topic).some((p) => p.equals(b.peerId));
    const bSees = b.libp2p.services.pubsub.getSubscribers(topic).some((p) => p.equals(a.peerId));
    return aSees && bSees;
  }, 'gossipsub subscriptions');
}

async function waitFor(condition: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function collect<T>(node: SwarmNode, event: 'adapter:received' | 'adapter:rejected'): T[] {
  const out: T[] = [];
  node.exchange.addEventListener(event, (evt) => out.push((evt as CustomEvent<T>).detail));
  return out;
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function manifestFor(node: SwarmNode, payload: Uint8Array, version: number, overrides: Partial<AnnouncementManifest> = {}): AnnouncementManifest {
  const context = syntheticRunContext(SIZE);
  return {
    ...announcementFor(payload, {
      runId: RUN,
      peerId: node.peerId.toString(),
      baseModelId: context.baseModelId,
      baseModelSha256: context.baseModelSha256,
      schemaHash: context.schemaHash,
      version,
      step: version,
      samplesSeen: 10,
      localLoss: 2,
      codec: 'fp32',
      createdAtMs: Date.now(),
    }),
    ...overrides,
  };
}

/** Replaces a node's payload server with one that answers every request with the given response bytes. */
async function serveInstead(node: SwarmNode, respond: (stream: Stream) => Promise<void>): Promise<void> {
  await node.libp2p.unhandle(ADAPTER_PROTOCOL);
  await node.libp2p.handle(ADAPTER_PROTOCOL, async (stream) => {
    try {
      await respond(stream);
    } catch {
      // The fetching side aborting the stream is part of these tests.
    }
  });
}

function header(length: number): Uint8Array {
  const h = new Uint8Array(5);
  new DataView(h.buffer).setUint32(1, length);
  return h;
}

afterEach(async () => {
  await Promise.all(nodes.splice(0).map((n) => n.stop()));
});

describe('adapter exchange', () => {
  it('fetches an announced adapter intact over a direct stream', async () => {
    const [a, b] = [await startNode(), await startNode()];
    await connect(a, b);
    const received = collect<ReceivedAdapter>(a, 'adapter:received');
    const payload = syntheticPayload(SIZE, 42);
    await b.exchange.announce(payload.bytes, { version: 1, step: 1, samplesSeen: 64, localLoss: 3, codec: 'fp32' });
    await waitFor(() => received.length === 1, 'the adapter');
    expect(received[0].peerId).toBe(b.peerId.toString());
    expect(received[0].bytes).toEqual(payload.bytes);
    expect(sha256(received[0].bytes)).toBe(sha256(payload.bytes));
    // The decoded adapter carries the values the sender encoded (first value of the first module).
    const [name, pair] = [...payload.adapter.modules][0];
    expect(received[0].adapter.modules.get(name)!.a[0]).toBe(pair.a[0]);
    expect(b.exchange.stats().served).toBe(1);
  });

  it('a node started before its run is known joins it later and exchanges adapters', async () => {
    const a = await startNode({}, null);
    const b = await startNode();
    expect(a.exchange.topic).toBe('');
    await expect(a.exchange.announce(syntheticPayload(SIZE, 1).bytes, { version: 1, step: 1, samplesSeen: 1, localLoss: null, codec: 'fp32' }))
      .rejects.toThrow(ExchangeNotReadyError);
    await a.libp2p.dial(b.multiaddrs()[0]);
    a.exchange.joinRun(RUN);
    expect(a.exchange.runId).toBe(RUN);
    expect(() => a.exchange.joinRun('another-run')).toThrow(RunAlreadyJoinedError);
    await connect(a, b);
    const received = collect<ReceivedAdapter>(a, 'adapter:received');
    const payload = syntheticPayload(SIZE, 11);
    await b.exchange.announce(payload.bytes, { version: 1, step: 1, samplesSeen: 8, localLoss: 2, codec: 'fp32' });
    await waitFor(() => received.length === 1, 'the adapter');
    expect(received[0].bytes).toEqual(payload.bytes);
    const back = collect<ReceivedAdapter>(b, 'adapter:received');
    await a.exchange.announce(payload.bytes, { version: 1, step: 1, samplesSeen: 8, localLoss: 2, codec: 'fp32' });
    await waitFor(() => back.length === 1, 'the adapter announced by the late-joined node');
  });

  it('refuses an announcement larger than its size limit without fetching it', async () => {
    const a = await startNode({ maxPayloadBytes: 100_000 });
    const b = await startNode();
    await connect(a, b);
    const rejected = collect<RejectedInput>(a, 'adapter:rejected');
    const payload = syntheticPayload(SIZE, 1);
    expect(payload.bytes.length).toBeGreaterThan(100_000);
    await b.exchange.announce(payload.bytes, { version: 1, step: 1, samplesSeen: 1, localLoss: null, codec: 'fp32' });
    await waitFor(() => rejected.length === 1, 'the rejection');
    expect(rejected[0]).toMatchObject({ reason: 'oversized', stage: 'announcement', peerId: b.peerId.toString() });
    await new Promise((r) => setTimeout(r, 300));
    expect(b.exchange.stats().served).toBe(0);
    expect(a.ledger.countFor(b.peerId.toString(), 'oversized')).toBe(1);
  });

  it('rejects a payload whose bytes do not match the announced hash', async () => {
    const [a, b] = [await startNode(), await startNode()];
    await connect(a, b);
    const rejected = collect<RejectedInput>(a, 'adapter:rejected');
    const received = collect<ReceivedAdapter>(a, 'adapter:received');
    const announced = syntheticPayload(SIZE, 7);
    const other = syntheticPayload(SIZE, 8);
    expect(other.bytes.length).toBe(announced.bytes.length);
    await serveInstead(b, async (stream) => {
      stream.send(header(other.bytes.length));
      stream.send(other.bytes);
      await stream.close();
    });
    await b.libp2p.services.pubsub.publish(a.exchange.topic, encodeAnnouncement(manifestFor(b, announced.bytes, 1)));
    await waitFor(() => rejected.length === 1, 'the rejection');
    expect(rejected[0]).toMatchObject({ reason: 'bad-hash', stage: 'payload' });
    expect(received).toHaveLength(0);
  });

  it('rejects a response that declares more bytes than announced, and one that stops early', async () => {
    const [a, b] = [await startNode(), await startNode()];
    await connect(a, b);
    const rejected = collect<RejectedInput>(a, 'adapter:rejected');
    const payload = syntheticPayload(SIZE, 9);
    let mode: 'oversized' | 'truncated' = 'oversized';
    await serveInstead(b, async (stream) => {
      if (mode === 'oversized') {
        stream.send(header(payload.bytes.length + 1));
        stream.send(payload.bytes);
        stream.send(new Uint8Array(1));
      } else {
        stream.send(header(payload.bytes.length));
        stream.send(payload.bytes.subarray(0, 1000));
      }
      await stream.close();
    });
    await b.libp2p.services.pubsub.publish(a.exchange.topic, encodeAnnouncement(manifestFor(b, payload.bytes, 1)));
    await waitFor(() => rejected.length === 1, 'the oversized rejection');
    mode = 'truncated';
    await b.libp2p.services.pubsub.publish(a.exchange.topic, encodeAnnouncement(manifestFor(b, payload.bytes, 2)));
    await waitFor(() => rejected.length === 2, 'the truncated rejection');
    expect(rejected.map((r) => r.reason)).toEqual(['oversized', 'truncated']);
  });

  it('gives up on a peer that stalls mid-payload after the timeout', async () => {
    const a = await startNode({ fetchTimeoutMs: 1_500 });
    const b = await startNode();
    await connect(a, b);
    const rejected = collect<RejectedInput>(a, 'adapter:rejected');
    const payload = syntheticPayload(SIZE, 3);
    await serveInstead(b, async (stream) => {
      stream.send(header(payload.bytes.length));
      stream.send(payload.bytes.subarray(0, payload.bytes.length / 2));
      await new Promise((r) => setTimeout(r, 10_000));
    });
    const started = Date.now();
    await b.libp2p.services.pubsub.publish(a.exchange.topic, encodeAnnouncement(manifestFor(b, payload.bytes, 1)));
    await waitFor(() => rejected.length === 1, 'the timeout');
    expect(rejected[0].reason).toBe('timeout');
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_400);
  });

  it('rejects a replayed (not newer) version from the same peer', async () => {
    const [a, b] = [await startNode(), await startNode()];
    await connect(a, b);
    const rejected = collect<RejectedInput>(a, 'adapter:rejected');
    const received = collect<ReceivedAdapter>(a, 'adapter:received');
    const payload = syntheticPayload(SIZE, 5);
    const manifest = await b.exchange.announce(payload.bytes, { version: 3, step: 3, samplesSeen: 1, localLoss: 1, codec: 'fp32' });
    await waitFor(() => received.length === 1, 'the first adapter');
    // Same manifest again (a new gossip message, so gossipsub's duplicate cache does not hide it), then an older one.
    await b.libp2p.services.pubsub.publish(a.exchange.topic, encodeAnnouncement(manifest));
    await b.libp2p.services.pubsub.publish(a.exchange.topic, encodeAnnouncement({ ...manifest, version: 2 }));
    await waitFor(() => rejected.length === 2, 'the replay rejections');
    expect(rejected.map((r) => r.reason)).toEqual(['replayed', 'replayed']);
    expect(received).toHaveLength(1);
  });

  it('rejects a manifest that names another peer than its authenticated sender', async () => {
    const [a, b, c] = [await startNode(), await startNode(), await startNode()];
    await connect(a, b);
    const rejected = collect<RejectedInput>(a, 'adapter:rejected');
    const payload = syntheticPayload(SIZE, 6);
    await b.libp2p.services.pubsub.publish(a.exchange.topic, encodeAnnouncement(manifestFor(c, payload.bytes, 1)));
    await waitFor(() => rejected.length === 1, 'the rejection');
    expect(rejected[0]).toMatchObject({ reason: 'bad-signature', peerId: b.peerId.toString() });
  });

  it('scores down, disconnects and refuses a peer that keeps sending rejected data', async () => {
    const [a, b] = [await startNode(), await startNode()];
    await connect(a, b);
    const banned: string[] = [];
    a.exchange.addEventListener('peer:banned', (evt) => banned.push(evt.detail.peerId));
    const garbage = new TextEncoder().encode('{"formatVersion":1,"runId":');
    const bId = b.peerId.toString();
    for (let i = 0; i < 12 && banned.length === 0; i++) {
      await b.libp2p.services.pubsub.publish(a.exchange.topic, garbage).catch(() => undefined);
      await new Promise((r) => setTimeout(r, 100));
      if (i === 2) {
        // Already counted against b and lowering its gossip score before the disconnect threshold.
        expect(a.ledger.countFor(bId, 'malformed')).toBeGreaterThan(0);
        // Gossipsub refreshes scores on its own timer, so wait for the next refresh.
        await waitFor(() => (a.libp2p.services.pubsub as unknown as { getScore(id: string): number }).getScore(bId) < 0, 'a negative gossip score', 5_000);
      }
    }
    expect(banned).toEqual([bId]);
    expect(a.ledger.countFor(bId, 'malformed')).toBeGreaterThanOrEqual(8);
    await waitFor(() => a.libp2p.getConnections(b.peerId).length === 0, 'the disconnect');
    // The ban holds in both directions.
    const outcome = async (dial: Promise<unknown>) => dial.then(() => 'connected', (err: Error) => `refused: ${err.name}`);
    expect(await outcome(a.libp2p.dial(b.multiaddrs()[0]))).toMatch(/^refused/);
    expect(await outcome(b.libp2p.dial(a.multiaddrs()[0]).then(async (conn) => {
      // The refusal of an inbound connection happens after b's side of the handshake may have completed.
      await new Promise((r) => setTimeout(r, 500));
      if (conn.status !== 'open') throw new Error('closed by the banning side');
      return conn;
    }))).toMatch(/^refused/);
  });
});
