// Test harness: the real dashboard fed by N synthetic peers, to see whether it stays responsive at swarm sizes
// nobody has run live yet (bench/dashboard.ts drives it). ?peers=16&speed=10&minutes=10&seed=1.
//
// Each synthetic peer builds its report with core/swarm's telemetryReport and core/wire's encodeTelemetry, as a
// training tab does, and the bytes go through p2p/telemetry-topic's listenToTelemetry: its rate limiter, strict
// decoder, sender/run/replay checks and its hand-off to listeners. The one thing bypassed is gossipsub itself,
// with its message signature check: a fake pubsub calls the topic validator directly and takes the report's own
// peer id as the signed sender. The clock runs `speed` times faster than the wall clock (the rate limiter, the
// 'left' detection and the report timestamps all read it), so one real second holds `speed` seconds of a run.
import { createRoot } from 'react-dom/client';
import { TopicValidatorResult, type GossipSub, type Message } from '@libp2p/gossipsub';
import type { PeerId } from '@libp2p/interface';
import { Dashboard, dashboardObserver } from '../ui/Dashboard.tsx';
import { PeerController } from '../lib/peer-controller.ts';
import { readPageParams } from '../lib/params.ts';
import { listenToTelemetry } from '../../p2p/telemetry-topic.ts';
import { telemetryReport, DEFAULT_TELEMETRY_INTERVAL_MS } from '../../core/swarm/telemetry.ts';
import { encodeTelemetry } from '../../core/wire/telemetry.ts';
import { defaultRunManifest, wireRunId } from '../../core/swarm/run.ts';
import { RejectionLedger } from '../../core/wire/verdict.ts';
import 'uplot/dist/uPlot.min.css';
import '../ui/styles.css';

export interface DashboardLoadStats {
  peers: number;
  speed: number;
  simSeconds: number;
  done: boolean;
  published: number;
  accepted: number;
  rejected: number;
  /** Long tasks (> 50 ms) the browser reported, in page time. */
  longTasks: Array<{ startMs: number; durationMs: number }>;
  /** requestAnimationFrame frame-to-frame delays (ms). */
  frameDeltas: number[];
  /** Largest lagMs the observer itself showed. */
  maxObserverLagMs: number;
  /** Observer notifications (≈ React renders of the dashboard). */
  notifications: number;
}

declare global {
  interface Window {
    dashboardLoad: { stats(): DashboardLoadStats; ready: boolean; error?: string };
  }
}

const q = new URLSearchParams(location.search);
const PEERS = Math.max(0, Number(q.get('peers') ?? 16));
const SPEED = Math.max(1, Number(q.get('speed') ?? 10));
const SIM_SECONDS = Math.max(10, Number(q.get('minutes') ?? 10) * 60);
let seed = Number(q.get('seed') ?? 1) >>> 0;

/** mulberry32: the same swarm on every run of the benchmark. */
function random(): number {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

const BASE58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
const fakePeerId = () => `12D3KooW${Array.from({ length: 44 }, () => BASE58[Math.floor(random() * BASE58.length)]).join('')}`;

const wallStart = Date.now();
const perfStart = performance.now();
const now = () => Math.round(wallStart + (performance.now() - perfStart) * SPEED);

const manifest = defaultRunManifest('0'.repeat(64));
const runId = wireRunId(manifest);

// A pubsub with just what listenToTelemetry touches.
const validators = new Map<string, (source: PeerId, message: Message) => TopicValidatorResult>();
const events = new EventTarget();
const pubsub = {
  topicValidators: validators,
  addEventListener: events.addEventListener.bind(events),
  removeEventListener: events.removeEventListener.bind(events),
  subscribe: () => undefined,
  unsubscribe: () => undefined,
} as unknown as GossipSub;
const feed = listenToTelemetry({ libp2p: { services: { pubsub } }, ledger: new RejectionLedger({ now }) }, runId, { now });
let published = 0;

/** What gossipsub does with a message after checking its signature: validator first, then 'message' if accepted. */
function gossip(senderPeerId: string, data: Uint8Array): void {
  published++;
  const from = { toString: () => senderPeerId } as unknown as PeerId;
  const message = { type: 'signed', from, topic: feed.topic, data, sequenceNumber: BigInt(published) } as unknown as Message;
  const validate = validators.get(feed.topic);
  if (validate?.(from, message) === TopicValidatorResult.Accept) events.dispatchEvent(new CustomEvent('message', { detail: message }));
}

interface SyntheticPeer {
  peerId: string;
  stepsPer10s: number;
  tokensPerSecond: number;
  backend: string;
  step: number;
  heldOut: number | null;
  merges: number;
  bytesSent: number;
  bytesReceived: number;
}

const peers: SyntheticPeer[] = Array.from({ length: PEERS }, () => ({
  peerId: fakePeerId(),
  stepsPer10s: 2 + random() * 6,
  tokensPerSecond: 300 + random() * 900,
  backend: random() < 0.25 ? 'webgpu' : 'wasm',
  step: 0,
  heldOut: null,
  merges: 0,
  bytesSent: 0,
  bytesReceived: 0,
}));
const H = manifest.localSteps;
const ADAPTER_BYTES = 290_000;

// Neighbours: a ring with chords (degree 4, as the dial policy aims for), symmetric, one link rewired a minute.
const links = new Set<string>();
const linkKey = (a: number, b: number) => (a < b ? `${a} ${b}` : `${b} ${a}`);
for (let i = 0; i < PEERS && PEERS > 1; i++) for (const d of [1, 2]) if ((i + d) % PEERS !== i) links.add(linkKey(i, (i + d) % PEERS));
function rewire(): void {
  const all = [...links];
  if (all.length === 0 || PEERS < 4) return;
  links.delete(all[Math.floor(random() * all.length)]);
  for (;;) {
    const a = Math.floor(random() * PEERS);
    const b = Math.floor(random() * PEERS);
    if (a !== b && !links.has(linkKey(a, b))) return void links.add(linkKey(a, b));
  }
}
function neighbours(i: number): string[] {
  const out: string[] = [];
  for (const l of links) {
    const [a, b] = l.split(' ').map(Number);
    if (a === i) out.push(peers[b].peerId);
    else if (b === i) out.push(peers[a].peerId);
  }
  return out;
}

function report(i: number): void {
  const p = peers[i];
  const before = Math.floor(p.step / H);
  p.step += Math.max(1, Math.round(p.stepsPer10s * (0.8 + 0.4 * random())));
  const rounds = Math.floor(p.step / H) - before;
  const degree = neighbours(i).length;
  p.merges += rounds;
  p.bytesSent += rounds * ADAPTER_BYTES * Math.max(1, Math.round(degree * random()));
  p.bytesReceived += rounds * ADAPTER_BYTES * degree;
  const trainLoss = 2.1 + 0.6 * Math.exp(-p.step / 250) + 0.08 * (random() - 0.5);
  if (p.heldOut === null ? p.step >= 15 : random() < 0.3) p.heldOut = 2.15 + 0.55 * Math.exp(-p.step / 300) + 0.02 * (random() - 0.5);
  const t = telemetryReport({
    peerId: p.peerId, runId, timeMs: now(), step: p.step, trainLoss, heldOutLoss: p.heldOut, merges: p.merges,
    bytesSent: p.bytesSent, bytesReceived: p.bytesReceived, versionsAnnounced: Math.floor(p.step / H), versionsFetched: p.merges * degree,
    neighbours: neighbours(i), rejections: p.step > 200 && i % 5 === 0 ? { 'rate-limited': Math.floor(p.step / 200) } : {},
    tokensPerSecond: p.tokensPerSecond * (0.9 + 0.2 * random()), backend: p.backend,
    consensusDistance: p.merges > 0 ? 0.02 + 0.3 * Math.exp(-p.merges / 8) * (0.8 + 0.4 * random()) : null,
  });
  gossip(p.peerId, encodeTelemetry(t));
}

const stats: DashboardLoadStats = {
  peers: PEERS, speed: SPEED, simSeconds: 0, done: false, published: 0, accepted: 0, rejected: 0,
  longTasks: [], frameDeltas: [], maxObserverLagMs: 0, notifications: 0,
};
try {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) stats.longTasks.push({ startMs: Math.round(e.startTime), durationMs: Math.round(e.duration) });
  }).observe({ type: 'longtask', buffered: true });
} catch {
  // No Long Tasks API: the frame deltas and the observer's lag still tell.
}
let lastFrame = 0;
const frame = (t: number) => {
  if (lastFrame > 0) stats.frameDeltas.push(t - lastFrame);
  lastFrame = t;
  if (!stats.done) requestAnimationFrame(frame);
};
requestAnimationFrame(frame);

const controller = new PeerController(readPageParams(location.search));
const observer = dashboardObserver(controller);
const relay = '/ip4/127.0.0.1/tcp/9090/ws/p2p/12D3KooWSyntheticRe1ayXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX';
const observerPeerId = fakePeerId();
observer.watchFeed(
  feed,
  {
    peerId: observerPeerId,
    // The watching tab keeps a few direct connections and its relay, like a real watcher.
    connections: () => [...peers.slice(0, Math.min(3, PEERS)).map((p) => ({ peerId: p.peerId, relay: false })), { peerId: relay.split('/p2p/')[1], relay: true }],
  },
  manifest,
  [relay],
  now,
);
observer.subscribe(() => {
  stats.notifications++;
  stats.maxObserverLagMs = Math.max(stats.maxObserverLagMs, observer.snapshot().lagMs);
});

// Every peer reports once per (simulated) 10 s, phases spread over the first interval, with ±10% jitter.
const intervalRealMs = DEFAULT_TELEMETRY_INTERVAL_MS / SPEED;
const endSim = wallStart + SIM_SECONDS * 1000;
peers.forEach((_, i) => {
  const tick = () => {
    if (now() >= endSim) return;
    report(i);
    setTimeout(tick, intervalRealMs * (0.9 + 0.2 * random()));
  };
  setTimeout(tick, (intervalRealMs * i) / PEERS);
});
let lastRewire = now();
const clock = setInterval(() => {
  stats.simSeconds = Math.round((now() - wallStart) / 1000);
  if (now() - lastRewire >= 60_000) {
    rewire();
    lastRewire = now();
  }
  if (now() >= endSim) {
    stats.done = true;
    clearInterval(clock);
  }
}, 100);

window.dashboardLoad = {
  ready: true,
  stats: () => {
    const s = feed.stats();
    return { ...stats, published, accepted: s.accepted, rejected: s.rejected };
  },
};

createRoot(document.getElementById('root')!).render(
  <div className="app">
    <Dashboard controller={controller} />
  </div>,
);
