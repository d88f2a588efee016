// One peer's protocol work, between its libp2p node and its peer engine (core/swarm/peer-engine.ts), whatever
// hosts the two: a tab (the engine in a Web Worker, the node on the page) or `swarm peer` (both in one Node
// process). It announces what the engine publishes, hands received adapters to the engine, publishes telemetry,
// looks a run up by its manifest id, watches whether a relay or a neighbour is reachable, and makes training yield
// the CPU while the first direct connections are being made. The host keeps only its own state and the bridge to
// its engine: it passes the engine's messages to onEngineMessage() and delivers what the session sends.
import { createSwarmNode, type SwarmNode, type SwarmNodeInit } from './node.ts';
import { listenToTelemetry, publishTelemetry, type TelemetryFeed } from './telemetry-topic.ts';
import { DEFAULT_RUN_LOOKUP_WARN_MS } from './constants.ts';
import type { ManifestAnswer } from './run-manifest-protocol.ts';
import { explainRejection } from '../core/swarm/compatibility.ts';
import { DEFAULT_TELEMETRY_INTERVAL_MS, TelemetryGate, telemetryReport } from '../core/swarm/telemetry.ts';
import { adapterBuffers, type EngineStatus, type MainToWorker, type ReadyInfo, type WorkerToMain } from '../core/swarm/engine-protocol.ts';
import { encodeTelemetry, type TelemetryReport } from '../core/wire/telemetry.ts';
import type { RunManifest } from '../core/wire/run-manifest.ts';
import type { PayloadCodec } from '../core/wire/codec.ts';
import type { RejectReason } from '../core/wire/verdict.ts';

/**
 * While a peer has fewer direct neighbours than this and dials are pending, its engine trains at CONNECTING_DUTY at
 * most, for up to CONNECTING_MAX_MS after the network starts. Eight tabs training flat out on two cores starve the
 * main threads that run the WebRTC and Noise handshakes: every dial timed out and the tabs stayed alone for
 * minutes (dashboard.spec with 8 peers). Connected, they train at the user's setting again.
 */
export const CONNECTING_NEIGHBOURS = 2;
export const CONNECTING_DUTY = 0.1;
export const CONNECTING_MAX_MS = 120_000;
/** How long a peer may be without relay and neighbours (a busy machine takes a while to connect) before it says so. */
export const RELAY_GRACE_MS = 30_000;
/** Own telemetry reports kept for the run log export. */
const MAX_TELEMETRY_LOG = 5000;

/** Problems the session reports that stay shown until they are resolved (the host clears them when told). */
export type SessionProblemKind = 'relay-unreachable' | 'run-mismatch' | 'run-lookup';

/** Simulation faults a host may inject (app/lib/faults.ts); the session applies them at the network boundary. */
export interface SessionFaults {
  dropIncoming(): boolean;
  dropOutgoing(): boolean;
  delay(): Promise<void>;
  outgoing(bytes: Uint8Array, codec: PayloadCodec): Uint8Array;
}

export interface PeerSessionHost {
  /** The engine's inbox: a worker's postMessage on a page, the engine itself in `swarm peer`. */
  toEngine(message: MainToWorker, transfer?: ArrayBuffer[]): void;
  notice(level: 'info' | 'warning', message: string): void;
  /** A problem the user should see; it stays until clearProblem(kind). */
  problem(kind: SessionProblemKind, message: string): void;
  clearProblem(kind: SessionProblemKind): void;
  faults?: SessionFaults;
  now?(): number;
}

export interface PeerSessionOptions {
  /** How often the peer gossips a telemetry report (ms). */
  telemetryMs?: number;
  relayGraceMs?: number;
  /** Tells the host how to start a relay when none answers (shown with the relay-unreachable problem). */
  relayHint?: string;
  /** The duty cycle the engine was started with (share of wall time spent training). */
  duty?: number;
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

/** A peer that came by a manifest id it did not know, looking for the manifest among its peers. */
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

export interface LookUpRunOptions {
  /** Every change of the lookup's state (answers counted, found). */
  onChange?(lookup: RunLookup): void;
  /** Ends the search; lookUpRun then resolves to null. */
  signal?: AbortSignal;
  warnAfterMs?: number;
}

export function emptyNetworkState(): NetworkState {
  return { peerId: null, relays: [], relayConnected: false, neighbours: [], dialPending: [], connections: 0, bytesSent: 0, bytesReceived: 0, versionsAnnounced: 0, versionsFetched: 0, rejections: {} };
}

export class PeerSession {
  private node?: SwarmNode;
  private nodeStart?: Promise<SwarmNode | undefined>;
  /** The telemetry topic, subscribed only once this peer shows a dashboard (training peers only publish). */
  private feed?: TelemetryFeed;
  private info: ReadyInfo | null = null;
  private status: EngineStatus | null = null;
  private readonly now: () => number;
  private readonly telemetryGate: TelemetryGate;
  private readonly telemetryLog: TelemetryReport[] = [];
  private readonly seenRejections = new Set<string>();
  private readonly refusedByEngine: Partial<Record<RejectReason, number>> = {};
  private userDuty = 1;
  private yieldingToNetwork = false;
  private networkStartedAtMs: number | null = null;
  private aloneSinceMs: number | null = null;
  private relayProblemShown = false;
  private state: NetworkState = emptyNetworkState();
  private readonly relayGraceMs: number;

  constructor(
    private readonly host: PeerSessionHost,
    private readonly options: PeerSessionOptions = {},
  ) {
    this.now = host.now ?? Date.now;
    this.telemetryGate = new TelemetryGate(options.telemetryMs ?? DEFAULT_TELEMETRY_INTERVAL_MS);
    this.relayGraceMs = options.relayGraceMs ?? RELAY_GRACE_MS;
    this.userDuty = options.duty ?? 1;
  }

  /** The node once started (the dashboard shares it instead of starting another). */
  get swarmNode(): SwarmNode | undefined {
    return this.node;
  }

  /** The run's telemetry as a dashboard hears it: only a peer that shows the dashboard subscribes (p2p/telemetry-topic.ts). */
  get telemetryFeed(): TelemetryFeed | undefined {
    if (!this.feed && this.node && this.info) this.feed = listenToTelemetry(this.node, this.info.wireRunId);
    return this.feed;
  }

  network(): NetworkState {
    return this.state;
  }

  /** Telemetry reports this peer produced (the rows of the run log the dashboard exports). */
  telemetry(): TelemetryReport[] {
    return [...this.telemetryLog];
  }

  /**
   * Starts the node once (later calls get the same one). It joins no run yet: that waits for the engine, which
   * checks the manifest against the base model it loaded. Undefined, with the problem reported, if it cannot start.
   */
  start(relays: string[], init: Omit<SwarmNodeInit, 'relays'> = {}): Promise<SwarmNode | undefined> {
    this.nodeStart ??= this.createNode(relays, init);
    return this.nodeStart;
  }

  private async createNode(relays: string[], init: Omit<SwarmNodeInit, 'relays'>): Promise<SwarmNode | undefined> {
    let node: SwarmNode;
    try {
      node = await createSwarmNode({ ...init, relays });
    } catch (error) {
      this.host.problem('relay-unreachable', `The peer-to-peer node did not start: ${(error as Error).message}. Training continues alone.`);
      return undefined;
    }
    this.node = node;
    node.exchange.addEventListener('adapter:received', async (evt) => {
      const r = evt.detail;
      const faults = this.host.faults;
      if (faults?.dropIncoming()) return;
      await faults?.delay();
      // Decoded and validated once, by the exchange: the engine gets the tensors themselves.
      this.host.toEngine(
        {
          type: 'adapter', adapter: r.adapter, peerId: r.peerId, version: r.manifest.version, step: r.manifest.step, samplesSeen: r.manifest.samplesSeen,
          localLoss: r.manifest.localLoss, runId: r.manifest.runId, baseModelSha256: r.manifest.baseModelSha256, schemaHash: r.manifest.schemaHash,
          receivedAtMs: r.receivedAtMs,
        },
        adapterBuffers(r.adapter),
      );
    });
    node.exchange.addEventListener('adapter:rejected', (evt) => this.explain(evt.detail.peerId, evt.detail.reason, evt.detail.detail));
    const banned = (evt: CustomEvent<{ peerId: string }>) => this.host.notice('warning', `Peer …${evt.detail.peerId.slice(-6)} sent bad data repeatedly and is refused for a while.`);
    node.exchange.addEventListener('peer:banned', banned);
    node.runManifests.addEventListener('peer:banned', banned);
    this.state = { ...this.state, peerId: node.peerId.toString(), relays };
    this.aloneSinceMs = this.now();
    return node;
  }

  /**
   * Asks every connected peer for the manifest with this id until one hands it over (verified against the id by
   * the protocol). There is no deadline: the peers of a run may simply not be online yet, so after warnAfterMs
   * the session says so (a 'run-lookup' problem) and keeps looking. Null when aborted or without a node.
   */
  async lookUpRun(id: string, options: LookUpRunOptions = {}): Promise<{ manifest: RunManifest; peerId: string; afterMs: number } | null> {
    const short = `${id.slice(0, 12)}…`;
    const startedAtMs = this.now();
    let lookup: RunLookup = { id, state: 'looking', startedAtMs, notFound: 0, rejected: 0, unavailable: 0, lastProblem: null, fromPeer: null, foundAfterMs: null };
    const change = (delta: Partial<RunLookup>) => {
      lookup = { ...lookup, ...delta };
      options.onChange?.(lookup);
    };
    change({});
    const node = this.node ?? (await this.nodeStart);
    if (!node) {
      change({ state: 'failed' });
      return null;
    }
    this.host.notice('info', `Looking for run ${short} among peers…`);
    const warnAfterMs = options.warnAfterMs ?? DEFAULT_RUN_LOOKUP_WARN_MS;
    const warning = setTimeout(() => {
      this.host.problem('run-lookup', `No peer knows run ${short} after ${Math.round(warnAfterMs / 1000)} s. Still looking: this peer starts as soon as a peer of that run connects. The full run link (not only its id) joins without waiting for one.`);
    }, warnAfterMs);
    const onAnswer = (answer: ManifestAnswer) => {
      if (answer.status === 'not-found') change({ notFound: lookup.notFound + 1 });
      if (answer.status === 'unavailable') change({ unavailable: lookup.unavailable + 1, lastProblem: `…${answer.peerId.slice(-6)}: ${answer.detail}` });
      if (answer.status === 'rejected') {
        change({ rejected: lookup.rejected + 1 });
        this.explain(answer.peerId, answer.reason, answer.detail);
      }
    };
    let found: Awaited<ReturnType<typeof node.runManifests.find>>;
    try {
      found = await node.runManifests.find(id, { signal: options.signal, skip: (peerId) => node.dialPolicy.isRelay(peerId), onAnswer });
    } finally {
      clearTimeout(warning);
    }
    if (!found) return null;
    const afterMs = this.now() - startedAtMs;
    this.host.clearProblem('run-lookup');
    change({ state: 'found', fromPeer: found.peerId, foundAfterMs: afterMs });
    this.host.notice('info', `Got run "${found.manifest.runId}" (${short}) from peer …${found.peerId.slice(-6)} after ${(afterMs / 1000).toFixed(1)} s; it matches the id.`);
    return { manifest: found.manifest, peerId: found.peerId, afterMs };
  }

  /** Everything the engine says that concerns the network; the host handles the rest (and may look at these too). */
  onEngineMessage(message: WorkerToMain): void {
    switch (message.type) {
      case 'ready':
        this.info = message.info;
        this.status = message.status;
        return;
      case 'status':
        this.status = message.status;
        return;
      case 'publish':
        void this.announce(message);
        return;
      case 'adapter-verdict':
        if (!message.ok && message.reason) {
          this.refusedByEngine[message.reason] = (this.refusedByEngine[message.reason] ?? 0) + 1;
          this.explain(message.peerId, message.reason, message.detail);
        }
        return;
      default:
        return;
    }
  }

  /** Joins the run the engine is ready for: its adapter topic, its telemetry topic, and serving its manifest. */
  async joinRun(info: ReadyInfo): Promise<boolean> {
    this.info = info;
    const node = this.node ?? (await this.nodeStart);
    if (!node) return false;
    try {
      node.exchange.joinRun(info.wireRunId, {
        baseModelId: info.baseModelId, baseModelSha256: info.baseModelSha256, schemaHash: info.schemaHash, codec: info.codec, payloadBytes: info.payloadBytes,
      });
    } catch (error) {
      this.host.problem('run-mismatch', `This peer's network already takes part in another run: ${(error as Error).message}. Restart it to join run ${info.wireRunId}.`);
      return false;
    }
    try {
      // Peers that come later by this run's id get its manifest from us.
      node.runManifests.serve(info.manifest);
    } catch (error) {
      this.host.notice('warning', `This peer cannot hand the run's manifest to other peers: ${(error as Error).message}`);
    }
    return true;
  }

  /** The user's duty cycle; while the first connections are made the engine gets less (see CONNECTING_DUTY). */
  throttle(duty: number, slowWhenHidden?: boolean): void {
    this.userDuty = duty;
    this.host.toEngine({ type: 'throttle', duty: this.yieldingToNetwork ? Math.min(duty, CONNECTING_DUTY) : duty, slowWhenHidden });
  }

  /** Call about once a second: the relay watchdog, the connect-yield rule, telemetry; returns the network's state. */
  tick(): NetworkState {
    const node = this.node;
    if (!node) return this.state;
    this.watchRelay(node);
    if (this.status) this.yieldToNetwork(node);
    const stats = node.exchange.stats();
    const rejections: Partial<Record<RejectReason, number>> = { ...node.ledger.snapshot().byReason };
    for (const [reason, n] of Object.entries(this.refusedByEngine) as [RejectReason, number][]) rejections[reason] = (rejections[reason] ?? 0) + n;
    this.state = {
      ...this.state,
      relayConnected: this.relayConnected(node),
      neighbours: node.dialPolicy.neighbours(),
      dialPending: node.dialPolicy.pending().map(({ peerId, attempts, lastError }) => ({ peerId, attempts, lastError })),
      connections: node.libp2p.getConnections().length,
      bytesSent: stats.bytesServed,
      bytesReceived: stats.bytesFetched,
      versionsAnnounced: stats.announced,
      versionsFetched: stats.fetched,
      rejections,
    };
    if (this.info && this.status && this.telemetryGate.take(this.now())) this.publishTelemetry(node);
    return this.state;
  }

  async stop(): Promise<void> {
    this.feed?.stop();
    await this.node?.stop();
  }

  private explain(peerId: string, reason: RejectReason, detail?: string): void {
    const key = `${peerId}/${reason}`;
    if (this.seenRejections.has(key)) return;
    this.seenRejections.add(key);
    const text = explainRejection(peerId, reason, detail);
    if (reason === 'wrong-run' || reason === 'wrong-base-model' || reason === 'schema-mismatch') this.host.problem('run-mismatch', `${text} Its adapters are not merged.`);
    else this.host.notice('warning', text);
  }

  private relayConnected(node: SwarmNode): boolean {
    return node.libp2p.getConnections().some((c) => node.dialPolicy.isRelay(c.remotePeer.toString()));
  }

  private async announce(m: Extract<WorkerToMain, { type: 'publish' }>): Promise<void> {
    const node = this.node;
    if (!node) return;
    const faults = this.host.faults;
    if (faults?.dropOutgoing()) return;
    await faults?.delay();
    const bytes = new Uint8Array(m.bytes);
    try {
      await node.exchange.announce(faults ? faults.outgoing(bytes, m.codec) : bytes, {
        version: m.version, step: m.step, samplesSeen: m.samplesSeen, localLoss: m.localLoss, codec: m.codec, schemaHash: m.schemaHash,
      });
    } catch (error) {
      this.host.notice('warning', `Announcing adapter version ${m.version} failed: ${(error as Error).message}`);
    }
  }

  /** While neither a relay nor a neighbour is connected for relayGraceMs, the session says so; the problem goes once one is. */
  private watchRelay(node: SwarmNode): void {
    const alone = !this.relayConnected(node) && node.dialPolicy.neighbours().length === 0;
    if (!alone) {
      this.aloneSinceMs = null;
      if (this.relayProblemShown) {
        this.relayProblemShown = false;
        this.host.clearProblem('relay-unreachable');
        this.host.notice('info', 'The relay is reachable again; looking for peers.');
      }
      return;
    }
    this.aloneSinceMs ??= this.now();
    if (!this.relayProblemShown && this.now() - this.aloneSinceMs > this.relayGraceMs) {
      this.relayProblemShown = true;
      const relays = this.state.relays.join(', ');
      const hint = this.options.relayHint ?? 'check that `npm run relay` is running';
      this.host.problem('relay-unreachable', `No relay (${relays}) can be reached, so no other peers can be found. This peer keeps retrying, waiting longer after each failure; training continues alone meanwhile; ${hint}.`);
    }
  }

  /** See CONNECTING_DUTY: trains slowly while the first direct connections are being made. */
  private yieldToNetwork(node: SwarmNode): void {
    this.networkStartedAtMs ??= this.now();
    const neighbours = node.dialPolicy.neighbours().length;
    const reachable = neighbours + node.dialPolicy.pending().length;
    const yielding = this.now() - this.networkStartedAtMs < CONNECTING_MAX_MS && neighbours < Math.min(CONNECTING_NEIGHBOURS, reachable);
    if (yielding === this.yieldingToNetwork) return;
    this.yieldingToNetwork = yielding;
    this.host.toEngine({ type: 'throttle', duty: yielding ? Math.min(this.userDuty, CONNECTING_DUTY) : this.userDuty });
  }

  private currentReport(peerId: string): TelemetryReport | null {
    const { info, status, state: network } = this;
    if (!info || !status) return null;
    return telemetryReport({
      peerId,
      runId: info.wireRunId,
      timeMs: this.now(),
      step: status.step,
      trainLoss: status.trainLoss,
      heldOutLoss: status.heldOut?.own ?? null,
      merges: status.merges,
      bytesSent: network.bytesSent,
      bytesReceived: network.bytesReceived,
      versionsAnnounced: network.versionsAnnounced,
      versionsFetched: network.versionsFetched,
      neighbours: network.neighbours,
      // The transport's refusals and the engine's (the update guard's out-of-bounds, wrong-run, ...), together.
      rejections: mergeCounts(network.rejections, status.adaptersRefused),
      tokensPerSecond: status.tokensPerSecond,
      backend: status.backend,
      consensusDistance: status.consensusDistance ?? null,
      health: status.health,
      privacy: status.privacy,
    });
  }

  private publishTelemetry(node: SwarmNode): void {
    const report = this.currentReport(node.peerId.toString());
    if (!report) return;
    this.telemetryLog.push(report);
    this.feed?.ingestOwn(report);
    if (this.telemetryLog.length > MAX_TELEMETRY_LOG) this.telemetryLog.splice(0, this.telemetryLog.length - MAX_TELEMETRY_LOG);
    try {
      void publishTelemetry(node, encodeTelemetry(report), report.runId).catch(() => undefined);
    } catch {
      // Telemetry is best effort; training and merging do not depend on it.
    }
  }
}

function mergeCounts<K extends string>(a: Partial<Record<K, number>>, b: Partial<Record<K, number>>): Partial<Record<K, number>> {
  const out: Partial<Record<K, number>> = { ...a };
  for (const [key, n] of Object.entries(b) as Array<[K, number]>) out[key] = (out[key] ?? 0) + n;
  return out;
}
