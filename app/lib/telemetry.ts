// The dashboard's view of a run: telemetry from every peer this tab can hear, kept as a run log (core/swarm/run-log).
// A tab that trains reuses its peer's node; a tab that only watches starts a node of its own on the run's topics
// (it never sets a run context, so it fetches no adapters and publishes nothing). React reads it through
// subscribe()/snapshot(), and changes are announced at most twice a second so a large swarm cannot flood renders.
import { createSwarmNode, type SwarmNode } from '../../p2p/node.ts';
import { resolveRelays } from '../../p2p/relay-config.ts';
import { listenToTelemetry, type TelemetryFeed, type TelemetryFeedStats } from '../../p2p/telemetry-topic.ts';
import { RunLog, type RunLogRecord } from '../../core/swarm/run-log.ts';
import { defaultRunManifest, wireRunId } from '../../core/swarm/run.ts';
import type { RunManifest } from '../../core/wire/run-manifest.ts';
import type { RejectReason } from '../../core/wire/verdict.ts';
import type { PeerController } from './peer-controller.ts';

/** A peer is counted as left after this long without a report (3.5 default report intervals). */
export const SILENCE_MS = 35_000;
/** Live changes reach React at most this often. */
export const NOTIFY_INTERVAL_MS = 500;
const RECENT_REJECTIONS = 50;

export interface RecentRejection {
  peerId: string;
  reason: RejectReason;
  detail: string;
  atMs: number;
}

export interface ObserverConnection {
  peerId: string;
  relay: boolean;
}

export interface DashboardState {
  phase: 'idle' | 'starting' | 'watching' | 'error';
  /**
   * 'own-node': this tab only watches; 'peer-node': this tab trains and the dashboard shares its node;
   * 'synthetic': a load harness feeds it generated reports (watchFeed), no network at all.
   */
  via: 'own-node' | 'peer-node' | 'synthetic' | null;
  error: string | null;
  wireRunId: string | null;
  manifest: RunManifest | null;
  observerPeerId: string | null;
  relays: string[];
  connections: ObserverConnection[];
  recentRejections: RecentRejection[];
  feed: TelemetryFeedStats;
  /** Longest main-thread stall seen in the last 10 s (ms): how responsive the page is. */
  lagMs: number;
  /** Records in the log; the log itself is read with records(). */
  recordCount: number;
  revision: number;
}

/** ReadyInfo-like: what the watching tab needs to know about the run. */
async function resolveWatchedRun(controller: PeerController): Promise<RunManifest> {
  const run = controller.params.run;
  if (run.ok && run.value.kind === 'manifest') return run.value.manifest;
  if (run.ok && run.value.kind === 'id') {
    try {
      const known = JSON.parse(localStorage.getItem('swarm.knownRuns') ?? '{}') as Record<string, RunManifest>;
      if (known[run.value.id]) return known[run.value.id];
    } catch {
      // Unreadable storage: fall back to the default run.
    }
  }
  // The default run's identity depends on the base model's bytes: hash them as the worker does.
  const url = controller.params.modelUrl;
  const response = await fetch(`${url}model.safetensors`);
  if (!response.ok) throw new Error(`the base model ${url}model.safetensors answered ${response.status}`);
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', await response.arrayBuffer()));
  const sha = [...digest].map((b) => b.toString(16).padStart(2, '0')).join('');
  const defaults = defaultRunManifest(sha);
  return { ...defaults, baseModel: { ...defaults.baseModel, url } };
}

/** What the observer needs of a node: its own id and its live connections (a synthetic feed has no libp2p node). */
export interface ObservedNode {
  peerId: string;
  connections(): ObserverConnection[];
}

function observedNode(node: SwarmNode): ObservedNode {
  return {
    peerId: node.peerId.toString(),
    connections: () => node.libp2p.getConnections().map((c) => ({ peerId: c.remotePeer.toString(), relay: node.dialPolicy.isRelay(c.remotePeer.toString()) })),
  };
}

export class TelemetryObserver {
  private listeners = new Set<() => void>();
  private log: RunLog | null = null;
  private node?: SwarmNode;
  private feed?: TelemetryFeed;
  private unsubscribe: Array<() => void> = [];
  private timers: Array<ReturnType<typeof setInterval>> = [];
  private notifyTimer: ReturnType<typeof setTimeout> | null = null;
  private lastNotifyMs = 0;
  private lagSamples: Array<{ atMs: number; lagMs: number }> = [];
  /** Clock for 'left' detection; a load harness that speeds time up passes its own (watchFeed). */
  private now: () => number = Date.now;
  private state: DashboardState = {
    phase: 'idle', via: null, error: null, wireRunId: null, manifest: null, observerPeerId: null, relays: [], connections: [],
    recentRejections: [], feed: { accepted: 0, rejected: 0, byReason: {} }, lagMs: 0, recordCount: 0, revision: 0,
  };

  constructor(private readonly controller: PeerController) {}

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  snapshot = (): DashboardState => this.state;

  records(): readonly RunLogRecord[] {
    return this.log?.records ?? [];
  }

  exportJson(): string {
    return this.log?.toJson() ?? '';
  }

  exportCsv(): string {
    return this.log?.toCsv() ?? '';
  }

  /** Starts watching once (idempotent): through the tab's own peer when it has joined, otherwise with a node of its own. */
  start(): void {
    if (this.state.phase !== 'idle') return;
    this.set({ phase: 'starting' }, true);
    this.watchLag();
    void this.connect().catch((error: unknown) => {
      this.set({ phase: 'error', error: `The dashboard cannot listen to the run: ${error instanceof Error ? error.message : String(error)}` }, true);
    });
  }

  private async connect(): Promise<void> {
    const peer = this.controller.snapshot();
    if (peer.joined) {
      // The tab trains: wait for its node, then share it (one node per tab).
      const { feed, node, info } = await this.waitForPeerNetwork();
      this.attach(feed, observedNode(node), info.manifest, 'peer-node', peer.network.relays);
      return;
    }
    const manifest = await resolveWatchedRun(this.controller);
    const relays = await resolveRelays({ search: location.search, storage: localStorage, fetchJson: async (url) => (await fetch(url)).json() });
    // A watching tab hears the peers of every relay through that relay (p2p/telemetry-topic.ts), so it keeps them all.
    const node = await createSwarmNode({ relays, runId: wireRunId(manifest), dial: { maxRelays: relays.length } });
    this.node = node;
    this.attach(listenToTelemetry(node, wireRunId(manifest)), observedNode(node), manifest, 'own-node', relays);
  }

  /**
   * Load-test entry (app/harness/dashboard-load): watches a feed that no network node delivers, on a clock that may
   * run faster than the wall clock. Everything after the feed (run log, notifications, rendering) is the live path.
   */
  watchFeed(feed: TelemetryFeed, node: ObservedNode, manifest: RunManifest, relays: string[], now: () => number): void {
    if (this.state.phase !== 'idle') throw new Error('the observer is already watching');
    this.now = now;
    this.set({ phase: 'starting' }, true);
    this.watchLag();
    this.attach(feed, node, manifest, 'synthetic', relays);
  }

  private waitForPeerNetwork(): Promise<{ feed: TelemetryFeed; node: SwarmNode; info: NonNullable<ReturnType<PeerController['snapshot']>['info']> }> {
    return new Promise((resolve) => {
      const check = () => {
        const feed = this.controller.telemetryFeed();
        const node = this.controller.swarmNode();
        const info = this.controller.snapshot().info;
        if (feed && node && info) {
          stop();
          resolve({ feed, node, info });
        }
      };
      const stop = this.controller.subscribe(check);
      this.unsubscribe.push(stop);
      check();
    });
  }

  private attach(feed: TelemetryFeed, node: ObservedNode, manifest: RunManifest, via: DashboardState['via'], relays: string[]): void {
    this.feed = feed;
    const log = new RunLog({ source: 'live', wireRunId: feed.wireRunId, manifest, createdAtMs: this.now(), meta: { observer: node.peerId, via: via ?? 'own-node' } });
    this.log = log;
    this.unsubscribe.push(
      feed.onReport((report, atMs) => {
        log.addReport(report, atMs);
        this.changed();
      }),
      feed.onRejection((peerId, reason, detail, atMs) => {
        log.addRejection(peerId, reason, detail, atMs);
        this.set({ recentRejections: [...this.state.recentRejections, { peerId, reason, detail, atMs }].slice(-RECENT_REJECTIONS) });
      }),
    );
    this.set({ phase: 'watching', via, wireRunId: feed.wireRunId, manifest, observerPeerId: node.peerId, relays }, true);
    this.timers.push(
      setInterval(() => {
        log.expireSilent(this.now(), SILENCE_MS);
        const connections = node.connections();
        const unique = [...new Map(connections.map((c) => [c.peerId, c])).values()].sort((a, b) => a.peerId.localeCompare(b.peerId));
        // The same array while nothing changed, so the topology (memoised on it) is not redrawn every second.
        const key = (list: ObserverConnection[]) => list.map((c) => `${c.peerId}${c.relay ? 'r' : ''}`).join(' ');
        this.set({ connections: key(unique) === key(this.state.connections) ? this.state.connections : unique, feed: feed.stats() });
      }, 1000),
    );
  }

  /** Samples how late a 200 ms timer fires: a busy main thread shows up as lag. */
  private watchLag(): void {
    let expected = performance.now() + 200;
    this.timers.push(
      setInterval(() => {
        const now = performance.now();
        const lag = Math.max(0, now - expected);
        expected = now + 200;
        const atMs = Date.now();
        this.lagSamples.push({ atMs, lagMs: lag });
        this.lagSamples = this.lagSamples.filter((s) => atMs - s.atMs <= 10_000);
      }, 200),
    );
  }

  private changed(): void {
    this.set({});
  }

  /** Updates the state; listeners hear of it at most every NOTIFY_INTERVAL_MS unless `now`. */
  private set(change: Partial<DashboardState>, now = false): void {
    Object.assign(this.pending, change);
    if (now) {
      this.flush();
      return;
    }
    if (this.notifyTimer !== null) return;
    const wait = Math.max(0, this.lastNotifyMs + NOTIFY_INTERVAL_MS - Date.now());
    this.notifyTimer = setTimeout(() => this.flush(), wait);
  }

  private pending: Partial<DashboardState> = {};

  private flush(): void {
    if (this.notifyTimer !== null) clearTimeout(this.notifyTimer);
    this.notifyTimer = null;
    this.lastNotifyMs = Date.now();
    const lagMs = Math.round(this.lagSamples.reduce((m, s) => Math.max(m, s.lagMs), 0));
    this.state = { ...this.state, ...this.pending, lagMs, recordCount: this.log?.records.length ?? 0, revision: this.state.revision + 1 };
    this.pending = {};
    for (const l of this.listeners) l();
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    for (const u of this.unsubscribe) u();
    if (this.node) {
      this.feed?.stop();
      await this.node.stop();
    }
  }
}
