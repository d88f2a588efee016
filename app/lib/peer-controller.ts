// The page side of a peer: starts the worker (model, training, merging, checkpoints) and the libp2p node (which
// must live on the main thread: workers have no RTCPeerConnection), and moves adapter bytes between them.
// A tab opened with `?run=<manifest id>` it has never seen starts the node first and asks its peers for the manifest.
// React reads its state through subscribe()/snapshot(); Playwright reads window.swarmPeer.
import { createSwarmNode, type SwarmNode } from '../../p2p/node.ts';
import { resolveNetworkConfig, type NetworkConfig } from '../../p2p/relay-config.ts';
import { KnownPeers } from '../../p2p/known-peers.ts';
import { checkIceServers } from './ice-check.ts';
import { listenToTelemetry, type TelemetryFeed } from '../../p2p/telemetry-topic.ts';
import { DEFAULT_RUN_LOOKUP_WARN_MS } from '../../p2p/constants.ts';
import type { ManifestAnswer } from '../../p2p/run-manifest.ts';
import { explainRejection } from '../../core/swarm/compatibility.ts';
import { TelemetryGate, telemetryReport, telemetryTopic } from '../../core/swarm/telemetry.ts';
import { encodeTelemetry, type TelemetryReport } from '../../core/wire/telemetry.ts';
import type { RunManifest } from '../../core/wire/run-manifest.ts';
import type { RejectReason } from '../../core/wire/verdict.ts';
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
} from '../worker/protocol.ts';

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

export interface NetworkState {
  peerId: string | null;
  relays: string[];
  relayConnected: boolean;
  neighbours: string[];
  /** Peers the dial policy is still trying to reach directly, with their last dial error. */
  dialPending: Array<{ peerId: string; attempts: number; lastError?: string }>;
  /** Open connections of any kind (relayed signalling ones included). */
  connections: number;
  bytesSent: number;
  bytesReceived: number;
  versionsAnnounced: number;
  versionsFetched: number;
  rejections: Partial<Record<RejectReason, number>>;
}

/** A tab that came by a manifest id it did not know, looking for the manifest among its peers. */
export interface RunLookup {
  id: string;
  state: 'looking' | 'found' | 'failed';
  startedAtMs: number;
  /** Answers so far: peers that did not know the run, and peers whose answer was refused. */
  notFound: number;
  rejected: number;
  /** Peers that could not be asked (yet): the connection went away, or they do not speak the protocol. */
  unavailable: number;
  lastProblem: string | null;
  /** The peer that handed the manifest over, and how long the search took. */
  fromPeer: string | null;
  foundAfterMs: number | null;
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

/**
 * While a tab has fewer direct neighbours than this and dials are pending, its worker trains at CONNECTING_DUTY at
 * most, for up to CONNECTING_MAX_MS after the network starts. Eight tabs training flat out on two cores starve the
 * main threads that run the WebRTC and Noise handshakes: every dial timed out and the tabs stayed alone for
 * minutes (dashboard.spec with 8 peers). Connected, they train at the user's setting again.
 */
const CONNECTING_NEIGHBOURS = 2;
const CONNECTING_DUTY = 0.1;
const CONNECTING_MAX_MS = 120_000;
/** How long a tab may be without relay and neighbours (a busy machine takes a while to connect) before it says so. */
const RELAY_GRACE_MS = 30_000;

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
  private node?: SwarmNode;
  /** Started once, by whichever needs it first: a run lookup or a ready worker. */
  private nodeStart?: Promise<SwarmNode | undefined>;
  private lookupAbort?: AbortController;
  /** Every peer listens on the telemetry topic (validated, rate-limited), so reports cross the mesh to any dashboard. */
  private feed?: TelemetryFeed;
  private listeners = new Set<() => void>();
  private requestId = 0;
  private telemetryGate: TelemetryGate;
  private readonly telemetryLog: TelemetryReport[] = [];
  private readonly seenRejections = new Set<string>();
  private readonly refusedByWorker: Partial<Record<RejectReason, number>> = {};
  private timer?: ReturnType<typeof setInterval>;
  private userDuty: number;
  private yieldingToNetwork = false;
  private networkStartedAtMs: number | null = null;
  private aloneSinceMs: number | null = null;
  private startedAtMs = Date.now();
  private state: PeerState;
  /** Simulation faults (latency, drops, Byzantine publishing); inactive unless the URL asks for them. */
  readonly faults: PageFaults;

  constructor(readonly params: PageParams) {
    this.userDuty = params.duty;
    this.faults = new PageFaults(params.faults);
    this.telemetryGate = new TelemetryGate(params.telemetryMs);
    const peerKey = params.peerKey ?? sessionValue('swarm.peerKey', () => `tab-${crypto.randomUUID()}`);
    const slot = params.slot ?? Number(sessionValue('swarm.slot', () => String(Math.floor(Math.random() * 6))));
    this.state = {
      joined: false, runLookup: null, info: null, status: null, lossHistory: [], heldOutHistory: [], mergeHistory: [],
      network: { peerId: null, relays: [], relayConnected: false, neighbours: [], dialPending: [], connections: 0, bytesSent: 0, bytesReceived: 0, versionsAnnounced: 0, versionsFetched: 0, rejections: {} },
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

  /**
   * Asks every connected peer for the manifest with this id until one hands it over (verified against the id by
   * the protocol), then starts the worker on it. There is no deadline: the peers of a run may simply not be
   * online yet, so after a while the page says so and keeps looking.
   */
  private async lookUpRun(id: string): Promise<void> {
    const short = `${id.slice(0, 12)}…`;
    const startedAtMs = Date.now();
    const lookup = (change: Partial<RunLookup>) =>
      this.update({ runLookup: { ...(this.state.runLookup ?? { id, state: 'looking', startedAtMs, notFound: 0, rejected: 0, unavailable: 0, lastProblem: null, fromPeer: null, foundAfterMs: null }), ...change } });
    lookup({});
    const node = await this.startNode();
    if (!node) {
      lookup({ state: 'failed' });
      this.error('run-lookup', `Run ${short} is not known in this browser, and without the peer-to-peer network no peer can be asked for it. Joining the default run instead; open the full run link to join run ${short}.`);
      this.startWorker(null);
      return;
    }
    this.notice('info', `Looking for run ${short} among peers…`);
    const warning = setTimeout(() => {
      this.error('run-lookup', `No peer knows run ${short} after ${Math.round(DEFAULT_RUN_LOOKUP_WARN_MS / 1000)} s. Still looking: this tab starts as soon as a peer of that run connects. Opening the full run link (not only its id) joins without waiting for one.`);
    }, DEFAULT_RUN_LOOKUP_WARN_MS);
    this.lookupAbort = new AbortController();
    const onAnswer = (answer: ManifestAnswer) => {
      if (answer.status === 'not-found') lookup({ notFound: (this.state.runLookup?.notFound ?? 0) + 1 });
      if (answer.status === 'unavailable') lookup({ unavailable: (this.state.runLookup?.unavailable ?? 0) + 1, lastProblem: `…${answer.peerId.slice(-6)}: ${answer.detail}` });
      if (answer.status === 'rejected') {
        lookup({ rejected: (this.state.runLookup?.rejected ?? 0) + 1 });
        this.explain(answer.peerId, answer.reason, answer.detail);
      }
    };
    const found = await node.runManifests.find(id, { signal: this.lookupAbort.signal, skip: (peerId) => node.dialPolicy.isRelay(peerId), onAnswer });
    clearTimeout(warning);
    if (!found) return;
    const afterMs = Date.now() - startedAtMs;
    this.update({ errors: this.state.errors.filter((e) => e.kind !== 'run-lookup') });
    lookup({ state: 'found', fromPeer: found.peerId, foundAfterMs: afterMs });
    this.notice('info', `Got run "${found.manifest.runId}" (${short}) from peer …${found.peerId.slice(-6)} after ${(afterMs / 1000).toFixed(1)} s; it matches the id.`);
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
      case 'publish':
        void this.announce(message);
        return;
      case 'adapter-verdict':
        if (!message.ok && message.reason) {
          this.refusedByWorker[message.reason] = (this.refusedByWorker[message.reason] ?? 0) + 1;
          this.explain(message.peerId, message.reason, message.detail);
        }
        return;
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
    }
  }

  private explain(peerId: string, reason: RejectReason, detail?: string): void {
    const key = `${peerId}/${reason}`;
    if (this.seenRejections.has(key)) return;
    this.seenRejections.add(key);
    const text = explainRejection(peerId, reason, detail);
    if (reason === 'wrong-run' || reason === 'wrong-base-model' || reason === 'schema-mismatch') this.error('run-mismatch', `${text} Its adapters are not merged.`);
    else this.notice('warning', text);
  }

  private startNode(): Promise<SwarmNode | undefined> {
    this.nodeStart ??= this.createNode();
    return this.nodeStart;
  }

  /** The node joins no run yet: that waits for the worker, which checks the manifest against the served model. */
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
    let node: SwarmNode;
    try {
      node = await createSwarmNode({ relays, iceServers, knownPeers: new KnownPeers(localStorage), discoveryIntervalMs: 1000 });
    } catch (error) {
      this.error('relay-unreachable', `The peer-to-peer node did not start: ${(error as Error).message}. Training continues alone.`);
      return undefined;
    }
    this.node = node;
    node.exchange.addEventListener('adapter:received', async (evt) => {
      const r = evt.detail;
      if (this.faults.dropIncoming()) return;
      await this.faults.delay();
      const bytes = r.bytes.slice().buffer;
      this.send(
        {
          type: 'adapter', bytes, peerId: r.peerId, version: r.manifest.version, step: r.manifest.step, samplesSeen: r.manifest.samplesSeen,
          localLoss: r.manifest.localLoss, runId: r.manifest.runId, baseModelSha256: r.manifest.baseModelSha256, schemaHash: r.manifest.schemaHash,
          receivedAtMs: r.receivedAtMs,
        },
        [bytes],
      );
    });
    node.exchange.addEventListener('adapter:rejected', (evt) => this.explain(evt.detail.peerId, evt.detail.reason, evt.detail.detail));
    const banned = (evt: CustomEvent<{ peerId: string }>) => this.notice('warning', `Peer …${evt.detail.peerId.slice(-6)} sent bad data repeatedly and is refused for a while.`);
    node.exchange.addEventListener('peer:banned', banned);
    node.runManifests.addEventListener('peer:banned', banned);
    this.update({ network: { ...this.state.network, peerId: node.peerId.toString(), relays } });
    this.aloneSinceMs = Date.now();
    return node;
  }

  private async startNetwork(info: ReadyInfo): Promise<void> {
    const node = await this.startNode();
    if (!node) return;
    try {
      node.exchange.joinRun(info.wireRunId, { baseModelId: info.baseModelId, baseModelSha256: info.baseModelSha256, schemaHash: info.schemaHash });
    } catch (error) {
      this.error('run-mismatch', `This tab's network already takes part in another run: ${(error as Error).message}. Reload the page to join run ${info.wireRunId}.`);
      return;
    }
    this.feed ??= listenToTelemetry(node, info.wireRunId);
    try {
      // Tabs that come later by this run's id get its manifest from us.
      node.runManifests.serve(info.manifest);
    } catch (error) {
      this.notice('warning', `This tab cannot hand the run's manifest to other tabs: ${(error as Error).message}`);
    }
    this.update({});
  }

  private relayConnected(): boolean {
    const node = this.node;
    if (!node) return false;
    return node.libp2p.getConnections().some((c) => node.dialPolicy.isRelay(c.remotePeer.toString()));
  }

  private async announce(m: Extract<WorkerToMain, { type: 'publish' }>): Promise<void> {
    if (!this.node) return;
    if (this.faults.dropOutgoing()) return;
    await this.faults.delay();
    try {
      await this.node.exchange.announce(this.faults.outgoing(new Uint8Array(m.bytes), m.codec), {
        version: m.version, step: m.step, samplesSeen: m.samplesSeen, localLoss: m.localLoss, codec: m.codec, schemaHash: m.schemaHash,
      });
    } catch (error) {
      this.notice('warning', `Announcing adapter version ${m.version} failed: ${(error as Error).message}`);
    }
  }

  /** While neither a relay nor a neighbour is connected for RELAY_GRACE_MS, the page says so; the notice goes once one is. */
  private watchRelay(node: SwarmNode): void {
    const alone = !this.relayConnected() && node.dialPolicy.neighbours().length === 0;
    const shown = this.state.errors.some((e) => e.kind === 'relay-unreachable');
    if (!alone) {
      this.aloneSinceMs = null;
      if (shown) {
        this.update({ errors: this.state.errors.filter((e) => e.kind !== 'relay-unreachable') });
        this.notice('info', 'The relay is reachable again; looking for peers.');
      }
      return;
    }
    this.aloneSinceMs ??= Date.now();
    if (!shown && Date.now() - this.aloneSinceMs > RELAY_GRACE_MS) {
      const relays = this.state.network.relays.join(', ');
      this.error('relay-unreachable', `No relay (${relays}) can be reached, so no other peers can be found. This tab keeps retrying, waiting longer after each failure; training continues alone meanwhile. Check that the relays are running.`);
    }
  }

  private tick(): void {
    const node = this.node;
    if (node) {
      this.watchRelay(node);
      if (this.state.status) this.yieldToNetwork(node);
      const stats = node.exchange.stats();
      const rejections: Partial<Record<RejectReason, number>> = { ...node.ledger.snapshot().byReason };
      for (const [reason, n] of Object.entries(this.refusedByWorker) as [RejectReason, number][]) rejections[reason] = (rejections[reason] ?? 0) + n;
      this.update({
        network: {
          ...this.state.network,
          relayConnected: this.relayConnected(),
          neighbours: node.dialPolicy.neighbours(),
          dialPending: node.dialPolicy.pending().map(({ peerId, attempts, lastError }) => ({ peerId, attempts, lastError })),
          connections: node.libp2p.getConnections().length,
          bytesSent: stats.bytesServed,
          bytesReceived: stats.bytesFetched,
          versionsAnnounced: stats.announced,
          versionsFetched: stats.fetched,
          rejections,
        },
      });
      if (this.state.info && this.state.status && this.telemetryGate.take(Date.now())) this.publishTelemetry(node);
    }
  }

  private currentReport(peerId: string): TelemetryReport | null {
    const { info, status, network } = this.state;
    if (!info || !status) return null;
    return telemetryReport({
      peerId,
      runId: info.wireRunId,
      timeMs: Date.now(),
      step: status.step,
      trainLoss: status.trainLoss,
      heldOutLoss: status.heldOut?.own ?? null,
      merges: status.merges,
      bytesSent: network.bytesSent,
      bytesReceived: network.bytesReceived,
      versionsAnnounced: network.versionsAnnounced,
      versionsFetched: network.versionsFetched,
      neighbours: network.neighbours,
      rejections: network.rejections,
      tokensPerSecond: status.tokensPerSecond,
      backend: status.backend,
      consensusDistance: status.consensusDistance ?? null,
    });
  }

  private publishTelemetry(node: SwarmNode): void {
    const report = this.currentReport(node.peerId.toString());
    if (!report) return;
    this.telemetryLog.push(report);
    this.feed?.ingestOwn(report);
    if (this.telemetryLog.length > 5000) this.telemetryLog.splice(0, this.telemetryLog.length - 5000);
    try {
      void node.libp2p.services.pubsub.publish(telemetryTopic(report.runId), encodeTelemetry(report)).catch(() => undefined);
    } catch {
      // Telemetry is best effort; training and merging do not depend on it.
    }
  }

  pause(): void {
    this.send({ type: 'pause' });
  }

  resume(): void {
    this.send({ type: 'resume' });
  }

  throttle(duty: number, slowWhenHidden: boolean): void {
    this.userDuty = duty;
    this.send({ type: 'throttle', duty: this.yieldingToNetwork ? Math.min(duty, CONNECTING_DUTY) : duty, slowWhenHidden });
  }

  /** See CONNECTING_DUTY: trains slowly while the first direct connections are being made. */
  private yieldToNetwork(node: SwarmNode): void {
    this.networkStartedAtMs ??= Date.now();
    const neighbours = node.dialPolicy.neighbours().length;
    const reachable = neighbours + node.dialPolicy.pending().length;
    const yielding =
      Date.now() - this.networkStartedAtMs < CONNECTING_MAX_MS && neighbours < Math.min(CONNECTING_NEIGHBOURS, reachable);
    if (yielding === this.yieldingToNetwork) return;
    this.yieldingToNetwork = yielding;
    this.send({ type: 'throttle', duty: yielding ? Math.min(this.userDuty, CONNECTING_DUTY) : this.userDuty });
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
    return [...this.telemetryLog];
  }

  /** The tab's libp2p node once the network started (the dashboard shares it instead of starting another). */
  swarmNode(): SwarmNode | undefined {
    return this.node;
  }

  telemetryFeed(): TelemetryFeed | undefined {
    return this.feed;
  }

  timeOnPageMs(): number {
    return Date.now() - this.startedAtMs;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.lookupAbort?.abort();
    this.worker?.terminate();
    await this.node?.stop();
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
