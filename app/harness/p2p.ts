// Test harness: one swarm node per tab, driven by Playwright through window.swarmHarness.
// Relays come from ?relays=a,b (or ?relay=a), then the app setting in localStorage, then the local relay's /relay.json.
import { createSwarmNode, type SwarmNode } from '../../p2p/node.ts';
import { resolveRelays } from '../../p2p/relay-config.ts';
import { syntheticPayload, syntheticRunContext } from '../../p2p/synthetic-adapter.ts';
import { sha256Hex } from '../../core/wire/bytes.ts';

export interface ReceivedRecord {
  peerId: string;
  version: number;
  sha256: string;
  announcedSha256: string;
  bytes: number;
  createdAtMs: number;
  announcedAtMs: number;
  receivedAtMs: number;
  fetchMs: number;
}

export interface HarnessApi {
  ready: Promise<void>;
  error?: string;
  peerId: string;
  startedAtMs: number;
  relays: string[];
  neighbours(): string[];
  pending(): Array<{ peerId: string; attempts: number; nextAttemptAt: number; lastError?: string }>;
  timeline(): { pageStartedAtMs: number; nodeStartedAtMs?: number; webrtcAddressAtMs?: number };
  neighbourLog(): Array<{ peerId: string; event: 'added' | 'removed'; atMs: number }>;
  connections(): Array<{ peerId: string; addr: string; limited: boolean; direct: boolean }>;
  /** Peers this tab knows to be subscribed to its run's adapter topic (an announcement only reaches those). */
  topicPeers(): string[];
  /** Sets the payload size the run uses (peers must agree: it fixes the adapter schema). */
  useAdapterSize(bytes: number): string;
  announce(seed?: number): Promise<{ sha256: string; bytes: number; version: number; createdAtMs: number; encodeMs: number }>;
  received(): ReceivedRecord[];
  rejections(): unknown;
  stats(): unknown;
}

declare global {
  interface Window {
    swarmHarness: HarnessApi;
  }
}

const params = new URLSearchParams(location.search);
const runId = params.get('run') ?? 'harness';
const statusEl = document.getElementById('status')!;
const received: ReceivedRecord[] = [];
const neighbourEvents: Array<{ peerId: string; event: 'added' | 'removed'; atMs: number }> = [];
let node: SwarmNode | undefined;
const timeline: { pageStartedAtMs: number; nodeStartedAtMs?: number; webrtcAddressAtMs?: number } = { pageStartedAtMs: Date.now() };
let version = 0;
let adapterBytes = Number(params.get('size') ?? 1_000_000);

function show(): void {
  if (!node) return;
  statusEl.textContent = [
    `peer ${node.peerId.toString()}`,
    `neighbours (${node.dialPolicy.neighbours().length}): ${node.dialPolicy.neighbours().join(', ')}`,
    `received: ${received.length}`,
  ].join('\n');
}

const api: HarnessApi = {
  ready: Promise.resolve(),
  peerId: '',
  startedAtMs: Date.now(),
  relays: [],
  neighbours: () => node?.dialPolicy.neighbours() ?? [],
  neighbourLog: () => [...neighbourEvents],
  pending: () => node?.dialPolicy.pending() ?? [],
  timeline: () => ({ ...timeline }),
  connections: () =>
    node?.libp2p.getConnections().map((c) => ({
      peerId: c.remotePeer.toString(),
      addr: c.remoteAddr.toString(),
      limited: c.limits != null,
      direct: c.direct,
    })) ?? [],
  topicPeers: () => (node ? node.libp2p.services.pubsub.getSubscribers(node.exchange.topic).map((p) => p.toString()) : []),
  useAdapterSize(bytes: number): string {
    adapterBytes = bytes;
    const context = syntheticRunContext(bytes);
    node?.exchange.setRunContext(context);
    return context.schemaHash;
  },
  async announce(seed?: number) {
    if (!node) throw new Error('node not started');
    const t0 = performance.now();
    const payload = syntheticPayload(adapterBytes, seed ?? Math.floor(Math.random() * 2 ** 31));
    const encodeMs = performance.now() - t0;
    version++;
    const manifest = await node.exchange.announce(payload.bytes, {
      version,
      step: version,
      samplesSeen: version * 64,
      localLoss: 3.5,
      codec: 'fp32',
      schemaHash: payload.schemaHash,
    });
    return { sha256: manifest.payloadSha256, bytes: manifest.payloadBytes, version, createdAtMs: manifest.createdAtMs, encodeMs };
  },
  received: () => [...received],
  rejections: () => node?.ledger.snapshot(),
  stats: () => node?.exchange.stats(),
};
window.swarmHarness = api;

// The dev server reloads every open page when any project file changes; a harness tab holds live peer state that a
// test is measuring, so it refuses those reloads (throwing here is how Vite's client lets a page veto one).
if (import.meta.hot) {
  import.meta.hot.on('vite:beforeFullReload', () => {
    throw new Error('swarm harness: full reload skipped to keep the peer alive');
  });
}

api.ready = (async () => {
  try {
    api.relays = await resolveRelays({ search: location.search, storage: localStorage, fetchJson: async (url) => (await fetch(url)).json() });
    node = await createSwarmNode({
      relays: api.relays,
      runId,
    });
    node.exchange.setRunContext(syntheticRunContext(adapterBytes));
    api.peerId = node.peerId.toString();
    timeline.nodeStartedAtMs = Date.now();
    node.libp2p.addEventListener('self:peer:update', () => {
      if (timeline.webrtcAddressAtMs === undefined && node!.multiaddrs().some((ma) => ma.toString().includes('/webrtc'))) {
        timeline.webrtcAddressAtMs = Date.now();
      }
    });
    node.dialPolicy.addEventListener('neighbour:added', (evt) => {
      neighbourEvents.push({ peerId: evt.detail, event: 'added', atMs: Date.now() });
      show();
    });
    node.dialPolicy.addEventListener('neighbour:removed', (evt) => {
      neighbourEvents.push({ peerId: evt.detail, event: 'removed', atMs: Date.now() });
      show();
    });
    node.exchange.addEventListener('adapter:received', (evt) => {
      const r = evt.detail;
      received.push({
        peerId: r.peerId,
        version: r.manifest.version,
        // Hashed again here, independently of the validator, so the test checks the bytes the app got.
        sha256: sha256Hex(r.bytes),
        announcedSha256: r.manifest.payloadSha256,
        bytes: r.bytes.length,
        createdAtMs: r.manifest.createdAtMs,
        announcedAtMs: r.announcedAtMs,
        receivedAtMs: r.receivedAtMs,
        fetchMs: r.fetchMs,
      });
      show();
    });
    show();
  } catch (err) {
    api.error = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    statusEl.textContent = `failed: ${api.error}`;
    throw err;
  }
})();
