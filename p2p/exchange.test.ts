// The adapter exchange between real libp2p nodes in this process, talking over WebSockets on 127.0.0.1.
import { afterEach, describe, expect, it } from 'vitest';
import { webSockets } from '@libp2p/websockets';
import type { Stream } from '@libp2p/interface';
import { createHash } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createSwarmNode, type SwarmNode } from './node.ts';
import { ADAPTER_PROTOCOL } from './constants.ts';
import { syntheticPayload, syntheticRunContext } from './synthetic-adapter.ts';
import { encodeAnnouncement, announcementFor, type AnnouncementManifest } from '../core/wire/manifest.ts';
import { ExchangeNotReadyError, receivePayload, RunAlreadyJoinedError, type AdapterExchangeInit, type ReceivedAdapter, type RejectedInput } from './exchange.ts';
import { encodeAdapter, expectedPayloadBytes } from '../core/wire/codec.ts';
import { syntheticAdapter } from './synthetic-adapter.ts';

const RUN = 'exchange-test';
const SIZE = 200_000;
const nodes: SwarmNode[] = [];

type ExchangeOptions = Omit<AdapterExchangeInit, 'runId' | 'ledger' | 'bans'>;

async function startNode(exchange: ExchangeOptions = {}, runId: string | null = RUN): Promise<SwarmNode> {
  const node = await createSwarmNode({
    relays: [],
    runId: runId ?? undefined,
    transport: { transports: [webSockets()], addresses: { listen: ['/ip4/127.0.0.1/tcp/0/ws'] } },
    dial: { isDirectAddress: (ma) => ma.toString().includes('/ws') },
    exchange: { context: syntheticRunContext(SIZE), ...exchange },
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

describe('adapter exchange limits (issue 12)', () => {
  it('16 stalled fetches of 8 MiB payloads hold less than 16 MiB: memory follows the bytes that arrived', async () => {
    const [a, b] = [await startNode(), await startNode()];
    await connect(a, b);
    const expected = 8 * 1024 * 1024;
    const sent = 256 * 1024;
    const firstBytes = new Uint8Array(sent).fill(7);
    await serveInstead(b, async (stream) => {
      stream.send(header(expected));
      stream.send(firstBytes);
      await new Promise((r) => setTimeout(r, 8_000));
    });
    // A full garbage collection before each reading, so the difference is memory still held, not garbage.
    setFlagsFromString('--expose-gc');
    const gcOnce = runInNewContext('gc') as () => void;
    // ArrayBuffer backing stores are released after the collection that finds them dead; a few rounds settle it.
    const gc = async () => {
      for (let i = 0; i < 3; i++) {
        gcOnce();
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    await gc();
    const before = process.memoryUsage().arrayBuffers;
    let buffered = 0;
    let peakBuffered = 0;
    const controller = new AbortController();
    const opened = await Promise.all(Array.from({ length: 16 }, async () => {
      const stream = await a.libp2p.dialProtocol(b.peerId, ADAPTER_PROTOCOL);
      const verdict = receivePayload(stream, expected, controller.signal, {
        onBuffered: (delta) => {
          buffered += delta;
          peakBuffered = Math.max(peakBuffered, buffered);
        },
      });
      stream.send(new Uint8Array(33));
      return { verdict };
    }));
    const fetches = opened.map((o) => o.verdict);
    await waitFor(() => buffered === 16 * sent, 'every stalled fetch to receive its first 256 KiB');
    await gc();
    const held = process.memoryUsage().arrayBuffers - before;
    // The old receiver allocated the 8 MiB announced for each on the header: 128 MiB.
    console.log(`16 stalled fetches: ${buffered} payload bytes buffered, arrayBuffers grew by ${(held / 2 ** 20).toFixed(1)} MiB`);
    expect(held).toBeLessThan(16 * 2 ** 20);
    controller.abort();
    const verdicts = await Promise.all(fetches);
    expect(verdicts.every((v) => !v.ok && v.reason === 'timeout')).toBe(true);
    expect(buffered).toBe(0);
    expect(peakBuffered).toBe(16 * sent);
  }, 30_000);

  it('a 1-byte-per-50-ms trickle loses its slot at the minimum rate, long before the fetch timeout, and counts fully', async () => {
    const a = await startNode({ fetchTimeoutMs: 60_000, fetchMinBytesPerSecond: 1000, fetchRateWindowMs: 1000 });
    const b = await startNode();
    await connect(a, b);
    const rejected = collect<RejectedInput>(a, 'adapter:rejected');
    const payload = syntheticPayload(SIZE, 3);
    let trickling = true;
    await serveInstead(b, async (stream) => {
      stream.send(header(payload.bytes.length));
      for (let i = 0; trickling && i < 1200; i++) {
        stream.send(payload.bytes.subarray(i, i + 1));
        await new Promise((r) => setTimeout(r, 50));
      }
    });
    const started = Date.now();
    await b.libp2p.services.pubsub.publish(a.exchange.topic, encodeAnnouncement(manifestFor(b, payload.bytes, 1)));
    await waitFor(() => rejected.length === 1, 'the trickle to be cut', 15_000);
    trickling = false;
    expect(rejected[0]).toMatchObject({ reason: 'timeout', stage: 'payload' });
    expect(rejected[0].detail).toMatch(/bytes\/s over the last \d+ ms, below the minimum of 1000/);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(a.ledger.recentWeight(b.peerId.toString())).toBe(1);
    expect(a.exchange.stats().bufferedBytes).toBe(0);
  });

  it('an idle sender loses its slot after the idle timeout', async () => {
    const a = await startNode({ fetchTimeoutMs: 60_000, fetchIdleTimeoutMs: 800 });
    const b = await startNode();
    await connect(a, b);
    const rejected = collect<RejectedInput>(a, 'adapter:rejected');
    const payload = syntheticPayload(SIZE, 4);
    await serveInstead(b, async (stream) => {
      stream.send(header(payload.bytes.length));
      stream.send(payload.bytes.subarray(0, 1000));
      await new Promise((r) => setTimeout(r, 10_000));
    });
    await b.libp2p.services.pubsub.publish(a.exchange.topic, encodeAnnouncement(manifestFor(b, payload.bytes, 1)));
    await waitFor(() => rejected.length === 1, 'the idle fetch to be cut', 10_000);
    expect(rejected[0]).toMatchObject({ reason: 'timeout' });
    expect(rejected[0].detail).toMatch(/no byte for \d+ ms after 1005 bytes/);
  });

  it('an announcement flood is rate-limited per sender, counted, and ends in a ban', async () => {
    const [a, b] = [await startNode(), await startNode()];
    await connect(a, b);
    const banned: string[] = [];
    a.exchange.addEventListener('peer:banned', (evt) => banned.push(evt.detail.peerId));
    const bId = b.peerId.toString();
    const payload = syntheticPayload(SIZE, 12);
    // Not fetched: the stream handler answers not-found so that only the announcements count.
    await serveInstead(b, async (stream) => {
      const h = new Uint8Array(5);
      h[0] = 1;
      stream.send(h);
      await stream.close();
    });
    for (let version = 1; version <= 60 && banned.length === 0; version++) {
      await b.libp2p.services.pubsub.publish(a.exchange.topic, encodeAnnouncement(manifestFor(b, payload.bytes, version))).catch(() => undefined);
    }
    await waitFor(() => banned.length === 1, 'the ban');
    expect(banned).toEqual([bId]);
    // A burst of 8 passes; after it, rate-limited (0.5 each) and the not-found fetches (1 each) reach 8.
    expect(a.ledger.countFor(bId, 'rate-limited')).toBeGreaterThan(0);
  });

  it('a serving flood is refused beyond the burst and the concurrency cap, counted against the requester, and banned', async () => {
    const [a, b] = [await startNode(), await startNode()];
    await connect(a, b);
    const payload = syntheticPayload(SIZE, 13);
    const manifest = await b.exchange.announce(payload.bytes, { version: 1, step: 1, samplesSeen: 1, localLoss: 1, codec: 'fp32' });
    const banned: string[] = [];
    b.exchange.addEventListener('peer:banned', (evt) => banned.push(evt.detail.peerId));
    const request = new Uint8Array(33);
    request[0] = 1;
    request.set(Buffer.from(manifest.payloadSha256, 'hex'), 1);
    const statuses: number[] = [];
    // Waves of 12 simultaneous requests (a connection carries at most 16 streams of the protocol at once).
    for (let wave = 0; wave < 5 && banned.length === 0; wave++) {
      await Promise.all(Array.from({ length: 12 }, async () => {
        try {
          const stream = await a.libp2p.dialProtocol(b.peerId, ADAPTER_PROTOCOL);
          const response = receivePayload(stream, payload.bytes.length, AbortSignal.timeout(10_000));
          stream.send(request);
          await stream.close().catch(() => undefined);
          const verdict = await response;
          statuses.push(verdict.ok ? 0 : verdict.reason === 'rate-limited' ? 2 : -1);
        } catch {
          statuses.push(-2); // refused once the ban closed the connection
        }
      }));
    }
    const served = statuses.filter((x) => x === 0).length;
    // At most the burst (6) served, at most 2 at once; the rest refused, 0.5 each in the ledger: banned at 16.
    expect(served).toBeGreaterThan(0);
    expect(served).toBeLessThanOrEqual(6);
    expect(statuses.filter((x) => x === 2).length).toBeGreaterThan(0);
    expect(b.exchange.stats().servesRefused).toBeGreaterThanOrEqual(16);
    expect(b.ledger.countFor(a.peerId.toString(), 'rate-limited')).toBeGreaterThanOrEqual(16);
    expect(banned).toEqual([a.peerId.toString()]);
  });

  it('with the run codec and size known, an fp32 adapter in an fp16 run and a wrong size are refused unfetched', async () => {
    const fp16Size = expectedPayloadBytes(syntheticAdapter(SIZE, 0, false), 'fp16');
    const context = { ...syntheticRunContext(SIZE), codec: 'fp16' as const, payloadBytes: fp16Size };
    const a = await startNode({ context });
    const b = await startNode();
    await connect(a, b);
    const rejected = collect<RejectedInput>(a, 'adapter:rejected');
    const received = collect<ReceivedAdapter>(a, 'adapter:received');
    const fp32 = syntheticPayload(SIZE, 21);
    await b.exchange.announce(fp32.bytes, { version: 1, step: 1, samplesSeen: 1, localLoss: 1, codec: 'fp32' });
    await waitFor(() => rejected.length === 1, 'the codec refusal');
    expect(rejected[0]).toMatchObject({ reason: 'malformed', stage: 'announcement', detail: 'codec fp32, the run uses fp16' });
    const fp16 = encodeAdapter(syntheticAdapter(SIZE, 22), 'fp16');
    expect(fp16.length).toBe(fp16Size);
    const padded = new Uint8Array(fp16Size + 64);
    padded.set(fp16);
    await b.exchange.announce(padded, { version: 2, step: 2, samplesSeen: 1, localLoss: 1, codec: 'fp16' });
    await waitFor(() => rejected.length === 2, 'the size refusal');
    expect(rejected[1]).toMatchObject({ reason: 'oversized', stage: 'announcement' });
    await b.exchange.announce(fp16, { version: 3, step: 3, samplesSeen: 1, localLoss: 1, codec: 'fp16' });
    await waitFor(() => received.length === 1, 'the honest fp16 adapter');
    expect(b.exchange.stats().served).toBe(1);
  });
});
