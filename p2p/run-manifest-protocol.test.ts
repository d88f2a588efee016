// The run-manifest protocol between real libp2p nodes in this process, talking over WebSockets on 127.0.0.1.
import { afterEach, describe, expect, it } from 'vitest';
import { webSockets } from '@libp2p/websockets';
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2';
import type { Stream } from '@libp2p/interface';
import { createSwarmNode, type SwarmNode } from './node.ts';
import { RUN_MANIFEST_PROTOCOL } from './constants.ts';
import { startRelay, type SwarmRelay } from './relay.ts';
import type { ManifestAnswer, RunManifestRejection } from './run-manifest-protocol.ts';
import { defaultRunManifest } from '../core/swarm/run.ts';
import { encodeRunManifest, runManifestId, type RunManifest } from '../core/wire/run-manifest.ts';
import { MAX_RUN_MANIFEST_BYTES } from '../core/wire/constants.ts';

const nodes: SwarmNode[] = [];

async function startNode(options: { requestTimeoutMs?: number; runId?: string } = {}): Promise<SwarmNode> {
  const node = await createSwarmNode({
    relays: [],
    runId: options.runId,
    transport: { transports: [webSockets()], addresses: { listen: ['/ip4/127.0.0.1/tcp/0/ws'] } },
    dial: { isDirectAddress: (ma) => ma.toString().includes('/ws') },
    runManifests: { requestTimeoutMs: options.requestTimeoutMs },
  });
  nodes.push(node);
  return node;
}

async function connect(a: SwarmNode, b: SwarmNode): Promise<void> {
  await a.libp2p.dial(b.multiaddrs()[0]);
  await waitFor(() => a.libp2p.getConnections(b.peerId).some((c) => c.status === 'open'), 'the connection');
}

async function waitFor(condition: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function manifest(runId = 'manifest-test', localSteps = 20): RunManifest {
  return { ...defaultRunManifest('ab'.repeat(32), { localSteps }), runId };
}

function rejections(node: SwarmNode): RunManifestRejection[] {
  const out: RunManifestRejection[] = [];
  node.runManifests.addEventListener('manifest:rejected', (evt) => out.push(evt.detail));
  return out;
}

/** Replaces a node's manifest server with one that answers every request with whatever `respond` writes. */
async function answerInstead(node: SwarmNode, respond: (stream: Stream) => Promise<void>): Promise<void> {
  await node.libp2p.unhandle(RUN_MANIFEST_PROTOCOL);
  await node.libp2p.handle(RUN_MANIFEST_PROTOCOL, async (stream) => {
    try {
      await respond(stream);
    } catch {
      // The asking side aborting the stream is part of these tests.
    }
  });
}

function header(status: number, length: number): Uint8Array {
  const h = new Uint8Array(5);
  h[0] = status;
  new DataView(h.buffer).setUint32(1, length);
  return h;
}

let relay: SwarmRelay | undefined;

afterEach(async () => {
  await Promise.all(nodes.splice(0).map((n) => n.stop()));
  await relay?.stop();
  relay = undefined;
});

describe('run-manifest protocol', () => {
  it('hands a served manifest over intact, by its id', async () => {
    const [a, b] = [await startNode(), await startNode()];
    await connect(a, b);
    const m = manifest();
    const id = b.runManifests.serve(m);
    expect(id).toBe(runManifestId(m));
    expect(b.runManifests.served()).toEqual([id]);
    const answer = await a.runManifests.request(b.peerId.toString(), id);
    expect(answer.status).toBe('found');
    const found = answer as Extract<ManifestAnswer, { status: 'found' }>;
    expect(found.manifest).toEqual(m);
    expect(encodeRunManifest(found.manifest)).toEqual(encodeRunManifest(m));
    expect(b.runManifests.stats().served).toBe(1);
    expect(a.runManifests.stats().fetched).toBe(1);
  });

  it('answers not-found for an id it does not serve, which counts against no one', async () => {
    const [a, b] = [await startNode(), await startNode()];
    await connect(a, b);
    b.runManifests.serve(manifest());
    const rejected = rejections(a);
    const answer = await a.runManifests.request(b.peerId.toString(), runManifestId(manifest('another-run')));
    expect(answer).toEqual({ status: 'not-found', peerId: b.peerId.toString() });
    expect(b.runManifests.stats().notFound).toBe(1);
    expect(rejected).toHaveLength(0);
    expect(a.ledger.snapshot().total).toBe(0);
  });

  it('find() asks every connected peer until one knows the run, and gives up only when told to', async () => {
    const [a, b, c] = [await startNode(), await startNode(), await startNode()];
    await connect(a, b);
    const m = manifest('find-me');
    const id = runManifestId(m);
    const answers: ManifestAnswer[] = [];
    const search = a.runManifests.find(id, { askAgainAfterMs: 200, pollMs: 50, onAnswer: (x) => answers.push(x) });
    await waitFor(() => answers.some((x) => x.status === 'not-found'), 'b saying it does not know the run');
    // A peer that connects later, and one that joins the run later, are both asked.
    await connect(a, c);
    c.runManifests.serve(m);
    const found = await search;
    expect(found?.peerId).toBe(c.peerId.toString());
    expect(found?.manifest).toEqual(m);

    const none = await a.runManifests.find(runManifestId(manifest('nobody-knows')), { signal: AbortSignal.timeout(800), pollMs: 50 });
    expect(none).toBeNull();
  });

  it('rejects a peer that answers with another manifest than the one asked for', async () => {
    const [a, b] = [await startNode(), await startNode()];
    await connect(a, b);
    const asked = manifest('honest');
    const other = encodeRunManifest(manifest('impostor'));
    await answerInstead(b, async (stream) => {
      stream.send(header(0, other.length));
      stream.send(other);
      await stream.close();
    });
    const rejected = rejections(a);
    const answer = await a.runManifests.request(b.peerId.toString(), runManifestId(asked));
    expect(answer).toMatchObject({ status: 'rejected', reason: 'bad-hash', peerId: b.peerId.toString() });
    expect(rejected).toEqual([expect.objectContaining({ reason: 'bad-hash', peerId: b.peerId.toString() })]);
    expect(a.ledger.countFor(b.peerId.toString(), 'bad-hash')).toBe(1);

    // find() does not settle for the impostor's answer: it keeps looking and takes the honest peer's.
    const c = await startNode();
    c.runManifests.serve(asked);
    await connect(a, c);
    const found = await a.runManifests.find(runManifestId(asked), { pollMs: 50, signal: AbortSignal.timeout(15_000) });
    expect(found?.peerId).toBe(c.peerId.toString());
  });

  it('rejects oversized, garbage, truncated and stalled answers without throwing, and still works afterwards', async () => {
    const a = await startNode({ requestTimeoutMs: 1_000 });
    const b = await startNode();
    await connect(a, b);
    const m = manifest();
    const id = runManifestId(m);
    const good = encodeRunManifest(m);
    const garbage = new TextEncoder().encode('{"formatVersion":1,"runId":"x"'.padEnd(good.length, ' '));
    const cases: Array<[string, (stream: Stream) => Promise<void>]> = [
      ['oversized', async (s) => { s.send(header(0, MAX_RUN_MANIFEST_BYTES + 1)); s.send(new Uint8Array(1000)); await s.close(); }],
      ['oversized', async (s) => { s.send(header(0, good.length)); s.send(good); s.send(new Uint8Array(10)); await s.close(); }],
      ['malformed', async (s) => { s.send(header(0, garbage.length)); s.send(garbage); await s.close(); }],
      ['malformed', async (s) => { s.send(header(7, 0)); await s.close(); }],
      ['malformed', async (s) => { s.send(header(1, 3)); s.send(new Uint8Array(3)); await s.close(); }],
      ['truncated', async (s) => { s.send(header(0, good.length)); s.send(good.subarray(0, 10)); await s.close(); }],
      ['truncated', async (s) => { s.send(new Uint8Array([0, 0])); await s.close(); }],
    ];
    const rejected = rejections(a);
    for (const [reason, respond] of cases) {
      await answerInstead(b, respond);
      const answer = await a.runManifests.request(b.peerId.toString(), id);
      expect(answer, reason).toMatchObject({ status: 'rejected', reason });
    }
    expect(rejected.map((r) => r.reason)).toEqual(cases.map(([reason]) => reason));
    expect(a.runManifests.stats().rejected).toBe(cases.length);

    // b is still connected (7 weighted rejections, under the disconnect threshold of 8), and once honest its answer is taken.
    await answerInstead(b, async (s) => { s.send(header(0, good.length)); s.send(good); await s.close(); });
    const answer = await a.runManifests.request(b.peerId.toString(), id);
    expect(answer.status).toBe('found');

    // A stall counts fully (issue 12: timeouts held a slot and never led to a ban): the eighth rejection bans b.
    await answerInstead(b, async (s) => { s.send(header(0, good.length)); await new Promise((r) => setTimeout(r, 5_000)); });
    expect(await a.runManifests.request(b.peerId.toString(), id)).toMatchObject({ status: 'rejected', reason: 'timeout' });
    expect(a.ledger.shouldDisconnect(b.peerId.toString())).toBe(true);
  });

  it('a stream cut mid-answer makes the peer unavailable for now, not a liar', async () => {
    const [a, b] = [await startNode(), await startNode()];
    await connect(a, b);
    await answerInstead(b, async (s) => {
      s.send(header(0, 500));
      s.send(new Uint8Array(100));
      await new Promise((r) => setTimeout(r, 100));
      s.abort(new Error('tab closed'));
    });
    const answer = await a.runManifests.request(b.peerId.toString(), runManifestId(manifest()));
    expect(answer).toMatchObject({ status: 'unavailable', permanent: false });
    expect(a.ledger.snapshot().total).toBe(0);
  });

  it('a server refuses a malformed request by closing the stream, and keeps serving', async () => {
    const [a, b] = [await startNode(), await startNode()];
    await connect(a, b);
    const m = manifest();
    b.runManifests.serve(m);
    const connection = a.libp2p.getConnections(b.peerId)[0];
    const stream = await connection.newStream(RUN_MANIFEST_PROTOCOL);
    const ended = new Promise((resolve) => stream.addEventListener('close', resolve));
    stream.send(new TextEncoder().encode('not an id'));
    await stream.close().catch(() => undefined);
    await ended;
    expect((await a.runManifests.request(b.peerId.toString(), runManifestId(m))).status).toBe('found');
  });

  it('works over a relayed connection, before any direct one exists', async () => {
    relay = await startRelay({ port: 0 });
    const viaRelay = async (): Promise<SwarmNode> => {
      const node = await createSwarmNode({
        relays: relay!.multiaddrs,
        transport: { transports: [webSockets(), circuitRelayTransport()], addresses: { listen: ['/p2p-circuit'] } },
        // Nothing is direct here, so the dial policy leaves the relayed connection as the only one.
        dial: { isDirectAddress: () => false },
      });
      nodes.push(node);
      return node;
    };
    const [a, b] = [await viaRelay(), await viaRelay()];
    await waitFor(() => b.multiaddrs().some((ma) => ma.toString().includes('/p2p-circuit')), 'a relay reservation');
    const circuit = b.multiaddrs().find((ma) => ma.toString().includes('/p2p-circuit'))!;
    const connection = await a.libp2p.dial(circuit);
    expect(connection.limits).toBeDefined();
    const m = manifest('relayed');
    b.runManifests.serve(m);
    const found = await a.runManifests.find(runManifestId(m), {
      signal: AbortSignal.timeout(15_000),
      skip: (peerId) => peerId === relay!.peerId,
    });
    expect(found?.peerId).toBe(b.peerId.toString());
    expect(found?.manifest).toEqual(m);
  });

  it('a peer that does not speak the protocol is unavailable, not rejected', async () => {
    const [a, b] = [await startNode(), await startNode()];
    await connect(a, b);
    await b.libp2p.unhandle(RUN_MANIFEST_PROTOCOL);
    const answer = await a.runManifests.request(b.peerId.toString(), runManifestId(manifest()));
    expect(answer).toMatchObject({ status: 'unavailable', permanent: true });
    expect(a.ledger.snapshot().total).toBe(0);
  });
});
