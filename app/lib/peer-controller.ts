// The page side of a peer: starts the worker (model, training, merging, checkpoints) and the libp2p node (which
// must live on the main thread: workers have no RTCPeerConnection), and moves adapter bytes between them.
// A tab opened with `?run=<manifest id>` it has never seen starts the node first and asks its peers for the manifest.
// React reads its state through subscribe()/snapshot(); Playwright reads window.swarmPeer.
import type { SwarmNode } from '../../p2p/node.ts';
import { resolveNetworkConfig, type NetworkConfig } from '../../p2p/relay-config.ts';
import { KnownPeers } from '../../p2p/known-peers.ts';
import { checkIceServers } from './ice-check.ts';
import type { TelemetryFeed } from '../../p2p/telemetry-topic.ts';
import { emptyNetworkState, PeerSession, type NetworkState, type RunLookup } from '../../p2p/peer-session.ts';
import type { TelemetryReport } from '../../core/wire/telemetry.ts';
import type { RunManifest } from '../../core/wire/run-manifest.ts';
import type { PageParams } from './params.ts';
import { PageFaults } from './faults.ts';
import type {
  EngineOptions,
  EngineStatus,
  ErrorKind,
  HeldOutPoint,
  LossPoint,
  MainToWorker,
  MergeRecord,
  ReadyInfo,
  WorkerToMain,
} from '../../core/swarm/engine-protocol.ts';

export type { NetworkState, RunLookup };

export interface PageError {
  kind: ErrorKind | 'relay-unreachable' | 'network-config' | 'run-link' | 'run-lookup' | 'worker';
  message: string;
  atMs: number;
}

export interface Notice {
  level: 'info' | 'warning';
  message: string;
  atMs: number;
}

export interface PeerState {
  joined: boolean;
  runLookup: RunLookup | null;
  info: ReadyInfo | null;
  status: EngineStatus | null;
  lossHistory: LossPoint[];
  heldOutHistory: HeldOutPoint[];
  mergeHistory: MergeRecord[];
  network: NetworkState;
  errors: PageError[];
  notices: Notice[];
  generated: { base: string; adapted: string; ms: number } | null;
  generating: boolean;
  slot: number;
  peerKey: string;
  /** Bumped on every change, so React sees a new snapshot. */
  revision: number;
}

const KNOWN_RUNS_KEY = 'swarm.knownRuns';
const MAX_NOTICES = 30;

function sessionValue(key: string, make: () => string): string {
  try {
    const existing = sessionStorage.getItem(key);
    if (existing) return existing;
    const value = make();
    sessionStorage.setItem(key, value);
    return value;
  } catch {
    return make();
  }
}

export class PeerController {
  private worker?: Worker;
  /** The network side of this peer (p2p/peer-session.ts): node, announcements, telemetry, run lookup, watchdog. */
  private readonly session: PeerSession;
  /** Started once, by whichever needs it first: a run lookup or a ready worker. */
  private nodeStart?: Promise<SwarmNode | undefined>;
  private lookupAbort?: AbortController;
  private listeners = new Set<() => void>();
  private requestId = 0;
  private timer?: ReturnType<typeof setInterval>;
  private startedAtMs = Date.now();
  private state: PeerState;
  /** Simulation faults (latency, drops, Byzantine publishing); inactive unless the URL asks for them. */
  readonly faults: PageFaults;

  constructor(readonly params: PageParams) {
    this.faults = new PageFaults(params.faults);
    this.session = new PeerSession(
      {
        toEngine: (message, transfer) => this.send(message, transfer),
        notice: (level, message) => this.notice(level, message),
        problem: (kind, message) => this.error(kind, message),
        clearProblem: (kind) => this.update({ errors: this.state.errors.filter((e) => e.kind !== kind) }),
        faults: this.faults,
      },
      { telemetryMs: params.telemetryMs, duty: params.duty },
    );
    const peerKey = params.peerKey ?? sessionValue('swarm.peerKey', () => `tab-${crypto.randomUUID()}`);
    const slot = params.slot ?? Number(sessionValue('swarm.slot', () => String(Math.floor(Math.random() * 6))));
    this.state = {
      joined: false, runLookup: null, info: null, status: null, lossHistory: [], heldOutHistory: [], mergeHistory: [],
      network: emptyNetworkState(),
      errors: [], notices: [], generated: null, generating: false, slot, peerKey, revision: 0,
    };
  }

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  snapshot = (): PeerState => this.state;

  private update(change: Partial<PeerState>): void {
    this.state = { ...this.state, ...change, revision: this.state.revision + 1 };
    for (const l of this.listeners) l();
  }

  private error(kind: PageError['kind'], message: string): void {
    this.update({ errors: [...this.state.errors, { kind, message, atMs: Date.now() }].slice(-MAX_NOTICES) });
  }

  private notice(level: Notice['level'], message: string): void {
    this.update({ notices: [...this.state.notices, { level, message, atMs: Date.now() }].slice(-MAX_NOTICES) });
  }

  private send(message: MainToWorker, transfer: Transferable[] = []): void {
    this.worker?.postMessage(message, transfer);
  }

  /**
   * Joins the run: starts the worker, then (once the run is known) the p2p node. A manifest id this browser has
   * not seen is first looked up among peers, so there the node starts first and the worker once the manifest came.
   */
  join(): void {
    if (this.state.joined) return;
    this.update({ joined: true });
    this.startedAtMs = Date.now();
    const run = this.params.run;
    let manifest: RunManifest | null = null;
    let lookUp: string | null = null;
    if (!run.ok) {
      this.error('run-link', `The run link is invalid (${run.reason}): ${run.detail}. Joining the default run instead.`);
    } else if (run.value.kind === 'manifest') {
      manifest = run.value.manifest;
    } else if (run.value.kind === 'id') {
      manifest = this.knownRuns()[run.value.id] ?? null;
      if (!manifest && this.params.p2p && this.params.mergeEnabled) lookUp = run.value.id;
      else if (!manifest) this.notice('warning', `Run ${run.value.id.slice(0, 12)}… is not known in this browser, and with the network off no peer can be asked for it; trying the default run (its id is checked once loaded).`);
    }
    document.addEventListener('visibilitychange', () => this.send({ type: 'visibility', hidden: document.hidden }));
    this.timer = setInterval(() => this.tick(), 1000);
    if (lookUp) void this.lookUpRun(lookUp);
    else this.startWorker(manifest);
  }

  private startWorker(manifest: RunManifest | null): void {
    this.worker = new Worker(new URL('../worker/swarm.worker.ts', import.meta.url), { type: 'module' });
    this.worker.onmessage = (event: MessageEvent<WorkerToMain>) => this.onWorkerMessage(event.data);
    this.worker.onerror = (event) => this.error('worker', `The training worker failed: ${event.message || 'unknown error'}`);
    const options: EngineOptions = {
      peerKey: this.state.peerKey,
      slot: this.state.slot,
      genre: this.params.genre ?? undefined,
      maxSteps: this.params.maxSteps,
      mergeEnabled: this.params.mergeEnabled && this.params.p2p,
      bootstrapWaitMs: this.params.p2p && this.params.mergeEnabled ? this.params.bootstrapWaitMs : 0,
      evaluateEvery: this.params.evaluateEvery,
      checkpointEvery: this.params.checkpointEvery,
      duty: this.params.duty,
      slowWhenHidden: false,
      halfLifeMs: 60_000,
      dropAfterMs: 300_000,
      evalBatches: this.params.evalBatches,
    };
    // Before init, so that not even one step runs before the Resume button is pressed.
    if (this.params.startPaused) this.send({ type: 'pause' });
    this.send({ type: 'init', manifest, baseModelUrl: this.params.modelUrl, backend: this.params.backend, options });
  }

  /** Looks the run up among peers (p2p/peer-session.ts), then starts the worker on the manifest a peer handed over. */
  private async lookUpRun(id: string): Promise<void> {
    this.lookupAbort = new AbortController();
    const lookup = (runLookup: RunLookup) => this.update({ runLookup });
    const node = await this.startNode();
    if (!node) {
      const short = `${id.slice(0, 12)}…`;
      this.update({ runLookup: { id, state: 'failed', startedAtMs: Date.now(), notFound: 0, rejected: 0, unavailable: 0, lastProblem: null, fromPeer: null, foundAfterMs: null } });
      this.error('run-lookup', `Run ${short} is not known in this browser, and without the peer-to-peer network no peer can be asked for it. Joining the default run instead; open the full run link to join run ${short}.`);
      this.startWorker(null);
      return;
    }
    const found = await this.session.lookUpRun(id, { signal: this.lookupAbort.signal, onChange: lookup });
    if (!found) return;
    this.rememberManifest(id, found.manifest);
    this.startWorker(found.manifest);
  }

  private knownRuns(): Record<string, RunManifest> {
    try {
      return JSON.parse(localStorage.getItem(KNOWN_RUNS_KEY) ?? '{}') as Record<string, RunManifest>;
    } catch {
      return {};
    }
  }

  private rememberManifest(id: string, manifest: RunManifest): void {
    try {
      localStorage.setItem(KNOWN_RUNS_KEY, JSON.stringify({ ...this.knownRuns(), [id]: manifest }));
    } catch {
      // Private mode or full storage: the run simply is not remembered.
    }
  }

  private onWorkerMessage(message: WorkerToMain): void {
    this.session.onEngineMessage(message);
    switch (message.type) {
      case 'ready': {
        const run = this.params.run;
        if (run.ok && run.value.kind === 'id' && run.value.id !== message.info.manifestId) {
          this.error('run-mismatch', `This tab was asked to join run ${run.value.id.slice(0, 12)}…, but only knows run ${message.info.manifestId.slice(0, 12)}… (the default). Open the full run link to join another run.`);
        }
        this.rememberManifest(message.info.manifestId, message.info.manifest);
        this.update({
          info: message.info,
          status: message.status,
          lossHistory: message.info.lossHistory,
          heldOutHistory: message.info.heldOutHistory,
          mergeHistory: message.info.mergeHistory,
        });
        if (message.status.resumedFromStep !== null) this.notice('info', `Resumed from the checkpoint at step ${message.status.resumedFromStep}.`);
        if (this.params.p2p && this.params.mergeEnabled) void this.startNetwork(message.info);
        return;
      }
      case 'status': {
        const change: Partial<PeerState> = { status: message.status };
        if (message.newLoss) change.lossHistory = [...this.state.lossHistory, message.newLoss].slice(-2000);
        if (message.newHeldOut) change.heldOutHistory = [...this.state.heldOutHistory, message.newHeldOut];
        if (message.newMerge) change.mergeHistory = [...this.state.mergeHistory, message.newMerge].slice(-500);
        this.update(change);
        return;
      }
      case 'generated':
        this.update({ generated: { base: message.base, adapted: message.adapted, ms: message.ms }, generating: false });
        return;
      case 'peft':
        for (const [name, buffer] of Object.entries(message.files)) downloadBytes(name, new Uint8Array(buffer));
        return;
      case 'notice':
        this.notice(message.level, message.message);
        return;
      case 'error':
        this.error(message.kind, explainWorkerError(message.kind, message.message));
        return;
      default:
        // publish and adapter-verdict are the session's.
        return;
    }
  }

  private startNode(): Promise<SwarmNode | undefined> {
    this.nodeStart ??= this.createNode();
    return this.nodeStart;
  }

  private async createNode(): Promise<SwarmNode | undefined> {
    let config: NetworkConfig;
    try {
      config = await resolveNetworkConfig({ search: location.search, storage: localStorage, fetchJson: async (url) => (await fetch(url)).json() });
    } catch (error) {
      this.error('network-config', `No relay to find other peers: ${(error as Error).message}. Training continues alone.`);
      return undefined;
    }
    const { relays, iceServers } = config;
    for (const problem of config.problems) this.notice('warning', problem);
    void checkIceServers(iceServers).then((check) => {
      for (const problem of check.problems) this.error('network-config', `${problem} Tabs in other networks may not connect; the run link or the site's ICE configuration needs fixing.`);
    });
    const node = await this.session.start(relays, { iceServers, knownPeers: new KnownPeers(localStorage) });
    this.update({ network: this.session.network() });
    return node;
  }

  private async startNetwork(info: ReadyInfo): Promise<void> {
    if (!(await this.startNode())) return;
    await this.session.joinRun(info);
    this.update({});
  }

  private tick(): void {
    if (!this.session.swarmNode) return;
    this.update({ network: this.session.tick() });
  }

  pause(): void {
    this.send({ type: 'pause' });
  }

  resume(): void {
    this.send({ type: 'resume' });
  }

  throttle(duty: number, slowWhenHidden: boolean): void {
    this.session.throttle(duty, slowWhenHidden);
  }

  addLocalFiles(files: FileList | File[]): void {
    for (const file of Array.from(files)) {
      void file.text().then((text) => this.send({ type: 'local-text', name: file.name, text }));
    }
  }

  tryIt(prompt: string, maxNewTokens = 120): void {
    this.update({ generating: true });
    this.send({ type: 'generate', requestId: ++this.requestId, prompt, maxNewTokens, temperature: 0.8, seed: this.requestId });
  }

  downloadPeft(): void {
    this.send({ type: 'export-peft', requestId: ++this.requestId });
  }

  simulateDeviceLoss(): void {
    this.send({ type: 'simulate-device-loss' });
  }

  /** Telemetry reports this peer produced (the rows of the run log the dashboard exports). */
  telemetry(): TelemetryReport[] {
    return this.session.telemetry();
  }

  /** The tab's libp2p node once the network started (the dashboard shares it instead of starting another). */
  swarmNode(): SwarmNode | undefined {
    return this.session.swarmNode;
  }

  telemetryFeed(): TelemetryFeed | undefined {
    return this.session.telemetryFeed;
  }

  timeOnPageMs(): number {
    return Date.now() - this.startedAtMs;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.lookupAbort?.abort();
    this.worker?.terminate();
    await this.session.stop();
  }
}

function explainWorkerError(kind: ErrorKind, message: string): string {
  switch (kind) {
    case 'no-webgpu': return message;
    case 'model-load': return `The base model could not be loaded: ${message}`;
    case 'run-mismatch': return `This run does not match what this page serves: ${message}`;
    case 'storage-full': return `Browser storage is full, so checkpoints cannot be saved (training continues, but a reload would lose progress): ${message}`;
    case 'storage': return `Checkpoints cannot be saved: ${message}`;
    case 'data': return `The training data could not be prepared: ${message}`;
    case 'backend-lost': return `The compute backend failed: ${message}`;
    default: return `Something went wrong in the training worker: ${message}`;
  }
}

function downloadBytes(name: string, bytes: Uint8Array): void {
  const url = URL.createObjectURL(new Blob([bytes as BlobPart]));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
