// The adapter exchange: gossip a small signed manifest per adapter version on the run's topic, serve the payload
// over a direct stream protocol, and fetch the payloads that neighbours announce.
//
// Gossipsub drops messages of 4 MiB or more without a word, and relayed connections are capped at 128 KiB, so
// payloads only ever travel over a stream on a direct, unlimited connection. Everything a peer sends is bytes until
// core/wire accepts it; every rejection is counted per peer, feeds gossipsub's score, and a peer that keeps sending
// bad data is disconnected and refused for a while. Nothing a peer sends can make this service throw.
import { TypedEventEmitter, type ComponentLogger, type Connection, type Logger, type PeerId, type Startable, type Stream, type StreamMessageEvent } from '@libp2p/interface';
import type { ConnectionManager, Registrar } from '@libp2p/interface-internal';
import { TopicValidatorResult, type GossipSub, type Message } from '@libp2p/gossipsub';
import { peerIdFromString } from '@libp2p/peer-id';
import type { Adapter } from '../core/model/adapter.ts';
import { sha256Hex } from '../core/wire/bytes.ts';
import {
  checkAnnouncement,
  encodeAnnouncement,
  announcementFor,
  validatePayload,
  type AnnouncementManifest,
} from '../core/wire/manifest.ts';
import { gossipDisposition, reject, type RejectionLedger, type RejectReason, type Verdict } from '../core/wire/verdict.ts';
import { isDirectConnection } from './dial-policy.ts';
import type { PayloadCodec } from '../core/wire/codec.ts';
import {
  ADAPTER_PROTOCOL,
  DEFAULT_ANNOUNCE_BURST,
  DEFAULT_ANNOUNCE_INTERVAL_MS,
  DEFAULT_FETCH_IDLE_TIMEOUT_MS,
  DEFAULT_FETCH_MIN_BYTES_PER_SECOND,
  DEFAULT_FETCH_RATE_WINDOW_MS,
  DEFAULT_FETCH_TIMEOUT_MS,
  DEFAULT_MAX_BYTES_IN_FLIGHT,
  DEFAULT_MAX_CONCURRENT_FETCHES,
  DEFAULT_MAX_CONCURRENT_SERVES,
  DEFAULT_MAX_PAYLOAD_BYTES,
  DEFAULT_SERVE_BURST,
  DEFAULT_SERVE_CONCURRENT_PER_PEER,
  DEFAULT_SERVE_INTERVAL_MS,
  runTopic,
} from './constants.ts';
import { chunksOf, readExactly, sendWithBackpressure, TransferWatchdog, type TransferPace } from './stream-io.ts';
import { TelemetryRateLimiter as SenderRateLimiter } from './telemetry-topic.ts';

/** Wire layout of a fetch. Request: [REQUEST_VERSION][32-byte sha256]. Response: [status][uint32 BE length][bytes]. */
const REQUEST_VERSION = 1;
const REQUEST_BYTES = 33;
const RESPONSE_HEADER_BYTES = 5;
const STATUS_OK = 0;
const STATUS_NOT_FOUND = 1;
/** The server refuses this request: the requester asks faster or more at once than it serves anyone. */
const STATUS_RATE_LIMITED = 2;
const FETCH_RETRIES = 2;
const RETRYABLE = new Set<RejectReason>(['fetch-failed', 'truncated', 'rate-limited']);
/** Chunk size for writing a payload; small enough for WebRTC data channels to interleave other streams. */
const WRITE_CHUNK_BYTES = 64 * 1024;

/** What a node must know about its own run to judge a peer's announcement. */
export interface RunContext {
  baseModelId: string;
  baseModelSha256: string;
  schemaHash: string;
  /** The run manifest's codec; when given, announcements and payloads in another codec are refused. */
  codec?: PayloadCodec;
  /**
   * The exact payload size the run's schema and codec imply (core/wire expectedPayloadBytes); when given, an
   * announcement of any other size is refused before a byte is fetched.
   */
  payloadBytes?: number;
}

export interface AdapterExchangeInit {
  /**
   * The run whose topic the exchange joins. Absent: a tab that came by a manifest id it does not know starts its
   * node first, asks peers for the manifest, and joins the run later with joinRun().
   */
  runId?: string;
  ledger: RejectionLedger;
  /** Known from the start, or set later with setRunContext (announcements before that are ignored, not counted). */
  context?: RunContext;
  maxPayloadBytes?: number;
  fetchTimeoutMs?: number;
  /** A fetch loses its slot when no byte arrives for this long (DEFAULT_FETCH_IDLE_TIMEOUT_MS). */
  fetchIdleTimeoutMs?: number;
  /** ... or when fewer bytes per second than this arrive over fetchRateWindowMs (DEFAULT_FETCH_MIN_BYTES_PER_SECOND). */
  fetchMinBytesPerSecond?: number;
  fetchRateWindowMs?: number;
  maxConcurrentFetches?: number;
  /** Most announced payload bytes that concurrent fetches may cover together (DEFAULT_MAX_BYTES_IN_FLIGHT). */
  maxBytesInFlight?: number;
  /** Per-sender announcement rate limit: a burst, then one per interval. */
  announceBurst?: number;
  announceIntervalMs?: number;
  /** Per-requester serving rate limit: a burst, then one per interval, and at most so many at once. */
  serveBurst?: number;
  serveIntervalMs?: number;
  serveConcurrentPerPeer?: number;
  maxConcurrentServes?: number;
  /** How many of our own latest payloads stay fetchable. */
  keepServed?: number;
  /** How long a peer that was disconnected for bad data stays refused. */
  banMs?: number;
  bans?: PeerBans;
}

export interface AdapterExchangeComponents {
  peerId: PeerId;
  registrar: Registrar;
  connectionManager: ConnectionManager;
  logger: ComponentLogger;
  pubsub?: GossipSub;
}

export interface ReceivedAdapter {
  peerId: string;
  manifest: AnnouncementManifest;
  bytes: Uint8Array;
  adapter: Adapter;
  /** When the announcement arrived here, and when its payload was accepted (ms since epoch). */
  announcedAtMs: number;
  receivedAtMs: number;
  fetchMs: number;
}

export interface RejectedInput {
  peerId: string;
  reason: RejectReason;
  detail: string;
  /** Where the bad input was met: a gossiped announcement, a fetched payload, or a request to serve one. */
  stage: 'announcement' | 'payload' | 'request';
}

export interface AdapterExchangeEvents {
  'adapter:received': CustomEvent<ReceivedAdapter>;
  'adapter:rejected': CustomEvent<RejectedInput>;
  'peer:banned': CustomEvent<{ peerId: string; untilMs: number }>;
}

export interface ExchangeStats {
  announced: number;
  served: number;
  bytesServed: number;
  fetched: number;
  bytesFetched: number;
  rejected: number;
  /** Valid announcements from peers we have no direct connection to (a bounded-degree swarm merges with neighbours only). */
  skippedNotNeighbour: number;
  /** Payload bytes held right now by fetches still in progress (memory grows with what arrived, not what was announced). */
  bufferedBytes: number;
  /** Requests we refused to serve because the requester asked too fast or too much at once, or we were busy. */
  servesRefused: number;
}

export interface AdapterExchange extends TypedEventEmitter<AdapterExchangeEvents> {
  /** The run's gossip topic; empty until a run is joined. */
  readonly topic: string;
  /** The run joined at creation or by joinRun(); undefined before. */
  readonly runId: string | undefined;
  /** Joins a run's topic once; a node takes part in one run for its lifetime (RunAlreadyJoinedError otherwise). */
  joinRun(runId: string, context?: RunContext): void;
  setRunContext(context: RunContext): void;
  /** Publishes the manifest for an encoded adapter and serves it until keepServed newer ones replace it. */
  announce(payload: Uint8Array, fields: AnnounceFields): Promise<AnnouncementManifest>;
  stats(): ExchangeStats;
  isBanned(peerId: string): boolean;
}

/** Manifest fields the caller knows; the rest (run, peer, base model, size, hash, time) the exchange fills in. */
export type AnnounceFields = Pick<AnnouncementManifest, 'version' | 'step' | 'samplesSeen' | 'localLoss' | 'codec'> &
  Partial<Pick<AnnouncementManifest, 'schemaHash'>>;

export class ExchangeNotReadyError extends Error {
  static override readonly name = 'ExchangeNotReadyError';
  override readonly name = 'ExchangeNotReadyError';
}

export class RunAlreadyJoinedError extends Error {
  static override readonly name = 'RunAlreadyJoinedError';
  override readonly name = 'RunAlreadyJoinedError';
}

export class PayloadTooLargeError extends Error {
  static override readonly name = 'PayloadTooLargeError';
  override readonly name = 'PayloadTooLargeError';
}

/** Peers refused after sending bad data; consulted by the exchange and by the node's connection gater. */
export class PeerBans {
  private readonly until = new Map<string, number>();
  constructor(private readonly now: () => number = Date.now) {}

  ban(peerId: string, forMs: number): number {
    const untilMs = this.now() + forMs;
    this.until.set(peerId, untilMs);
    return untilMs;
  }

  isBanned(peerId: string): boolean {
    const untilMs = this.until.get(peerId);
    if (untilMs === undefined) return false;
    if (this.now() >= untilMs) {
      this.until.delete(peerId);
      return false;
    }
    return true;
  }
}

interface PendingFetch {
  manifest: AnnouncementManifest;
  announcedAtMs: number;
}

class SwarmAdapterExchange extends TypedEventEmitter<AdapterExchangeEvents> implements AdapterExchange, Startable {
  readonly [Symbol.toStringTag] = 'swarm/adapter-exchange';
  private readonly components: AdapterExchangeComponents;
  private readonly log: Logger;
  private currentRunId?: string;
  private subscribed = false;
  private afterStarted = false;
  private readonly ledger: RejectionLedger;
  private readonly bans: PeerBans;
  private readonly maxPayloadBytes: number;
  private readonly fetchTimeoutMs: number;
  private readonly maxConcurrentFetches: number;
  private readonly maxBytesInFlight: number;
  private readonly pace: TransferPace;
  private readonly announceLimiter: SenderRateLimiter;
  private readonly serveLimiter: SenderRateLimiter;
  private readonly serveConcurrentPerPeer: number;
  private readonly maxConcurrentServes: number;
  /** Serves in progress per requester. */
  private readonly serving = new Map<string, number>();
  private servingTotal = 0;
  /** Announced bytes of the fetches in progress, by peer. */
  private readonly inFlightBytes = new Map<string, number>();
  private readonly keepServed: number;
  private readonly banMs: number;
  private context?: RunContext;
  /** Our payloads by sha256 hex, oldest first. */
  private readonly served = new Map<string, Uint8Array>();
  private readonly lastVersion = new Map<string, number>();
  /** The newest not-yet-fetched announcement per peer; an older one waiting is simply replaced. */
  private readonly queue = new Map<string, PendingFetch>();
  private readonly inFlight = new Set<string>();
  private readonly counters: ExchangeStats = {
    announced: 0, served: 0, bytesServed: 0, fetched: 0, bytesFetched: 0, rejected: 0, skippedNotNeighbour: 0,
    bufferedBytes: 0, servesRefused: 0,
  };
  private started = false;

  constructor(components: AdapterExchangeComponents, init: AdapterExchangeInit) {
    super();
    this.components = components;
    this.log = components.logger.forComponent('swarm:exchange');
    this.currentRunId = init.runId;
    this.ledger = init.ledger;
    this.bans = init.bans ?? new PeerBans();
    this.context = init.context;
    this.maxPayloadBytes = init.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
    this.fetchTimeoutMs = init.fetchTimeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS;
    this.maxConcurrentFetches = init.maxConcurrentFetches ?? DEFAULT_MAX_CONCURRENT_FETCHES;
    this.maxBytesInFlight = init.maxBytesInFlight ?? DEFAULT_MAX_BYTES_IN_FLIGHT;
    this.pace = {
      idleTimeoutMs: init.fetchIdleTimeoutMs ?? DEFAULT_FETCH_IDLE_TIMEOUT_MS,
      minBytesPerSecond: init.fetchMinBytesPerSecond ?? DEFAULT_FETCH_MIN_BYTES_PER_SECOND,
      rateWindowMs: init.fetchRateWindowMs ?? DEFAULT_FETCH_RATE_WINDOW_MS,
    };
    this.announceLimiter = new SenderRateLimiter(init.announceIntervalMs ?? DEFAULT_ANNOUNCE_INTERVAL_MS, init.announceBurst ?? DEFAULT_ANNOUNCE_BURST);
    this.serveLimiter = new SenderRateLimiter(init.serveIntervalMs ?? DEFAULT_SERVE_INTERVAL_MS, init.serveBurst ?? DEFAULT_SERVE_BURST);
    this.serveConcurrentPerPeer = init.serveConcurrentPerPeer ?? DEFAULT_SERVE_CONCURRENT_PER_PEER;
    this.maxConcurrentServes = init.maxConcurrentServes ?? DEFAULT_MAX_CONCURRENT_SERVES;
    this.keepServed = init.keepServed ?? 2;
    this.banMs = init.banMs ?? 5 * 60_000;
    this.onMessage = this.onMessage.bind(this);
    this.validateMessage = this.validateMessage.bind(this);
  }

  private get pubsub(): GossipSub {
    const pubsub = this.components.pubsub;
    if (!pubsub) throw new ExchangeNotReadyError('the adapter exchange needs a gossipsub service named "pubsub"');
    return pubsub;
  }

  isStarted(): boolean {
    return this.started;
  }

  async start(): Promise<void> {
    await this.components.registrar.handle(ADAPTER_PROTOCOL, (stream, connection) => this.serve(stream, connection), {
      maxInboundStreams: 16,
      maxOutboundStreams: 16,
      // A relayed connection is capped at 128 KiB; payloads must never be attempted over one.
      runOnLimitedConnection: false,
    });
    this.started = true;
  }

  afterStart(): void {
    this.afterStarted = true;
    this.pubsub.addEventListener('message', this.onMessage);
    this.subscribeRun();
  }

  async stop(): Promise<void> {
    this.started = false;
    this.afterStarted = false;
    const pubsub = this.components.pubsub;
    if (pubsub) {
      pubsub.removeEventListener('message', this.onMessage);
      if (this.subscribed) pubsub.topicValidators.delete(this.topic);
    }
    this.subscribed = false;
    await this.components.registrar.unhandle(ADAPTER_PROTOCOL);
  }

  get runId(): string | undefined {
    return this.currentRunId;
  }

  get topic(): string {
    return this.currentRunId === undefined ? '' : runTopic(this.currentRunId);
  }

  joinRun(runId: string, context?: RunContext): void {
    if (this.currentRunId !== undefined && this.currentRunId !== runId) {
      throw new RunAlreadyJoinedError(`this node already takes part in run ${this.currentRunId}`);
    }
    this.currentRunId = runId;
    if (context) this.setRunContext(context);
    this.subscribeRun();
  }

  /** The validator goes in before the subscription, so no message of the run is ever delivered unchecked. */
  private subscribeRun(): void {
    if (this.subscribed || !this.afterStarted || this.currentRunId === undefined) return;
    this.pubsub.topicValidators.set(this.topic, this.validateMessage);
    this.pubsub.subscribe(this.topic);
    this.subscribed = true;
  }

  setRunContext(context: RunContext): void {
    this.context = { ...context };
  }

  stats(): ExchangeStats {
    return { ...this.counters };
  }

  isBanned(peerId: string): boolean {
    return this.bans.isBanned(peerId);
  }

  async announce(payload: Uint8Array, fields: AnnounceFields): Promise<AnnouncementManifest> {
    const context = this.context;
    const runId = this.currentRunId;
    if (runId === undefined) throw new ExchangeNotReadyError('joinRun() must be called before announcing');
    if (!context) throw new ExchangeNotReadyError('setRunContext() must be called before announcing');
    if (payload.length > this.maxPayloadBytes) {
      throw new PayloadTooLargeError(`payload of ${payload.length} bytes exceeds the ${this.maxPayloadBytes}-byte limit peers accept`);
    }
    const manifest = announcementFor(payload, {
      runId,
      peerId: this.components.peerId.toString(),
      baseModelId: context.baseModelId,
      baseModelSha256: context.baseModelSha256,
      schemaHash: fields.schemaHash ?? context.schemaHash,
      version: fields.version,
      step: fields.step,
      samplesSeen: fields.samplesSeen,
      localLoss: fields.localLoss,
      codec: fields.codec,
      createdAtMs: Date.now(),
    });
    const encoded = encodeAnnouncement(manifest);
    this.served.delete(manifest.payloadSha256);
    this.served.set(manifest.payloadSha256, payload);
    while (this.served.size > this.keepServed) this.served.delete(this.served.keys().next().value as string);
    await this.pubsub.publish(this.topic, encoded);
    this.counters.announced++;
    return manifest;
  }

  /** Gossipsub topic validator: decides before a manifest is delivered or forwarded. Never throws. */
  private validateMessage(_propagationSource: PeerId, message: Message): TopicValidatorResult {
    try {
      if (message.type !== 'signed') {
        // StrictSign already refuses these; kept so a policy change cannot let anonymous manifests through.
        return TopicValidatorResult.Reject;
      }
      const sender = message.from.toString();
      if (this.bans.isBanned(sender)) return TopicValidatorResult.Reject;
      const context = this.context;
      const runId = this.currentRunId;
      if (!context || runId === undefined) return TopicValidatorResult.Ignore;
      // Before any parsing, so a flood costs a map lookup per message and ends in a ban.
      if (!this.announceLimiter.take(sender, Date.now())) {
        this.recordRejection(sender, 'rate-limited', `more than ${this.announceLimiter.burst} announcements at once or one per ${this.announceLimiter.intervalMs} ms`, 'announcement');
        return TopicValidatorResult.Ignore;
      }
      const verdict = checkAnnouncement(message.data, {
        runId,
        baseModelSha256: context.baseModelSha256,
        schemaHash: context.schemaHash,
        senderPeerId: sender,
        lastVersionFromPeer: this.lastVersion.get(sender),
        maxPayloadBytes: this.maxPayloadBytes,
        codec: context.codec,
        payloadBytes: context.payloadBytes,
      });
      if (!verdict.ok) {
        this.recordRejection(sender, verdict.reason, verdict.detail, 'announcement');
        return gossipDisposition(verdict.reason) === 'reject' ? TopicValidatorResult.Reject : TopicValidatorResult.Ignore;
      }
      this.lastVersion.set(sender, verdict.value.version);
      return TopicValidatorResult.Accept;
    } catch (err) {
      this.log.error('topic validator failed: %e', err);
      return TopicValidatorResult.Ignore;
    }
  }

  private onMessage(evt: CustomEvent<Message>): void {
    const message = evt.detail;
    const runId = this.currentRunId;
    if (runId === undefined || message.topic !== this.topic || message.type !== 'signed') return;
    // The validator accepted it, so this decode succeeds; re-decoding keeps the validator free of side tables.
    const decoded = checkAnnouncement(message.data, {
      runId,
      baseModelSha256: this.context?.baseModelSha256 ?? '',
      schemaHash: this.context?.schemaHash ?? '',
      senderPeerId: message.from.toString(),
      maxPayloadBytes: this.maxPayloadBytes,
    });
    if (!decoded.ok) return;
    const sender = message.from.toString();
    if (!this.directConnection(sender)) {
      this.counters.skippedNotNeighbour++;
      return;
    }
    this.queue.set(sender, { manifest: decoded.value, announcedAtMs: Date.now() });
    this.pump();
  }

  private directConnection(peerId: string): Connection | undefined {
    try {
      return this.components.connectionManager.getConnections(peerIdFromString(peerId)).find(isDirectConnection);
    } catch {
      return undefined;
    }
  }

  private pump(): void {
    for (const [peerId, pending] of this.queue) {
      if (this.inFlight.size >= this.maxConcurrentFetches) return;
      if (this.inFlight.has(peerId)) continue;
      // The announced sizes of concurrent fetches stay under the cap; one fetch may always run.
      let announcedInFlight = 0;
      for (const bytes of this.inFlightBytes.values()) announcedInFlight += bytes;
      if (this.inFlight.size > 0 && announcedInFlight + pending.manifest.payloadBytes > this.maxBytesInFlight) return;
      this.queue.delete(peerId);
      this.inFlight.add(peerId);
      this.inFlightBytes.set(peerId, pending.manifest.payloadBytes);
      void this.fetchAndValidate(peerId, pending).finally(() => {
        this.inFlight.delete(peerId);
        this.inFlightBytes.delete(peerId);
        this.pump();
      });
    }
  }

  private async fetchAndValidate(peerId: string, pending: PendingFetch): Promise<void> {
    const startedAt = Date.now();
    let fetched = await this.fetchPayload(peerId, pending.manifest);
    // A stream cut by a busy link is not proof of bad intent: retry transport failures before counting one.
    for (let retry = 0; retry < FETCH_RETRIES && !fetched.ok && RETRYABLE.has(fetched.reason) && this.started; retry++) {
      await new Promise((r) => setTimeout(r, 500 * (retry + 1)));
      if (this.queue.has(peerId)) break; // a newer version from this peer is waiting; fetch that instead
      fetched = await this.fetchPayload(peerId, pending.manifest);
    }
    if (!fetched.ok) {
      this.recordRejection(peerId, fetched.reason, fetched.detail, 'payload');
      return;
    }
    const context = this.context;
    if (!context) return;
    const verdict = await validatePayload(fetched.value, pending.manifest, {
      schemaHash: context.schemaHash,
      baseModelId: context.baseModelId,
      maxPayloadBytes: this.maxPayloadBytes,
      codec: context.codec,
      payloadBytes: context.payloadBytes,
    });
    if (!verdict.ok) {
      this.recordRejection(peerId, verdict.reason, verdict.detail, 'payload');
      return;
    }
    const receivedAtMs = Date.now();
    this.counters.fetched++;
    this.counters.bytesFetched += fetched.value.length;
    this.safeDispatchEvent('adapter:received', {
      detail: {
        peerId,
        manifest: pending.manifest,
        bytes: fetched.value,
        adapter: verdict.value,
        announcedAtMs: pending.announcedAtMs,
        receivedAtMs,
        fetchMs: receivedAtMs - startedAt,
      },
    });
  }

  /** Fetches exactly manifest.payloadBytes from the announcer over a direct connection. Never throws. */
  private async fetchPayload(peerId: string, manifest: AnnouncementManifest): Promise<Verdict<Uint8Array>> {
    const connection = this.directConnection(peerId);
    if (!connection) return reject('fetch-failed', 'no direct connection to the announcer any more');
    const signal = AbortSignal.timeout(this.fetchTimeoutMs);
    let stream: Stream | undefined;
    try {
      stream = await connection.newStream(ADAPTER_PROTOCOL, { signal, runOnLimitedConnection: false });
      const request = new Uint8Array(REQUEST_BYTES);
      request[0] = REQUEST_VERSION;
      request.set(hexToBytes(manifest.payloadSha256), 1);
      // Listen before writing, so no part of a fast answer can arrive before anyone is there to count it.
      const response = receivePayload(stream, manifest.payloadBytes, signal, {
        ...this.pace,
        onBuffered: (delta) => {
          this.counters.bufferedBytes += delta;
        },
      });
      stream.send(request);
      void stream.close({ signal }).catch(() => undefined);
      const result = await response;
      if (!result.ok) stream.abort(new Error(result.detail));
      return result;
    } catch (err) {
      stream?.abort(err instanceof Error ? err : new Error(String(err)));
      if (signal.aborted) return reject('timeout', `payload not received within ${this.fetchTimeoutMs} ms`);
      return reject('fetch-failed', describeFailure(err));
    }
  }

  /** Answers one fetch: the payload if we announced it, otherwise a not-found status. */
  private async serve(stream: Stream, connection: Connection): Promise<void> {
    const requester = connection.remotePeer.toString();
    if (this.bans.isBanned(requester)) {
      stream.abort(new Error('requester is banned'));
      return;
    }
    const signal = AbortSignal.timeout(this.fetchTimeoutMs);
    const active = this.serving.get(requester) ?? 0;
    // Counted before the request is read, so that a flood of streams is refused without reading them.
    const refusal = !this.serveLimiter.take(requester, Date.now())
      ? `more than ${this.serveLimiter.burst} payload requests at once or one per ${this.serveLimiter.intervalMs} ms`
      : active >= this.serveConcurrentPerPeer
        ? `more than ${this.serveConcurrentPerPeer} payload requests in progress`
        : null;
    if (refusal !== null || this.servingTotal >= this.maxConcurrentServes) {
      this.counters.servesRefused++;
      // Being busy with everyone is not the requester's fault; asking too fast or too much at once is.
      if (refusal !== null) this.recordRejection(requester, 'rate-limited', refusal, 'request');
      try {
        const header = new Uint8Array(RESPONSE_HEADER_BYTES);
        header[0] = STATUS_RATE_LIMITED;
        stream.send(header);
        await stream.close({ signal });
      } catch {
        stream.abort(new Error('rate limited'));
      }
      return;
    }
    this.serving.set(requester, active + 1);
    this.servingTotal++;
    try {
      await this.serveRequest(stream, connection, signal);
    } finally {
      this.servingTotal--;
      const left = (this.serving.get(requester) ?? 1) - 1;
      if (left > 0) this.serving.set(requester, left);
      else this.serving.delete(requester);
    }
  }

  private async serveRequest(stream: Stream, connection: Connection, signal: AbortSignal): Promise<void> {
    try {
      const request = await readRequest(stream, signal);
      if (!request) {
        stream.abort(new Error('malformed adapter request'));
        return;
      }
      const payload = this.served.get(request);
      const header = new Uint8Array(RESPONSE_HEADER_BYTES);
      if (!payload) {
        header[0] = STATUS_NOT_FOUND;
        stream.send(header);
        await stream.close({ signal });
        return;
      }
      header[0] = STATUS_OK;
      new DataView(header.buffer).setUint32(1, payload.length);
      await sendWithBackpressure(stream, header, signal);
      for (let offset = 0; offset < payload.length; offset += WRITE_CHUNK_BYTES) {
        await sendWithBackpressure(stream, payload.subarray(offset, offset + WRITE_CHUNK_BYTES), signal);
      }
      await stream.close({ signal });
      this.counters.served++;
      this.counters.bytesServed += payload.length;
    } catch (err) {
      this.log('serving %s failed: %e', connection.remotePeer, err);
      stream.abort(err instanceof Error ? err : new Error(String(err)));
    }
  }

  private recordRejection(peerId: string, reason: RejectReason, detail: string, stage: RejectedInput['stage']): void {
    this.counters.rejected++;
    this.log('rejected %s from %s: %s', stage, peerId, detail);
    const disconnect = this.ledger.record(peerId, reason, detail);
    this.safeDispatchEvent('adapter:rejected', { detail: { peerId, reason, detail, stage } });
    if (disconnect && !this.bans.isBanned(peerId)) {
      const untilMs = this.bans.ban(peerId, this.banMs);
      this.queue.delete(peerId);
      this.safeDispatchEvent('peer:banned', { detail: { peerId, untilMs } });
      try {
        void this.components.connectionManager.closeConnections(peerIdFromString(peerId)).catch((err: unknown) => {
          this.log.error('closing connections to %s failed: %e', peerId, err);
        });
      } catch (err) {
        this.log.error('cannot disconnect %s: %e', peerId, err);
      }
    }
  }
}

function hexToBytes(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function bytesToHex(bytes: Uint8Array): string {
  let hex = '';
  for (const b of bytes) hex += b.toString(16).padStart(2, '0');
  return hex;
}

/** Reads the 33-byte request (version byte + content hash); null when the peer sent anything else. */
async function readRequest(stream: Stream, signal: AbortSignal): Promise<string | null> {
  const received = await readExactly(stream, REQUEST_BYTES, signal, 'adapter request not received in time');
  if (!received || received[0] !== REQUEST_VERSION) return null;
  return bytesToHex(received.subarray(1));
}

export interface ReceiveOptions extends Partial<TransferPace> {
  /** Told of every change in the bytes held: +n as chunks arrive, minus the total when the receive ends. */
  onBuffered?: (deltaBytes: number) => void;
}

/**
 * Reads a response of exactly `expectedBytes` (the run's schema fixes it). Memory grows with the bytes that
 * actually arrive (copies of the chunks, joined once at the end), never with what the sender declares, so a
 * stalled fetch holds what it received, not the announced size. A sender that declares or sends more is
 * rejected as oversized before any extra byte is stored, one that stops early as truncated, one that goes idle or
 * trickles below the minimum rate (options) as a timeout, and the whole fetch ends at `signal`.
 */
export function receivePayload(stream: Stream, expectedBytes: number, signal: AbortSignal, options: ReceiveOptions = {}): Promise<Verdict<Uint8Array>> {
  return new Promise((resolve) => {
    const header = new Uint8Array(RESPONSE_HEADER_BYTES);
    let headerLength = 0;
    let bodyStarted = false;
    const chunks: Uint8Array[] = [];
    let bodyLength = 0;
    let done = false;
    const watchdog = options.idleTimeoutMs !== undefined || options.minBytesPerSecond !== undefined
      ? new TransferWatchdog(
          {
            idleTimeoutMs: options.idleTimeoutMs ?? Number.POSITIVE_INFINITY,
            minBytesPerSecond: options.minBytesPerSecond ?? 0,
            rateWindowMs: options.rateWindowMs ?? DEFAULT_FETCH_RATE_WINDOW_MS,
          },
          (detail) => finish(reject('timeout', `sender too slow (${bodyLength} of ${expectedBytes} bytes): ${detail}`)),
        )
      : undefined;
    const finish = (verdict: Verdict<Uint8Array>) => {
      if (done) return;
      done = true;
      watchdog?.stop();
      stream.removeEventListener('message', onMessage);
      stream.removeEventListener('end', onEnd);
      stream.removeEventListener('close', onEnd);
      signal.removeEventListener('abort', onAbort);
      options.onBuffered?.(-bodyLength);
      chunks.length = 0;
      resolve(verdict);
    };
    const onMessage = (evt: StreamMessageEvent) => {
      if (done) return;
      for (let chunk of chunksOf(evt.data)) {
        watchdog?.received(chunk.length);
        if (!bodyStarted) {
          const take = Math.min(RESPONSE_HEADER_BYTES - headerLength, chunk.length);
          header.set(chunk.subarray(0, take), headerLength);
          headerLength += take;
          chunk = chunk.subarray(take);
          if (headerLength < RESPONSE_HEADER_BYTES) continue;
          if (header[0] === STATUS_NOT_FOUND) return finish(reject('fetch-failed', 'announcer no longer serves this payload'));
          if (header[0] === STATUS_RATE_LIMITED) return finish(reject('rate-limited', 'announcer refused the request: asked too often or too much at once'));
          if (header[0] !== STATUS_OK) return finish(reject('malformed', `unknown response status ${header[0]}`));
          const declared = new DataView(header.buffer).getUint32(1);
          if (declared > expectedBytes) return finish(reject('oversized', `response declares ${declared} bytes, ${expectedBytes} announced`));
          if (declared < expectedBytes) return finish(reject('truncated', `response declares ${declared} bytes, ${expectedBytes} announced`));
          bodyStarted = true;
        }
        if (chunk.length === 0) continue;
        if (bodyLength + chunk.length > expectedBytes) {
          return finish(reject('oversized', `more than the ${expectedBytes} announced bytes sent`));
        }
        // A copy: a chunk may be a view into a larger transport buffer that must not stay alive through it.
        chunks.push(chunk.slice());
        bodyLength += chunk.length;
        options.onBuffered?.(chunk.length);
      }
    };
    const onEnd = () => {
      if (bodyStarted && bodyLength === expectedBytes) {
        const body = new Uint8Array(expectedBytes);
        let offset = 0;
        for (const c of chunks) {
          body.set(c, offset);
          offset += c.length;
        }
        return finish({ ok: true, value: body });
      }
      finish(reject('truncated', `stream ended after ${bodyStarted ? bodyLength : headerLength} of ${expectedBytes} bytes`));
    };
    const onAbort = () => finish(reject('timeout', `payload incomplete (${bodyLength} of ${expectedBytes} bytes) when the time ran out`));
    stream.addEventListener('message', onMessage);
    stream.addEventListener('end', onEnd);
    stream.addEventListener('close', onEnd);
    signal.addEventListener('abort', onAbort);
  });
}

export function adapterExchange(init: AdapterExchangeInit): (components: AdapterExchangeComponents) => AdapterExchange {
  return (components) => new SwarmAdapterExchange(components, init);
}

/** sha256 hex of a payload, as the manifest carries it (re-exported so callers need not reach into core/wire). */
export const payloadHash = sha256Hex;

/**
 * Words for a failure, whatever was thrown: WebRTC data channels reject with a bare DOM Event, which String() turns
 * into "[object Event]".
 */
export function describeFailure(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  if (typeof err === 'object' && err !== null && 'type' in err && typeof (err as { type: unknown }).type === 'string') {
    const event = err as { type: string; error?: { message?: string } };
    return `connection ${event.type} event${event.error?.message ? `: ${event.error.message}` : ''}`;
  }
  return String(err);
}
