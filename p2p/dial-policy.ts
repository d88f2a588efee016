// Which peers a node connects to directly, and when.
//
// libp2p 3 does not dial the peers it discovers, so this service does: it keeps the bootstrap relays connected,
// dials discovered peers on their direct (WebRTC) addresses only, lets the smaller peer id dial so two tabs do not
// race two WebRTC handshakes at each other, retries with exponential backoff (about one browser WebRTC dial in six
// hangs until its timeout), and stops at a neighbour cap so a large swarm forms a bounded-degree graph instead of
// a full mesh. Relayed connections are limited by the relay (bytes and time), so they never count as neighbours.
import { TypedEventEmitter, type Connection, type PeerId, type PeerInfo, type ComponentLogger, type Logger, type Libp2pEvents, type TypedEventTarget, type Startable, type PeerStore } from '@libp2p/interface';
import type { ConnectionManager } from '@libp2p/interface-internal';
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr';
import { DEFAULT_MAX_DIAL_TIMEOUT_MS, DEFAULT_MAX_NEIGHBOURS, DEFAULT_RELAYS_PER_PEER } from './constants.ts';

export interface DialPolicyInit {
  /** Relay multiaddrs (with /p2p/<id>) to keep connected for discovery and signalling. */
  relays?: string[];
  /** Direct neighbours to keep; beyond it, inbound direct connections are closed. */
  maxNeighbours?: number;
  /** Which discovered addresses are worth dialling; default: browser-to-browser WebRTC addresses. */
  isDirectAddress?: (ma: Multiaddr) => boolean;
  /**
   * Abandon a dial attempt after this long; after SHORT_DIAL_ATTEMPTS failures each one doubles it, up to
   * maxDialTimeoutMs. A hung dial is cut early, while a tab whose CPU is saturated by training (handshakes then
   * take many seconds) still gets attempts long enough to finish.
   */
  dialTimeoutMs?: number;
  maxDialTimeoutMs?: number;
  /**
   * WebRTC dials in flight at once. Eight tabs that each open seven handshakes together on two busy cores time all
   * of them out; four lets a small swarm dial everyone at once while bounding that storm.
   */
  maxConcurrentDials?: number;
  /** First retry delay; doubles per failure up to maxBackoffMs. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /**
   * After this many consecutive failures a candidate is only retried once a minute, and after three times as many
   * it is forgotten (it comes back if its addresses change). libp2p reports a peer as discovered only once, so
   * forgetting too early would lose a peer whose tab was merely busy.
   */
  maxAttempts?: number;
  /**
   * The larger peer id waits to be dialled. If after this long there is no connection of any kind (not even the
   * relayed one a WebRTC dial signals over), the smaller side never heard of it, and it dials itself. Both sides
   * dialling at once makes WebRTC handshakes collide, so this stays a rare fallback.
   */
  tieBreakGraceMs?: number;
  /** How often pending candidates and relays are looked at. */
  tickMs?: number;
  /**
   * Relays of the list kept connected at once (default 2). Each peer ranks the list by a hash of its own id and
   * the relay's, so a run with many relays spreads its peers (and their reservations) evenly and stably across
   * them; a relay that keeps failing is passed over for the next in the ranking.
   */
  maxRelays?: number;
}

export interface DialPolicyComponents {
  peerId: PeerId;
  connectionManager: ConnectionManager;
  peerStore: PeerStore;
  events: TypedEventTarget<Libp2pEvents>;
  logger: ComponentLogger;
}

export interface DialPolicyEvents {
  'neighbour:added': CustomEvent<string>;
  'neighbour:removed': CustomEvent<string>;
}

export interface DialPolicy extends TypedEventEmitter<DialPolicyEvents> {
  /** Peer ids with an open, direct, unlimited connection (relays excluded). */
  neighbours(): string[];
  /** Time each current neighbour was first connected (ms since epoch). */
  neighbourSince(peerId: string): number | undefined;
  /** Candidates not yet connected, with their retry state, for dashboards and tests. */
  pending(): Array<{ peerId: string; attempts: number; nextAttemptAt: number; lastError?: string }>;
  isRelay(peerId: string): boolean;
}

interface Candidate {
  peerId: PeerId;
  addrs: Multiaddr[];
  firstSeen: number;
  attempts: number;
  nextAttemptAt: number;
  dialing: boolean;
  lastError?: string;
}

interface RelayState {
  addr: Multiaddr;
  peerId: string;
  attempts: number;
  nextAttemptAt: number;
  dialing: boolean;
}

const DEFAULTS = {
  // A healthy local WebRTC handshake takes well under a second; a hung one is better abandoned early.
  dialTimeoutMs: 5_000,
  maxDialTimeoutMs: DEFAULT_MAX_DIAL_TIMEOUT_MS,
  maxConcurrentDials: 4,
  initialBackoffMs: 500,
  maxBackoffMs: 15_000,
  maxAttempts: 8,
  tieBreakGraceMs: 15_000,
  tickMs: 500,
};

const SLOW_RETRY_MS = 60_000;

/** Browser-to-browser WebRTC addresses look like /.../p2p/<relay>/p2p-circuit/webrtc/p2p/<peer>. */
export function isWebRtcAddress(ma: Multiaddr): boolean {
  return ma.getComponents().some((c) => c.name === 'webrtc');
}

/** A connection that may carry payloads: open, not through a relay, not capped in bytes or time. */
export function isDirectConnection(connection: Connection): boolean {
  return connection.status === 'open' && connection.limits == null && connection.direct !== false;
}

/**
 * Addresses learnt through identify may end in /webrtc without the target's id, while libp2p refuses a dial whose
 * addresses name different peers; so every dialled address must end in /p2p/<target>.
 */
export function withPeerId(ma: Multiaddr, peerId: string): Multiaddr {
  const components = ma.getComponents();
  const last = components[components.length - 1];
  if (last?.name === 'p2p') return ma;
  return ma.encapsulate(`/p2p/${peerId}`);
}

/**
 * Failures at the base timeout before it starts doubling. About one WebRTC dial in six hangs however long it is
 * given, so the first retries stay short (three hangs in a row: about 1 in 200); only a peer that keeps failing
 * is dialled with the long timeouts a busy CPU needs. With doubling from the first failure, one 4-tab mesh of
 * five in bench:net took 41 s.
 */
export const SHORT_DIAL_ATTEMPTS = 3;

/** Timeout of the next dial to a candidate that has failed `failures` times: the base, then doubling, capped. */
export function dialTimeoutFor(failures: number, baseMs: number, maxMs: number): number {
  const doublings = Math.max(0, failures - SHORT_DIAL_ATTEMPTS + 1);
  return Math.min(maxMs, baseMs * 2 ** Math.min(doublings, 16));
}

/**
 * FNV-1a, 32 bits, then murmur3's finaliser (without it, ids that differ only in their last characters rank alike):
 * a stable, well-spread rank for (peer, relay) pairs; not a security measure.
 */
function pairHash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** The relays in the order this peer prefers them (rendezvous hashing: the same peer always ranks them alike). */
export function rankRelays<T extends { peerId: string }>(relays: T[], self: string): T[] {
  return [...relays].sort((a, b) => pairHash(`${self}/${a.peerId}`) - pairHash(`${self}/${b.peerId}`) || (a.peerId < b.peerId ? -1 : 1));
}

/** Failures in a row after which a relay is passed over for the next one in the ranking, while enough others answer. */
const RELAY_FAILURES_BEFORE_FALLBACK = 2;

export function backoffDelay(attempt: number, initialMs: number, maxMs: number, random = Math.random): number {
  const exponential = Math.min(maxMs, initialMs * 2 ** Math.max(0, attempt - 1));
  // Jitter keeps two tabs that failed together from retrying in lockstep.
  return Math.round(exponential * (0.75 + 0.5 * random()));
}

class SwarmDialPolicy extends TypedEventEmitter<DialPolicyEvents> implements DialPolicy, Startable {
  readonly [Symbol.toStringTag] = 'swarm/dial-policy';
  private readonly components: DialPolicyComponents;
  private readonly log: Logger;
  private readonly options: typeof DEFAULTS & { maxNeighbours: number; maxRelays: number; isDirectAddress: (ma: Multiaddr) => boolean };
  private readonly relays: RelayState[];
  private readonly relayIds: Set<string>;
  private readonly candidates = new Map<string, Candidate>();
  private readonly neighbourSet = new Map<string, number>();
  private timer?: ReturnType<typeof setInterval>;
  private started = false;

  constructor(components: DialPolicyComponents, init: DialPolicyInit) {
    super();
    this.components = components;
    this.log = components.logger.forComponent('swarm:dial-policy');
    this.options = {
      dialTimeoutMs: init.dialTimeoutMs ?? DEFAULTS.dialTimeoutMs,
      maxDialTimeoutMs: init.maxDialTimeoutMs ?? Math.max(init.dialTimeoutMs ?? 0, DEFAULTS.maxDialTimeoutMs),
      maxConcurrentDials: init.maxConcurrentDials ?? DEFAULTS.maxConcurrentDials,
      initialBackoffMs: init.initialBackoffMs ?? DEFAULTS.initialBackoffMs,
      maxBackoffMs: init.maxBackoffMs ?? DEFAULTS.maxBackoffMs,
      maxAttempts: init.maxAttempts ?? DEFAULTS.maxAttempts,
      tieBreakGraceMs: init.tieBreakGraceMs ?? DEFAULTS.tieBreakGraceMs,
      tickMs: init.tickMs ?? DEFAULTS.tickMs,
      maxNeighbours: init.maxNeighbours ?? DEFAULT_MAX_NEIGHBOURS,
      maxRelays: Math.max(1, init.maxRelays ?? DEFAULT_RELAYS_PER_PEER),
      isDirectAddress: init.isDirectAddress ?? isWebRtcAddress,
    };
    this.relays = [];
    for (const raw of init.relays ?? []) {
      try {
        const addr = multiaddr(raw);
        const peerId = addr.getComponents().findLast((c) => c.name === 'p2p')?.value;
        if (!peerId) {
          this.log.error('relay address %s has no /p2p/ component, skipped', raw);
          continue;
        }
        this.relays.push({ addr, peerId, attempts: 0, nextAttemptAt: 0, dialing: false });
      } catch (err) {
        this.log.error('relay address %s is not a multiaddr: %e', raw, err);
      }
    }
    this.relays = rankRelays(this.relays, components.peerId.toString());
    this.relayIds = new Set(this.relays.map((r) => r.peerId));
    this.onDiscovery = this.onDiscovery.bind(this);
    this.onPeerUpdate = this.onPeerUpdate.bind(this);
    this.onConnectionOpen = this.onConnectionOpen.bind(this);
    this.onConnectionClose = this.onConnectionClose.bind(this);
  }

  isStarted(): boolean {
    return this.started;
  }

  start(): void {
    this.started = true;
    const { events } = this.components;
    events.addEventListener('peer:discovery', this.onDiscovery);
    events.addEventListener('peer:update', this.onPeerUpdate);
    events.addEventListener('connection:open', this.onConnectionOpen);
    events.addEventListener('connection:close', this.onConnectionClose);
  }

  afterStart(): void {
    this.tick();
    this.timer = setInterval(() => this.tick(), this.options.tickMs);
  }

  stop(): void {
    this.started = false;
    clearInterval(this.timer);
    const { events } = this.components;
    events.removeEventListener('peer:discovery', this.onDiscovery);
    events.removeEventListener('peer:update', this.onPeerUpdate);
    events.removeEventListener('connection:open', this.onConnectionOpen);
    events.removeEventListener('connection:close', this.onConnectionClose);
  }

  neighbours(): string[] {
    return [...this.neighbourSet.keys()];
  }

  neighbourSince(peerId: string): number | undefined {
    return this.neighbourSet.get(peerId);
  }

  pending(): Array<{ peerId: string; attempts: number; nextAttemptAt: number; lastError?: string }> {
    return [...this.candidates.values()].map((c) => ({
      peerId: c.peerId.toString(),
      attempts: c.attempts,
      nextAttemptAt: c.nextAttemptAt,
      lastError: c.lastError,
    }));
  }

  isRelay(peerId: string): boolean {
    return this.relayIds.has(peerId);
  }

  private onDiscovery(evt: CustomEvent<PeerInfo>): void {
    this.consider(evt.detail.id, evt.detail.multiaddrs);
  }

  private onPeerUpdate(evt: CustomEvent<{ peer: { id: PeerId; addresses: Array<{ multiaddr: Multiaddr }> } }>): void {
    this.consider(evt.detail.peer.id, evt.detail.peer.addresses.map((a) => a.multiaddr));
  }

  private consider(peerId: PeerId, addrs: Multiaddr[]): void {
    const id = peerId.toString();
    if (id === this.components.peerId.toString() || this.relayIds.has(id)) return;
    const direct = addrs.filter((ma) => this.options.isDirectAddress(ma)).map((ma) => withPeerId(ma, id));
    if (direct.length === 0) return;
    const existing = this.candidates.get(id);
    if (existing) {
      const changed = direct.length !== existing.addrs.length || direct.some((ma, i) => !ma.equals(existing.addrs[i]));
      existing.addrs = direct;
      // New addresses (a peer that came back through another relay) deserve a prompt try; hearing of the same
      // addresses again (relays introduce a peer to many others) must not cut a backoff short.
      if (changed && !existing.dialing) existing.nextAttemptAt = Math.min(existing.nextAttemptAt, Date.now());
      return;
    }
    this.candidates.set(id, { peerId, addrs: direct, firstSeen: Date.now(), attempts: 0, nextAttemptAt: 0, dialing: false });
  }

  private onConnectionOpen(evt: CustomEvent<Connection>): void {
    const connection = evt.detail;
    const id = connection.remotePeer.toString();
    if (this.relayIds.has(id) || !isDirectConnection(connection) || this.neighbourSet.has(id)) return;
    if (this.neighbourSet.size >= this.options.maxNeighbours) {
      // Bounded degree: the dialer sees a quickly closed connection and backs off.
      this.log('neighbour cap %d reached, closing connection from %s', this.options.maxNeighbours, id);
      connection.close().catch(() => connection.abort(new Error('neighbour cap reached')));
      return;
    }
    this.neighbourSet.set(id, Date.now());
    const candidate = this.candidates.get(id);
    if (candidate) {
      candidate.attempts = 0;
    }
    this.safeDispatchEvent('neighbour:added', { detail: id });
  }

  private onConnectionClose(evt: CustomEvent<Connection>): void {
    const id = evt.detail.remotePeer.toString();
    if (!this.neighbourSet.has(id)) return;
    const stillDirect = this.components.connectionManager
      .getConnections(evt.detail.remotePeer)
      .some((c) => c !== evt.detail && isDirectConnection(c));
    if (stillDirect) return;
    this.neighbourSet.delete(id);
    const candidate = this.candidates.get(id);
    if (candidate) {
      candidate.nextAttemptAt = Date.now() + backoffDelay(1, this.options.initialBackoffMs, this.options.maxBackoffMs);
    }
    this.safeDispatchEvent('neighbour:removed', { detail: id });
  }

  private tick(): void {
    if (!this.started) return;
    const now = Date.now();
    // The first maxRelays of the ranking that are not failing; failing ones fill in only when too few are left.
    const healthy = this.relays.filter((r) => r.attempts < RELAY_FAILURES_BEFORE_FALLBACK);
    const failing = this.relays.filter((r) => r.attempts >= RELAY_FAILURES_BEFORE_FALLBACK);
    const wanted = [...healthy, ...failing].slice(0, this.options.maxRelays);
    for (const relay of wanted) {
      if (relay.dialing || now < relay.nextAttemptAt) continue;
      const connected = this.components.connectionManager
        .getConnections()
        .some((c) => c.remotePeer.toString() === relay.peerId && c.status === 'open');
      if (!connected) void this.dialRelay(relay);
    }

    const me = this.components.peerId.toString();
    let budget = this.options.maxNeighbours - this.neighbourSet.size;
    let inFlight = 0;
    for (const candidate of this.candidates.values()) if (candidate.dialing) inFlight++;
    const due = [...this.candidates]
      .filter(([id, c]) => !this.neighbourSet.has(id) && !c.dialing && now >= c.nextAttemptAt)
      // With few dial slots, peers never tried go first, so one unreachable peer cannot hold a slot for everyone.
      .sort(([, a], [, b]) => a.attempts - b.attempts || a.nextAttemptAt - b.nextAttemptAt);
    for (const [id, candidate] of due) {
      if (budget <= 0 || inFlight >= this.options.maxConcurrentDials) break;
      const myTurn = me < id || (now - candidate.firstSeen >= this.options.tieBreakGraceMs && !this.hasAnyConnection(candidate.peerId));
      if (!myTurn) continue;
      budget--;
      inFlight++;
      void this.dialCandidate(candidate);
    }
  }

  private hasAnyConnection(peerId: PeerId): boolean {
    return this.components.connectionManager.getConnections(peerId).length > 0;
  }

  private async dialRelay(relay: RelayState): Promise<void> {
    relay.dialing = true;
    try {
      await this.components.connectionManager.openConnection(relay.addr, {
        signal: AbortSignal.timeout(this.options.dialTimeoutMs),
      });
      relay.attempts = 0;
      relay.nextAttemptAt = 0;
    } catch (err) {
      relay.attempts++;
      relay.nextAttemptAt = Date.now() + backoffDelay(relay.attempts, this.options.initialBackoffMs * 2, this.options.maxBackoffMs * 2);
      this.log('relay %s unreachable (attempt %d): %e', relay.addr, relay.attempts, err);
    } finally {
      relay.dialing = false;
    }
  }

  private async dialCandidate(candidate: Candidate): Promise<void> {
    const id = candidate.peerId.toString();
    candidate.dialing = true;
    try {
      const connection = await this.components.connectionManager.openConnection(candidate.addrs, {
        signal: AbortSignal.timeout(dialTimeoutFor(candidate.attempts, this.options.dialTimeoutMs, this.options.maxDialTimeoutMs)),
        // Without force, libp2p hands back an existing relayed (limited) connection instead of dialling WebRTC.
        force: true,
      });
      if (!isDirectConnection(connection)) {
        // libp2p reused a relayed connection; a direct one is what we need, so try again later.
        throw new Error('only a limited connection was available');
      }
      candidate.attempts = 0;
    } catch (err) {
      candidate.attempts++;
      // A hung attempt can leave the relayed signalling connection wedged, and libp2p would signal the next attempt
      // over it again; closing it makes the retry start from a fresh circuit.
      for (const connection of this.components.connectionManager.getConnections(candidate.peerId)) {
        if (connection.limits != null) connection.abort(new Error('discarding relayed connection after a failed WebRTC dial'));
      }
      candidate.lastError = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
      if (candidate.attempts >= 3 * this.options.maxAttempts) {
        this.log('giving up on %s after %d attempts: %e', id, candidate.attempts, err);
        this.candidates.delete(id);
        return;
      }
      candidate.nextAttemptAt =
        Date.now() +
        (candidate.attempts >= this.options.maxAttempts
          ? SLOW_RETRY_MS
          : backoffDelay(candidate.attempts, this.options.initialBackoffMs, this.options.maxBackoffMs));
      this.log('dial %s failed (attempt %d): %e', id, candidate.attempts, err);
    } finally {
      candidate.dialing = false;
    }
  }
}

export function dialPolicy(init: DialPolicyInit = {}): (components: DialPolicyComponents) => DialPolicy {
  return (components) => new SwarmDialPolicy(components, init);
}
