// Test harness: a hostile but real peer on a run's telemetry topic. ?run=<wire run id>&relays=<multiaddr>.
import { peerIdFromString } from '@libp2p/peer-id';
import { createSwarmNode, type SwarmNode } from '../../p2p/node.ts';
import { isDirectConnection, isWebRtcAddress, withPeerId } from '../../p2p/dial-policy.ts';
import { resolveRelays } from '../../p2p/relay-config.ts';
import { telemetryTopic } from '../../core/swarm/telemetry.ts';
import { encodeTelemetry } from '../../core/wire/telemetry.ts';

export type JunkKind = 'malformed' | 'forged' | 'wrong-run' | 'oversized';

export interface FloodApi {
  ready: Promise<void>;
  error?: string;
  peerId: string;
  neighbours(): string[];
  topicPeers(): string[];
  /** Pending dials of the dial policy, in words, for a spec's progress log. */
  pending(): string[];
  /**
   * Dials one peer directly on the WebRTC addresses the relays gave for it, once, with a generous timeout: the
   * dashboard this harness attacks is one particular peer, which the dial policy's backoff between many candidates
   * on a loaded machine may leave untried for minutes. Returns 'connected' or why not.
   */
  connectTo(peerId: string, timeoutMs: number): Promise<string>;
  /** Publishes `count` junk messages, `perSecond` a second, cycling through the kinds; returns how many went out. */
  flood(kinds: JunkKind[], count: number, perSecond: number, forgedPeerId?: string): Promise<number>;
}

declare global {
  interface Window {
    telemetryFlood: FloodApi;
  }
}

const params = new URLSearchParams(location.search);
const wireRunId = params.get('run') ?? 'harness';
const topic = telemetryTopic(wireRunId);
const statusEl = document.getElementById('status')!;
let node: SwarmNode | undefined;

function junk(kind: JunkKind, i: number, forgedPeerId: string): Uint8Array {
  const report = {
    formatVersion: 1, peerId: forgedPeerId, runId: wireRunId, timeMs: Date.now() + i, step: 1, trainLoss: 0.01, heldOutLoss: null,
    merges: 0, bytesSent: 0, bytesReceived: 0, versionsAnnounced: 0, versionsFetched: 0, neighbours: [], rejections: {},
    tokensPerSecond: null, backend: 'wasm',
  };
  switch (kind) {
    case 'malformed': return new TextEncoder().encode(`{"formatVersion":1,"peerId":"${i}`);
    case 'forged': return encodeTelemetry(report);
    case 'wrong-run': return encodeTelemetry({ ...report, peerId: node!.peerId.toString(), runId: 'another-run.0000000000000000' });
    case 'oversized': return new TextEncoder().encode(`{"pad":"${'x'.repeat(20_000)}"}`);
  }
}

const api: FloodApi = {
  ready: Promise.resolve(),
  peerId: '',
  neighbours: () => node?.dialPolicy.neighbours() ?? [],
  topicPeers: () => node?.libp2p.services.pubsub.getSubscribers(topic).map((p) => p.toString()) ?? [],
  pending: () => node?.dialPolicy.pending().map((p) => `…${p.peerId.slice(-4)}×${p.attempts}${p.lastError ? ` ${p.lastError.slice(0, 80)}` : ''}`) ?? [],
  async connectTo(peerId, timeoutMs) {
    if (!node) return 'no node';
    const id = peerIdFromString(peerId);
    if (node.libp2p.getConnections(id).some(isDirectConnection)) return 'connected';
    try {
      const addrs = (await node.libp2p.peerStore.get(id)).addresses.map((a) => a.multiaddr).filter(isWebRtcAddress).map((ma) => withPeerId(ma, peerId));
      if (addrs.length === 0) return 'no WebRTC address known yet';
      const connection = await node.libp2p.dial(addrs, { signal: AbortSignal.timeout(timeoutMs), force: true });
      return isDirectConnection(connection) ? 'connected' : 'only a relayed connection';
    } catch (err) {
      return err instanceof Error ? `${err.name}: ${err.message.slice(0, 120)}` : String(err);
    }
  },
  async flood(kinds, count, perSecond, forgedPeerId = '12D3KooWForgedPeer0000') {
    let sent = 0;
    for (let i = 0; i < count; i++) {
      try {
        await node!.libp2p.services.pubsub.publish(topic, junk(kinds[i % kinds.length], i, forgedPeerId));
        sent++;
      } catch {
        // NoPeersSubscribedToTopic and the like: the flood goes on.
      }
      await new Promise((resolve) => setTimeout(resolve, 1000 / perSecond));
    }
    statusEl.textContent = `peer ${api.peerId}: published ${sent} junk messages`;
    return sent;
  },
};
window.telemetryFlood = api;

if (import.meta.hot) {
  import.meta.hot.on('vite:beforeFullReload', () => {
    throw new Error('flood harness: full reload skipped to keep the peer alive');
  });
}

api.ready = (async () => {
  try {
    const relays = await resolveRelays({ search: location.search, storage: localStorage, fetchJson: async (url) => (await fetch(url)).json() });
    node = await createSwarmNode({ relays, runId: wireRunId, dial: { maxRelays: relays.length } });
    node.libp2p.services.pubsub.subscribe(topic);
    api.peerId = node.peerId.toString();
    statusEl.textContent = `peer ${api.peerId} on ${topic}`;
  } catch (err) {
    api.error = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    statusEl.textContent = `failed: ${api.error}`;
    throw err;
  }
})();
