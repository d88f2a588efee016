// Run manifests by id, peer to peer: a tab opened with `?run=<manifest id>` that it has never seen asks the peers
// it is connected to for that manifest, and every node serves the manifests of the runs it has joined.
//
// Request: the id as 64 lowercase hex ASCII bytes. Response: [status][uint32 BE length][canonical manifest bytes].
// The id is the sha256 of the canonical manifest, so the requester needs to trust no one: it decodes the answer with
// core/wire and accepts it only if it hashes to the id it asked for. A peer that answers with anything else is
// rejected with a reason and counted in the node's rejection ledger; nothing a peer sends can make this throw.
// A manifest is a few KiB (capped at 64 KiB), well within a relayed connection's limits, so this protocol, unlike
// the adapter exchange, also runs over the relay: a newcomer can ask before its first WebRTC connection is up.
import { TypedEventEmitter, type AbortOptions, type ComponentLogger, type Connection, type Logger, type PeerId, type Startable, type Stream, type StreamCloseEvent, type StreamMessageEvent } from '@libp2p/interface';
import type { ConnectionManager, Registrar } from '@libp2p/interface-internal';
import { peerIdFromString } from '@libp2p/peer-id';
import { MAX_RUN_MANIFEST_BYTES } from '../core/wire/constants.ts';
import { decodeRunManifest, encodeRunManifest, runManifestId, type RunManifest } from '../core/wire/run-manifest.ts';
import { sha256Hex } from '../core/wire/bytes.ts';
import { reject, RejectionLedger, type RejectReason, type Verdict } from '../core/wire/verdict.ts';
import { DEFAULT_MANIFEST_REQUEST_TIMEOUT_MS, RUN_MANIFEST_PROTOCOL } from './constants.ts';
import { isDirectConnection } from './dial-policy.ts';
import { describeFailure, PeerBans } from './exchange.ts';
import { chunksOf, readExactly } from './stream-io.ts';

const ID_BYTES = 64;
const ID_PATTERN = /^[0-9a-f]{64}$/;
const RESPONSE_HEADER_BYTES = 5;
const STATUS_FOUND = 0;
const STATUS_NOT_FOUND = 1;

export interface RunManifestServiceInit {
  /** Shared with the adapter exchange, so a peer's bad manifests and bad adapters add up to one disconnect. */
  ledger?: RejectionLedger;
  bans?: PeerBans;
  requestTimeoutMs?: number;
  /** The most bytes a response may declare; core/wire refuses larger manifests anyway. */
  maxManifestBytes?: number;
  banMs?: number;
}

export interface RunManifestServiceComponents {
  peerId: PeerId;
  registrar: Registrar;
  connectionManager: ConnectionManager;
  logger: ComponentLogger;
}

/** One peer's answer to "do you know run <id>?". */
export type ManifestAnswer =
  | { status: 'found'; peerId: string; manifest: RunManifest; ms: number }
  | { status: 'not-found'; peerId: string }
  /** The peer could not be asked (no open connection, it does not speak the protocol, the search ended first). */
  | { status: 'unavailable'; peerId: string; detail: string; permanent: boolean }
  /** The peer answered with something that is not the manifest asked for; counted in the ledger. */
  | { status: 'rejected'; peerId: string; reason: RejectReason; detail: string };

export type FoundManifest = Extract<ManifestAnswer, { status: 'found' }>;

export interface FindManifestOptions extends AbortOptions {
  /** Peers never to ask (the relays, which know no runs). */
  skip?: (peerId: string) => boolean;
  /** A peer that did not know the run is asked again after this long (it may have joined since). */
  askAgainAfterMs?: number;
  /**
   * A peer that could not be asked for a passing reason is tried again after this long: in a browser the first
   * connection to a peer is often the relayed one that signals its WebRTC dial, and closes as the direct one opens.
   */
  retryUnavailableMs?: number;
  /** How often newly connected peers are looked for. */
  pollMs?: number;
  maxConcurrent?: number;
  /** Every answer as it comes, for progress shown to the user. */
  onAnswer?: (answer: ManifestAnswer) => void;
}

export interface RunManifestRejection {
  peerId: string;
  reason: RejectReason;
  detail: string;
}

export interface RunManifestServiceEvents {
  'manifest:rejected': CustomEvent<RunManifestRejection>;
  'peer:banned': CustomEvent<{ peerId: string; untilMs: number }>;
}

export interface RunManifestStats {
  served: number;
  notFound: number;
  fetched: number;
  rejected: number;
}

export interface RunManifestService extends TypedEventEmitter<RunManifestServiceEvents> {
  /** Serves this manifest to peers that ask for its id (which is returned). Throws WireFormatError if it is invalid. */
  serve(manifest: RunManifest): string;
  /** Ids of the manifests this node serves. */
  served(): string[];
  /** Asks one connected peer for a manifest. Never throws on anything the peer does. */
  request(peerId: string, id: string, options?: AbortOptions): Promise<ManifestAnswer>;
  /**
   * Asks every connected peer (newly connected ones too, as they come) until one hands over the manifest with this
   * id; resolves null only when the signal aborts.
   */
  find(id: string, options?: FindManifestOptions): Promise<FoundManifest | null>;
  stats(): RunManifestStats;
}

export class InvalidManifestIdError extends Error {
  static override readonly name = 'InvalidManifestIdError';
  override readonly name = 'InvalidManifestIdError';
}

function checkId(id: string): void {
  if (!ID_PATTERN.test(id)) throw new InvalidManifestIdError(`a run manifest id is 64 lowercase hex digits, not '${id.slice(0, 80)}'`);
}

class SwarmRunManifestService extends TypedEventEmitter<RunManifestServiceEvents> implements RunManifestService, Startable {
  readonly [Symbol.toStringTag] = 'swarm/run-manifest';
  private readonly components: RunManifestServiceComponents;
  private readonly log: Logger;
  private readonly ledger: RejectionLedger;
  private readonly bans: PeerBans;
  private readonly requestTimeoutMs: number;
  private readonly maxManifestBytes: number;
  private readonly banMs: number;
  /** Canonical bytes by manifest id. */
  private readonly manifests = new Map<string, Uint8Array>();
  private readonly counters: RunManifestStats = { served: 0, notFound: 0, fetched: 0, rejected: 0 };
  private started = false;

  constructor(components: RunManifestServiceComponents, init: RunManifestServiceInit) {
    super();
    this.components = components;
    this.log = components.logger.forComponent('swarm:run-manifest');
    this.ledger = init.ledger ?? new RejectionLedger();
    this.bans = init.bans ?? new PeerBans();
    this.requestTimeoutMs = init.requestTimeoutMs ?? DEFAULT_MANIFEST_REQUEST_TIMEOUT_MS;
    this.maxManifestBytes = init.maxManifestBytes ?? MAX_RUN_MANIFEST_BYTES;
    this.banMs = init.banMs ?? 5 * 60_000;
  }

  isStarted(): boolean {
    return this.started;
  }

  async start(): Promise<void> {
    await this.components.registrar.handle(RUN_MANIFEST_PROTOCOL, (stream, connection) => this.answer(stream, connection), {
      maxInboundStreams: 8,
      maxOutboundStreams: 8,
      runOnLimitedConnection: true,
    });
    this.started = true;
  }

  async stop(): Promise<void> {
    this.started = false;
    await this.components.registrar.unhandle(RUN_MANIFEST_PROTOCOL);
  }

  serve(manifest: RunManifest): string {
    const bytes = encodeRunManifest(manifest);
    const id = sha256Hex(bytes);
    this.manifests.set(id, bytes);
    return id;
  }

  served(): string[] {
    return [...this.manifests.keys()];
  }

  stats(): RunManifestStats {
    return { ...this.counters };
  }

  async request(peerId: string, id: string, options: AbortOptions = {}): Promise<ManifestAnswer> {
    checkId(id);
    const startedAt = Date.now();
    const outer = options.signal;
    if (this.bans.isBanned(peerId)) return { status: 'unavailable', peerId, detail: 'the peer is refused for sending bad data', permanent: true };
    const connection = this.connectionTo(peerId);
    if (!connection) return { status: 'unavailable', peerId, detail: 'no open connection to the peer', permanent: false };
    const timeout = AbortSignal.timeout(this.requestTimeoutMs);
    const signal = outer ? AbortSignal.any([outer, timeout]) : timeout;
    let stream: Stream;
    try {
      stream = await connection.newStream(RUN_MANIFEST_PROTOCOL, { signal, runOnLimitedConnection: true });
    } catch (err) {
      // Not being able to ask proves nothing against the peer (a relay, an older build, a busy link): not counted.
      const unsupported = err instanceof Error && err.name === 'UnsupportedProtocolError';
      return { status: 'unavailable', peerId, detail: describeFailure(err), permanent: unsupported };
    }
    let received: Verdict<Uint8Array | null>;
    try {
      const response = readAnswer(stream, this.maxManifestBytes, signal);
      stream.send(new TextEncoder().encode(id));
      void stream.close({ signal }).catch(() => undefined);
      received = await response;
    } catch (err) {
      received = reject('fetch-failed', describeFailure(err));
    }
    if (!received.ok) stream.abort(new Error(received.detail));
    if (outer?.aborted) return { status: 'unavailable', peerId, detail: 'the search ended before this peer answered', permanent: false };
    // A stream reset or a connection that went away is no evidence against the peer: try it again later.
    const cut = !received.ok && (received.reason === 'fetch-failed' || (received.reason === 'truncated' && connection.status !== 'open'));
    if (!received.ok && cut) return { status: 'unavailable', peerId, detail: received.detail, permanent: false };
    if (!received.ok) return this.rejected(peerId, received.reason, received.detail);
    if (received.value === null) return { status: 'not-found', peerId };
    const decoded = decodeRunManifest(received.value);
    if (!decoded.ok) return this.rejected(peerId, decoded.reason, `its answer is not a valid run manifest: ${decoded.detail}`);
    let answeredId: string;
    try {
      answeredId = runManifestId(decoded.value);
    } catch (err) {
      return this.rejected(peerId, 'malformed', `its manifest cannot be re-encoded: ${describeFailure(err)}`);
    }
    if (answeredId !== id) {
      return this.rejected(peerId, 'bad-hash', `asked for run manifest ${id.slice(0, 12)}…, it answered with ${answeredId.slice(0, 12)}…`);
    }
    this.counters.fetched++;
    return { status: 'found', peerId, manifest: decoded.value, ms: Date.now() - startedAt };
  }

  find(id: string, options: FindManifestOptions = {}): Promise<FoundManifest | null> {
    checkId(id);
    const askAgainAfterMs = options.askAgainAfterMs ?? 15_000;
    const retryUnavailableMs = options.retryUnavailableMs ?? 1_000;
    const maxConcurrent = options.maxConcurrent ?? 4;
    const outer = options.signal;
    if (outer?.aborted) return Promise.resolve(null);
    // Aborted when this search ends, so that requests still waiting on slow peers stop too.
    const done = new AbortController();
    const signal = outer ? AbortSignal.any([outer, done.signal]) : done.signal;
    const nextAskAt = new Map<string, number>();
    const inFlight = new Set<string>();
    return new Promise((resolve) => {
      const finish = (found: FoundManifest | null) => {
        if (done.signal.aborted) return;
        done.abort();
        clearInterval(timer);
        outer?.removeEventListener('abort', onAbort);
        resolve(found);
      };
      const onAbort = () => finish(null);
      const ask = (peerId: string) => {
        inFlight.add(peerId);
        // request() answers every peer behaviour with a value; the catch only keeps a bug of ours from stalling the search.
        const asked = this.request(peerId, id, { signal }).catch((err: unknown): ManifestAnswer => ({ status: 'unavailable', peerId, detail: describeFailure(err), permanent: false }));
        void asked.then((answer) => {
          inFlight.delete(peerId);
          if (done.signal.aborted) return;
          try {
            options.onAnswer?.(answer);
          } catch (err) {
            this.log.error('onAnswer failed: %e', err);
          }
          if (answer.status === 'found') return finish(answer);
          let delay = askAgainAfterMs;
          if (answer.status === 'unavailable') delay = answer.permanent ? Number.POSITIVE_INFINITY : retryUnavailableMs;
          nextAskAt.set(peerId, Date.now() + delay);
        });
      };
      const tick = () => {
        if (done.signal.aborted) return;
        const now = Date.now();
        for (const peerId of this.connectedPeers()) {
          if (inFlight.size >= maxConcurrent) return;
          if (inFlight.has(peerId) || (nextAskAt.get(peerId) ?? 0) > now) continue;
          if (options.skip?.(peerId) || this.bans.isBanned(peerId)) continue;
          ask(peerId);
        }
      };
      const timer = setInterval(tick, options.pollMs ?? 500);
      outer?.addEventListener('abort', onAbort);
      tick();
    });
  }

  private connectedPeers(): string[] {
    const peers = new Set<string>();
    for (const c of this.components.connectionManager.getConnections()) if (c.status === 'open') peers.add(c.remotePeer.toString());
    return [...peers];
  }

  /** A direct connection if there is one (no relay byte limit to share), otherwise the relayed one. */
  private connectionTo(peerId: string): Connection | undefined {
    let connections: Connection[];
    try {
      connections = this.components.connectionManager.getConnections(peerIdFromString(peerId)).filter((c) => c.status === 'open');
    } catch {
      return undefined;
    }
    return connections.find(isDirectConnection) ?? connections[0];
  }

  /** Answers one request: the manifest if this node serves it, otherwise not-found. */
  private async answer(stream: Stream, connection: Connection): Promise<void> {
    const signal = AbortSignal.timeout(this.requestTimeoutMs);
    try {
      const request = await readExactly(stream, ID_BYTES, signal, 'run manifest request not received in time');
      const id = request ? new TextDecoder().decode(request) : '';
      if (!ID_PATTERN.test(id)) {
        stream.abort(new Error('malformed run manifest request'));
        return;
      }
      const manifest = this.manifests.get(id);
      const header = new Uint8Array(RESPONSE_HEADER_BYTES);
      header[0] = manifest ? STATUS_FOUND : STATUS_NOT_FOUND;
      new DataView(header.buffer).setUint32(1, manifest?.length ?? 0);
      if (!stream.send(header)) await stream.onDrain({ signal });
      if (manifest && !stream.send(manifest)) await stream.onDrain({ signal });
      await stream.close({ signal });
      if (manifest) this.counters.served++;
      else this.counters.notFound++;
    } catch (err) {
      this.log('answering %s failed: %e', connection.remotePeer, err);
      stream.abort(err instanceof Error ? err : new Error(String(err)));
    }
  }

  private rejected(peerId: string, reason: RejectReason, detail: string): ManifestAnswer {
    this.counters.rejected++;
    this.log('rejected run manifest from %s: %s', peerId, detail);
    const disconnect = this.ledger.record(peerId, reason, detail);
    this.safeDispatchEvent('manifest:rejected', { detail: { peerId, reason, detail } });
    if (disconnect && !this.bans.isBanned(peerId)) {
      const untilMs = this.bans.ban(peerId, this.banMs);
      this.safeDispatchEvent('peer:banned', { detail: { peerId, untilMs } });
      try {
        void this.components.connectionManager.closeConnections(peerIdFromString(peerId)).catch((err: unknown) => {
          this.log.error('closing connections to %s failed: %e', peerId, err);
        });
      } catch (err) {
        this.log.error('cannot disconnect %s: %e', peerId, err);
      }
    }
    return { status: 'rejected', peerId, reason, detail };
  }
}

/**
 * Reads an answer: the manifest bytes, or null for not-found. A declared length over the cap is refused before the
 * body is read; more bytes than declared count as oversized, fewer as truncated, a stall as a timeout.
 */
export function readAnswer(stream: Stream, maxBytes: number, signal: AbortSignal): Promise<Verdict<Uint8Array | null>> {
  return new Promise((resolve) => {
    const header = new Uint8Array(RESPONSE_HEADER_BYTES);
    let headerLength = 0;
    let status = -1;
    let body: Uint8Array | undefined;
    let bodyLength = 0;
    const finish = (verdict: Verdict<Uint8Array | null>) => {
      stream.removeEventListener('message', onMessage);
      stream.removeEventListener('end', onEnd);
      stream.removeEventListener('close', onClose);
      signal.removeEventListener('abort', onAbort);
      resolve(verdict);
    };
    const onMessage = (evt: StreamMessageEvent) => {
      for (let chunk of chunksOf(evt.data)) {
        if (!body) {
          const take = Math.min(RESPONSE_HEADER_BYTES - headerLength, chunk.length);
          header.set(chunk.subarray(0, take), headerLength);
          headerLength += take;
          chunk = chunk.subarray(take);
          if (headerLength < RESPONSE_HEADER_BYTES) continue;
          status = header[0];
          const declared = new DataView(header.buffer).getUint32(1);
          if (status === STATUS_NOT_FOUND) {
            if (declared !== 0 || chunk.length > 0) return finish(reject('malformed', 'a not-found answer with a body'));
            body = new Uint8Array(0);
            continue;
          }
          if (status !== STATUS_FOUND) return finish(reject('malformed', `unknown answer status ${status}`));
          if (declared > maxBytes) return finish(reject('oversized', `the answer declares ${declared} bytes; a run manifest is at most ${maxBytes}`));
          if (declared === 0) return finish(reject('truncated', 'the answer declares an empty manifest'));
          body = new Uint8Array(declared);
        }
        if (bodyLength + chunk.length > body.length) return finish(reject('oversized', `more than the ${body.length} declared bytes sent`));
        body.set(chunk, bodyLength);
        bodyLength += chunk.length;
      }
    };
    const onEnd = () => {
      if (body && bodyLength === body.length) return finish({ ok: true, value: status === STATUS_NOT_FOUND ? null : body });
      // libp2p ends the readable side before it reports the reset, so the status tells a cut from an early end.
      if (stream.status === 'reset' || stream.status === 'aborted') return finish(reject('fetch-failed', `the stream was ${stream.status} after ${bodyLength} bytes`));
      finish(reject('truncated', `the answer ended after ${body ? bodyLength : headerLength} of ${body ? body.length : RESPONSE_HEADER_BYTES} bytes`));
    };
    const onClose = (evt: Event) => {
      const error = (evt as StreamCloseEvent).error;
      const complete = body !== undefined && bodyLength === body.length;
      if (error && !complete) finish(reject('fetch-failed', `the stream was cut: ${describeFailure(error)}`));
      else onEnd();
    };
    const onAbort = () => finish(reject('timeout', 'no complete answer in time'));
    stream.addEventListener('message', onMessage);
    stream.addEventListener('end', onEnd);
    stream.addEventListener('close', onClose);
    signal.addEventListener('abort', onAbort);
    if (signal.aborted) onAbort();
  });
}

export function runManifestService(init: RunManifestServiceInit = {}): (components: RunManifestServiceComponents) => RunManifestService {
  return (components) => new SwarmRunManifestService(components, init);
}
