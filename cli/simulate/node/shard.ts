// A shard of the node simulator: some of the swarm's peers, each a real PeerEngine (core/swarm) on this thread's
// tfjs backend, driven by a virtual clock. The coordinator (run.ts) advances every shard one time window at a time;
// a window is never longer than the shortest link latency, so nothing sent in a window can arrive in the same
// window, and peers inside a window do not affect each other. That makes a run's result independent of how the
// peers are spread over shards and threads, and identical for the same seed.
//
// An engine only moves on when a sleep() it asked for returns (see core/swarm/peer-engine.ts), so "waking" a peer
// runs it until its next sleep; a delivery runs engine.handle() to completion while the peer sleeps.
import { PeerEngine, type EngineHost, type LoadedBase } from '../../../core/swarm/peer-engine.ts';
import type { EngineOptions, EngineStatus, HeldOutPoint, MainToWorker, WorkerToMain } from '../../../core/swarm/engine-protocol.ts';
import { memoryStore, type KeyValueStore } from '../../../core/swarm/peer-checkpoint.ts';
import { decodeAdapter } from '../../../core/wire/codec.ts';
import { DeltaReceiver, DeltaSender } from '../../../core/wire/delta-stream.ts';
import { loraModuleShapes } from '../../../core/model/config.ts';
import { schemaHash, type Adapter } from '../../../core/model/adapter.ts';
import type { RunManifest } from '../../../core/wire/run-manifest.ts';
import type { RejectReason } from '../../../core/wire/verdict.ts';
import { poisonPublished, type Attack, type AttackState } from '../../../core/swarm/byzantine.ts';
import { NoiseSource } from '../../../core/privacy/noise-source.ts';
import { runTrainingSettings } from '../../../core/swarm/run.ts';
import { deriveSeed } from '../../../core/util/random.ts';

/** A payload on its way from one peer to another, with the time it arrives. */
export interface Delivery {
  atMs: number;
  from: number;
  to: number;
  version: number;
  step: number;
  samplesSeen: number;
  localLoss: number | null;
  bytes: Uint8Array;
}

/** A payload a peer published in a window (the coordinator routes it over the links). */
export interface Publication {
  atMs: number;
  slot: number;
  version: number;
  step: number;
  samplesSeen: number;
  localLoss: number | null;
  bytes: Uint8Array;
  /** Extra junk announcements a flooding attacker sends with it. */
  flood: number;
  /** What a joiner attacker answers a newcomer with. */
  bootstrapPoison?: Uint8Array;
}

export interface PeerObservation {
  slot: number;
  peerId: string;
  incarnation: number;
  heldOut: HeldOutPoint[];
  status: EngineStatus | null;
  finished: boolean;
  transportRejections: Partial<Record<RejectReason, number>>;
  bytesSent: number;
  bytesReceived: number;
  /** Sparse runs: publications sent as keyframes and as deltas. */
  keyframes: number;
  deltas: number;
  errors: string[];
}

export interface ShardPeerSpec {
  slot: number;
  genre?: string;
  /** Virtual ms one training step takes on this peer. */
  stepMs: number;
  /** Virtual ms at which the peer joins (0: at the start). */
  joinAtMs: number;
  /** How long this peer, without a checkpoint, waits for neighbours' adapters to start from. */
  bootstrapWaitMs: number;
  byzantine: Attack | null;
}

export interface ShardInit {
  manifest: RunManifest;
  modelDir: string;
  corpusDir: string;
  options: Omit<EngineOptions, 'peerKey' | 'slot' | 'genre'>;
  peers: ShardPeerSpec[];
  runTag: string;
  wireRunId: string;
  /** Deliveries a peer accepts per virtual second from one sender before refusing them as rate-limited. */
  maxDeliveriesPerSecond: number;
}

export interface ShardWindowResult {
  publications: Publication[];
  observations: PeerObservation[];
}

type Event = { atMs: number; slot: number; seq: number } & ({ kind: 'wake'; resolve: () => void } | { kind: 'deliver'; delivery: Delivery } | { kind: 'join' });

interface SimPeer {
  spec: ShardPeerSpec;
  store: KeyValueStore;
  engine: PeerEngine | null;
  incarnation: number;
  peerId: string;
  seq: number;
  /** Resolved when the engine asks to sleep (it is parked until its wake event fires). */
  parked: (() => void) | null;
  heldOut: HeldOutPoint[];
  status: EngineStatus | null;
  finished: boolean;
  rejections: Partial<Record<RejectReason, number>>;
  bytesSent: number;
  bytesReceived: number;
  errors: string[];
  pendingPublications: Publication[];
  attack: AttackState;
  /** Deliveries accepted per (sender, virtual second), for the rate limit. */
  rate: Map<string, number>;
  /** Something about this peer changed in the current window, so the coordinator gets a fresh observation of it. */
  dirty: boolean;
  /** Sparse runs: this peer's outgoing stream and its reconstruction of each neighbour's (both new per incarnation). */
  sender: DeltaSender | null;
  receiver: DeltaReceiver | null;
  /** Publications sent as a full adapter (a keyframe) and as a sparse delta. */
  keyframes: number;
  deltas: number;
}

export function simPeerId(runTag: string, slot: number, incarnation: number): string {
  return `sim${runTag}s${slot}i${incarnation}`;
}

export class Shard {
  private nowMs = 0;
  private readonly queue: Event[] = [];
  private readonly peers = new Map<number, SimPeer>();
  private base?: LoadedBase;

  constructor(
    private readonly init: ShardInit,
    private readonly io: { loadBase(dir: string): Promise<LoadedBase>; readCorpus(dir: string, path: string): Promise<string>; backendName(): string },
  ) {}

  async start(): Promise<void> {
    this.base = await this.io.loadBase(this.init.modelDir);
    for (const spec of this.init.peers) {
      const peer: SimPeer = {
        spec, store: memoryStore(), engine: null, incarnation: 0, peerId: '', seq: 0, parked: null, heldOut: [], status: null, finished: false,
        rejections: {}, bytesSent: 0, bytesReceived: 0, errors: [], pendingPublications: [], attack: { first: null, rounds: 0 }, rate: new Map(),
        dirty: true,
        sender: null, receiver: null, keyframes: 0, deltas: 0,
      };
      this.peers.set(spec.slot, peer);
      this.push({ atMs: spec.joinAtMs, slot: spec.slot, seq: peer.seq++, kind: 'join' });
    }
  }

  private push(event: Event): void {
    this.queue.push(event);
  }

  /** The earliest event, by (time, slot, seq): the same order whatever else the shard holds. */
  private popBefore(endMs: number): Event | undefined {
    let best = -1;
    for (let i = 0; i < this.queue.length; i++) {
      const e = this.queue[i];
      if (e.atMs >= endMs) continue;
      const b = best < 0 ? undefined : this.queue[best];
      if (!b || e.atMs < b.atMs || (e.atMs === b.atMs && (e.slot < b.slot || (e.slot === b.slot && e.seq < b.seq)))) best = i;
    }
    return best < 0 ? undefined : this.queue.splice(best, 1)[0];
  }

  /** Kills a peer (its engine stops; its store survives), optionally to rejoin at `restartAtMs` from its checkpoint. */
  kill(slot: number, restartAtMs: number | null): void {
    const peer = this.peers.get(slot);
    if (!peer?.engine) return;
    // Parked in a sleep that will never return: its tensors can go.
    peer.engine.dispose();
    peer.engine = null;
    peer.dirty = true;
    peer.parked = null;
    for (let i = this.queue.length - 1; i >= 0; i--) if (this.queue[i].slot === slot) this.queue.splice(i, 1);
    if (restartAtMs !== null) this.push({ atMs: restartAtMs, slot, seq: peer.seq++, kind: 'join' });
  }

  /** Frees every engine's tensors: an in-process shard shares its tfjs with the next run. */
  close(): void {
    for (const peer of this.peers.values()) {
      peer.engine?.dispose();
      peer.engine = null;
    }
    this.queue.length = 0;
  }

  async runUntil(endMs: number, inbox: Delivery[]): Promise<ShardWindowResult> {
    for (const d of inbox) {
      const peer = this.peers.get(d.to);
      if (peer) this.push({ atMs: d.atMs, slot: d.to, seq: peer.seq++, kind: 'deliver', delivery: d });
    }
    for (let event = this.popBefore(endMs); event; event = this.popBefore(endMs)) {
      this.nowMs = Math.max(this.nowMs, event.atMs);
      const peer = this.peers.get(event.slot)!;
      peer.dirty = true;
      if (event.kind === 'join') await this.join(peer);
      else if (event.kind === 'wake') await this.wake(peer, event.resolve);
      else await this.deliver(peer, event.delivery);
    }
    this.nowMs = Math.max(this.nowMs, endMs);
    const publications = [...this.peers.values()].flatMap((p) => p.pendingPublications.splice(0));
    // Only peers that had an event: the coordinator keeps the last observation of the others, which is unchanged.
    // (Observing all 64 peers of a large run every 20 ms window cost the coordinator more CPU than it left the shards.)
    const observations = [...this.peers.values()].filter((p) => p.dirty).map((p) => this.observe(p));
    return { publications, observations };
  }

  private observe(p: SimPeer): PeerObservation {
    p.dirty = false;
    const heldOut = p.heldOut.splice(0);
    return {
      slot: p.spec.slot, peerId: p.peerId, incarnation: p.incarnation, heldOut, status: p.status, finished: p.finished,
      transportRejections: { ...p.rejections }, bytesSent: p.bytesSent, bytesReceived: p.bytesReceived, keyframes: p.keyframes, deltas: p.deltas,
      errors: p.errors.splice(0),
    };
  }

  /** A sparse run's streams for a (re)joining peer: it holds no public copy of its own or of anyone else's. */
  private sparseStreams(): Pick<SimPeer, 'sender' | 'receiver'> {
    const { sparse, lora, baseModel, codec } = this.init.manifest;
    if (!sparse) return { sender: null, receiver: null };
    const template = { baseModelId: baseModel.id, config: lora, modules: loraModuleShapes(this.base!.config, lora.targetModules) };
    const empty = new Float32Array(0);
    const shapeOnly: Adapter = { ...template, modules: new Map([...template.modules].map(([name, d]) => [name, { ...d, a: empty, b: empty }])) };
    return { sender: new DeltaSender(sparse), receiver: new DeltaReceiver({ template, schemaHash: schemaHash(shapeOnly), codec, config: sparse }) };
  }

  private async join(peer: SimPeer): Promise<void> {
    peer.incarnation++;
    Object.assign(peer, this.sparseStreams());
    peer.peerId = simPeerId(this.init.runTag, peer.spec.slot, peer.incarnation);
    peer.finished = false;
    const slot = peer.spec.slot;
    const host: EngineHost = {
      readCorpus: (path) => this.io.readCorpus(this.init.corpusDir, path),
      loadBase: async () => this.base!,
      store: peer.store,
      post: (message) => this.onMessage(peer, message),
      backendName: () => this.io.backendName(),
      now: () => this.nowMs,
      // A DP arm repeats exactly given the run seed (a volunteer's peer seeds from crypto.getRandomValues instead).
      privacyRandomness: () => {
        const seed = deriveSeed(runTrainingSettings(this.init.manifest).seed, `privacy/${slot}/${peer.incarnation}`);
        return { sampling: NoiseSource.fromTestSeed(seed), noise: NoiseSource.fromTestSeed(seed + 0.5) };
      },
      sleep: (ms) =>
        new Promise<void>((resolve) => {
          // A step costs its modelled compute time; the engine's own rest comes on top.
          this.push({ atMs: this.nowMs + Math.max(0, ms) + peer.spec.stepMs, slot, seq: peer.seq++, kind: 'wake', resolve });
          const parked = peer.parked;
          peer.parked = null;
          parked?.();
        }),
    };
    const engine = new PeerEngine(host);
    peer.engine = engine;
    const init: MainToWorker = {
      type: 'init',
      manifest: this.init.manifest,
      baseModelUrl: this.init.modelDir,
      backend: 'wasm',
      options: { ...this.init.options, peerKey: `slot${slot}`, slot, genre: peer.spec.genre, bootstrapWaitMs: peer.spec.bootstrapWaitMs },
    };
    const parked = new Promise<void>((resolve) => (peer.parked = resolve));
    // Loading reads files (real I/O); once handle() returns, the loop has started and runs on promises alone.
    await engine.handle(init);
    await this.untilParked(peer, engine, parked);
  }

  /** Waits until the engine asks to sleep again, or its loop ends (its steps done, or a fatal error). */
  private async untilParked(peer: SimPeer, engine: PeerEngine, parked: Promise<void>): Promise<void> {
    const ended = await Promise.race([parked.then(() => false), engine.finished.then(() => true)]);
    if (ended) {
      peer.parked = null;
      peer.finished = true;
    }
  }

  private async wake(peer: SimPeer, resolve: () => void): Promise<void> {
    const engine = peer.engine;
    if (!engine) return;
    const parked = new Promise<void>((r) => (peer.parked = r));
    resolve();
    await this.untilParked(peer, engine, parked);
  }

  private async deliver(peer: SimPeer, d: Delivery): Promise<void> {
    if (!peer.engine) return;
    const second = `${d.from}/${Math.floor(d.atMs / 1000)}`;
    const count = (peer.rate.get(second) ?? 0) + 1;
    peer.rate.set(second, count);
    if (count > this.init.maxDeliveriesPerSecond) return this.countRejection(peer, 'rate-limited');
    peer.bytesReceived += d.bytes.length;
    const from = this.peers.get(d.from);
    const fromPeerId = simPeerId(this.init.runTag, d.from, from?.incarnation ?? 1);
    let adapter: Adapter;
    if (peer.receiver) {
      // A sparse run: keyframes and deltas rebuild the sender's public copy, which the engine gets as a full adapter.
      const rebuilt = peer.receiver.receive(`${d.from}`, d.bytes, d.version);
      if (!rebuilt.ok) return this.countRejection(peer, rebuilt.reason);
      adapter = rebuilt.value.adapter;
    } else {
      // The transport's one decode and validation (as p2p/exchange does in a tab): the run's codec and schema.
      const decoded = decodeAdapter(d.bytes);
      if (!decoded.ok) return this.countRejection(peer, decoded.reason);
      if (decoded.codec !== this.init.manifest.codec) return this.countRejection(peer, 'schema-mismatch');
      adapter = decoded.adapter;
    }
    await peer.engine.handle({
      type: 'adapter',
      adapter,
      peerId: fromPeerId,
      version: d.version,
      step: d.step,
      samplesSeen: d.samplesSeen,
      localLoss: d.localLoss,
      runId: this.init.wireRunId,
      baseModelSha256: this.init.manifest.baseModel.sha256,
      schemaHash: '',
      receivedAtMs: this.nowMs,
    });
  }

  private countRejection(peer: SimPeer, reason: RejectReason): void {
    peer.rejections[reason] = (peer.rejections[reason] ?? 0) + 1;
  }

  private onMessage(peer: SimPeer, message: WorkerToMain): void {
    peer.dirty = true;
    switch (message.type) {
      case 'ready':
        peer.status = message.status;
        peer.heldOut.push(...message.info.heldOutHistory.filter((h) => h.step === 0 && peer.incarnation === 1).slice(0, 1));
        return;
      case 'status':
        peer.status = message.status;
        if (message.newHeldOut) peer.heldOut.push(message.newHeldOut);
        return;
      case 'publish': {
        let bytes: Uint8Array = new Uint8Array(message.bytes);
        let flood = 0;
        let bootstrapPoison: Uint8Array | undefined;
        if (peer.spec.byzantine) ({ bytes, flood, bootstrapPoison } = poisonPublished(peer.spec.byzantine, bytes, peer.attack, this.init.manifest.codec));
        if (peer.sender) {
          // The link carries the stream, not the engine's full adapter (a Byzantine peer's stream is of what it poisoned).
          try {
            const sent = peer.sender.publish(bytes, message.version);
            bytes = sent.bytes;
            if (sent.keyframe) peer.keyframes++;
            else peer.deltas++;
          } catch {
            // Bytes that do not decode (an attacker's garbage) go out as they are, and receivers refuse them.
            peer.keyframes++;
          }
        }
        peer.pendingPublications.push({
          atMs: this.nowMs, slot: peer.spec.slot, version: message.version, step: message.step, samplesSeen: message.samplesSeen,
          localLoss: message.localLoss, bytes, flood, bootstrapPoison,
        });
        return;
      }
      case 'error':
        peer.errors.push(`${message.kind}: ${message.message}`);
        return;
      default:
        return;
    }
  }
}
