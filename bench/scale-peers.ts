// One worker process of bench/scale.ts: hosts a share of the N peers. Each peer is the real swarm node
// (p2p/node.ts: discovery, dial policy, gossipsub, adapter exchange joined to the run) over WebSockets plus a circuit
// reservation at a relay, and reports telemetry exactly as a training tab does, with synthetic values. Gossipsub's
// metrics hook counts every RPC in and out with its encoded size.
import { webSockets } from '@libp2p/websockets';
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2';
import { createSwarmNode, type SwarmNode } from '../p2p/node.ts';
import type { RendezvousStats } from '../p2p/discovery.ts';
import { publishTelemetry } from '../p2p/telemetry-topic.ts';
import { DEFAULT_TELEMETRY_INTERVAL_MS, telemetryReport, telemetryTopic } from '../core/swarm/telemetry.ts';
import { defaultRunManifest, wireRunId } from '../core/swarm/run.ts';
import { encodeTelemetry } from '../core/wire/telemetry.ts';

export interface Counters {
  msgsIn: number;
  msgsOut: number;
  rpcIn: number;
  rpcOut: number;
  bytesIn: number;
  bytesOut: number;
  /** Publish entries (in + out) on the discovery and telemetry topics, and their approximate bytes. */
  discoveryTelemetryMsgs: number;
  discoveryTelemetryBytes: number;
  /** Discovery-protocol streams (in + out) and bytes, for discovery that does not use gossip. */
  protocolMsgs: number;
  protocolBytes: number;
}

export interface PeerResult {
  peerId: string;
  joinedAtMs: number;
  kAtMs: number | null;
  neighbours: string[];
  reservedAt: string[];
  connectedRelays: string[];
  counters: Counters;
}

export type CoordinatorMessage =
  | { type: 'start'; peers: Array<{ index: number; startAtMs: number }>; relays: string[]; k: number }
  | { type: 'progress?' }
  | { type: 'window-start' }
  | { type: 'window-end' }
  | { type: 'stop' };

export type WorkerMessage =
  | { type: 'started' }
  | { type: 'progress'; reached: number }
  | { type: 'result'; peers: PeerResult[]; cpuMs: number };

const zero = (): Counters => ({
  msgsIn: 0, msgsOut: 0, rpcIn: 0, rpcOut: 0, bytesIn: 0, bytesOut: 0, discoveryTelemetryMsgs: 0, discoveryTelemetryBytes: 0, protocolMsgs: 0, protocolBytes: 0,
});

interface RpcLike {
  messages?: Array<{ topic?: string; data?: Uint8Array; signature?: Uint8Array; key?: Uint8Array; from?: Uint8Array; seqno?: Uint8Array }>;
}

interface BenchPeer {
  node: SwarmNode;
  joinedAtMs: number;
  kAtMs: number | null;
  counters: Counters;
  discoveryAtWindowStart?: RendezvousStats;
  timer?: ReturnType<typeof setInterval>;
}

/** A stand-in for gossipsub's metrics object: every metric is a no-op except the RPC counters. */
function countingMetrics(counters: () => Counters, watched: (topic: string) => boolean): unknown {
  const noop: unknown = new Proxy(function () {}, { get: (_t, p) => (p === 'then' ? undefined : noop), apply: () => noop });
  const messageStats = (rpc: RpcLike) => {
    let n = 0;
    let watchedN = 0;
    let watchedBytes = 0;
    for (const m of rpc.messages ?? []) {
      n++;
      if (m.topic && watched(m.topic)) {
        watchedN++;
        watchedBytes += (m.data?.length ?? 0) + (m.signature?.length ?? 0) + (m.key?.length ?? 0) + (m.from?.length ?? 0) + (m.seqno?.length ?? 0) + m.topic.length;
      }
    }
    return { n, watchedN, watchedBytes };
  };
  return new Proxy(
    {},
    {
      get: (_t, p) => {
        if (p === 'onRpcRecv')
          return (rpc: RpcLike, bytes: number) => {
            const c = counters();
            const s = messageStats(rpc);
            c.rpcIn++;
            c.bytesIn += bytes;
            c.msgsIn += s.n;
            c.discoveryTelemetryMsgs += s.watchedN;
            c.discoveryTelemetryBytes += s.watchedBytes;
          };
        if (p === 'onRpcSent')
          return (rpc: RpcLike, bytes: number) => {
            const c = counters();
            const s = messageStats(rpc);
            c.rpcOut++;
            c.bytesOut += bytes;
            c.msgsOut += s.n;
            c.discoveryTelemetryMsgs += s.watchedN;
            c.discoveryTelemetryBytes += s.watchedBytes;
          };
        if (p === 'then') return undefined;
        return noop;
      },
    },
  );
}

/** The run every peer of the harness joins. */
export function runOfBench(): { manifest: ReturnType<typeof defaultRunManifest>; wireRunId: string } {
  const manifest = defaultRunManifest('0'.repeat(64));
  return { manifest, wireRunId: wireRunId(manifest) };
}

/** A swarm node as a tab's, over WebSockets on 127.0.0.1 plus a circuit reservation (Node has no WebRTC). */
export function benchNodeInit(relays: string[]): Parameters<typeof createSwarmNode>[0] {
  return {
    relays,
    runId: runOfBench().wireRunId,
    transport: {
      transports: [webSockets(), circuitRelayTransport({ reservationCompletionTimeout: 10_000 })],
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0/ws', '/p2p-circuit'] },
    },
    // Every peer of the harness is on 127.0.0.1, which libp2p would otherwise throttle to 5 inbound connections/s.
    inboundConnectionThreshold: 10_000,
    dial: { isDirectAddress: (ma) => { const s = ma.toString(); return s.includes('/ws') && !s.includes('p2p-circuit'); } },
  };
}

export function runScalePeers(): void {
  const peers: BenchPeer[] = [];
  const { manifest, wireRunId: runId } = runOfBench();
  const watched = (topic: string) => topic === telemetryTopic(runId);
  let k = 4;
  let cpuAtWindowStart = process.cpuUsage();
  let windowStartMs = Date.now();
  const reply = (m: WorkerMessage) => process.send!(m);

  async function startPeer(relays: string[]): Promise<void> {
    const node = await createSwarmNode(benchNodeInit(relays));
    const peer: BenchPeer = { node, joinedAtMs: Date.now(), kAtMs: null, counters: zero() };
    (node.libp2p.services.pubsub as unknown as { metrics: unknown }).metrics = countingMetrics(() => peer.counters, watched);
    node.dialPolicy.addEventListener('neighbour:added', () => {
      if (peer.kAtMs === null && node.dialPolicy.neighbours().length >= k) peer.kAtMs = Date.now();
    });
    node.exchange.joinRun(runId, { baseModelId: manifest.baseModel.id, baseModelSha256: manifest.baseModel.sha256, schemaHash: '0'.repeat(64) });
    // A training tab reports every 10 s without listening to others' reports (app/lib/peer-controller.ts).
    let step = 0;
    const report = () => {
      step += 7;
      const r = telemetryReport({
        peerId: node.peerId.toString(), runId, timeMs: Date.now(), step, trainLoss: 2.3 - step * 1e-4, heldOutLoss: 2.31, merges: step >> 4,
        bytesSent: step * 4096, bytesReceived: step * 4096, versionsAnnounced: step >> 4, versionsFetched: step >> 3,
        neighbours: node.dialPolicy.neighbours(), rejections: {}, tokensPerSecond: 400, backend: 'wasm',
      });
      void publishTelemetry(node, encodeTelemetry(r), runId).catch(() => undefined);
    };
    // Peers report out of phase, as tabs that joined at different times do.
    setTimeout(() => {
      report();
      peer.timer = setInterval(report, DEFAULT_TELEMETRY_INTERVAL_MS);
    }, Math.random() * DEFAULT_TELEMETRY_INTERVAL_MS);
    peers.push(peer);
  }

  process.on('message', async (m: CoordinatorMessage) => {
    switch (m.type) {
      case 'start': {
        k = m.k;
        await Promise.all(
          m.peers.map(async (p) => {
            await new Promise((r) => setTimeout(r, Math.max(0, p.startAtMs - Date.now())));
            await startPeer(m.relays);
          }),
        );
        reply({ type: 'started' });
        break;
      }
      case 'progress?':
        reply({ type: 'progress', reached: peers.filter((p) => p.node.dialPolicy.neighbours().length >= k).length });
        break;
      case 'window-start':
        for (const p of peers) {
          p.counters = zero();
          p.discoveryAtWindowStart = p.node.libp2p.services.discovery.stats();
        }
        cpuAtWindowStart = process.cpuUsage();
        windowStartMs = Date.now();
        break;
      case 'window-end': {
        const cpu = process.cpuUsage(cpuAtWindowStart);
        void windowStartMs;
        const results: PeerResult[] = peers.map((p) => {
          // Rendezvous traffic: each request is one message out and one answer in; each introduction one message in.
          const d = p.node.libp2p.services.discovery.stats();
          const d0 = p.discoveryAtWindowStart ?? d;
          p.counters.protocolMsgs = 2 * (d.requests - d0.requests) + (d.introductions - d0.introductions);
          p.counters.protocolBytes = d.bytesSent - d0.bytesSent + (d.bytesReceived - d0.bytesReceived);
          const addrs = p.node.multiaddrs().map((a) => a.toString());
          return {
            peerId: p.node.peerId.toString(),
            joinedAtMs: p.joinedAtMs,
            kAtMs: p.kAtMs,
            neighbours: p.node.dialPolicy.neighbours(),
            reservedAt: addrs.filter((a) => a.includes('/p2p-circuit')).map((a) => a.split('/p2p-circuit')[0].split('/p2p/').at(-1)!),
            connectedRelays: p.node.libp2p.getConnections().map((c) => c.remotePeer.toString()).filter((id) => p.node.dialPolicy.isRelay(id)),
            counters: p.counters,
          };
        });
        reply({ type: 'result', peers: results, cpuMs: (cpu.user + cpu.system) / 1000 });
        break;
      }
      case 'stop':
        for (const p of peers) clearInterval(p.timer);
        await Promise.allSettled(peers.map((p) => p.node.stop()));
        process.exit(0);
    }
  });
}
