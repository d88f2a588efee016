// Discovery that scales: rendezvous at the relays instead of a global gossip topic.
//
// A peer registers with each relay it keeps a connection to (its addresses and how many neighbour slots it has
// free) and, while it has free slots, asks for a few peers with room. The relay answers with a random sample of its
// registered peers and introduces the asker to each peer it named, so both sides know of each other at once and
// the dial policy's rule (the smaller peer id dials) applies without waiting. A peer with enough neighbours (6 of
// its 12 slots) stops asking and only refreshes its registration once a minute, still offering its free slots to
// newcomers. What a peer hears no longer grows with the swarm: it asks for at most (free slots + 2) peers while it
// has fewer than enough, and is introduced about as often as newcomers pick it.
//
// Everything a relay or a peer says is bounded and checked: requests and answers are small canonical JSON with
// limits on every field; a registration is bound to the authenticated connection it came over; peers accept answers
// and introductions only from the relays of their own list.
import { TypedEventEmitter, peerDiscoverySymbol, type ComponentLogger, type Connection, type Libp2pEvents, type Logger, type PeerDiscovery, type PeerDiscoveryEvents, type PeerId, type Startable, type Stream, type TypedEventTarget } from '@libp2p/interface';
import type { AddressManager, ConnectionManager, Registrar } from '@libp2p/interface-internal';
import { peerIdFromString } from '@libp2p/peer-id';
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr';
import { PEER_ID_PATTERN } from '../core/wire/constants.ts';
import { reject, type Verdict } from '../core/wire/verdict.ts';
import {
  DEFAULT_MAX_NEIGHBOURS,
  INTRODUCTION_PROTOCOL,
  RENDEZVOUS_ENOUGH_NEIGHBOURS,
  RENDEZVOUS_FAST_MS,
  RENDEZVOUS_PROTOCOL,
  RENDEZVOUS_REFRESH_MS,
  RENDEZVOUS_ROOM_REFRESH_MS,
  RENDEZVOUS_TTL_MS,
} from './constants.ts';
import { isWebRtcAddress } from './dial-policy.ts';
import { readAll } from './stream-io.ts';
import { TelemetryRateLimiter } from './telemetry-topic.ts';

export const RENDEZVOUS_VERSION = 1;
/** Addresses one registration may carry (a tab has a WebRTC address per relay reservation, plus a few others). */
export const MAX_REGISTERED_ADDRS = 8;
export const MAX_ADDR_CHARS = 400;
/** Peers one answer or introduction may name. */
export const MAX_PEERS_PER_ANSWER = 16;
const MAX_REQUEST_BYTES = 8 * 1024;
const MAX_ANSWER_BYTES = 64 * 1024;
const MAX_FREE_SLOTS = 64;
const STREAM_TIMEOUT_MS = 10_000;

export interface RendezvousRequest {
  v: number;
  addrs: string[];
  /** Neighbour slots the asker has free (the relay names it to others only while this is above 0). */
  room: number;
  /** Peers it asks for now (0: only refresh the registration). */
  want: number;
}

export interface PeerRecord {
  id: string;
  addrs: string[];
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

function parseJson(bytes: Uint8Array, what: string): Verdict<Record<string, unknown>> {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(bytes));
  } catch {
    return reject('malformed', `${what} is not UTF-8 JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return reject('malformed', `${what} is not a JSON object`);
  const record = value as Record<string, unknown>;
  if (record.v !== RENDEZVOUS_VERSION) return reject('unknown-version', `${what} version ${String(record.v)} is not ${RENDEZVOUS_VERSION}`);
  return { ok: true, value: record };
}

function isCount(v: unknown, max: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;
}

/** Checks a list of addresses of `peerId` (null: the peer is not known yet, as in a request). */
function checkAddrs(v: unknown, peerId: string | null, what: string): Verdict<string[]> {
  if (!Array.isArray(v) || v.length > MAX_REGISTERED_ADDRS) return reject('malformed', `${what}: addrs must be a list of at most ${MAX_REGISTERED_ADDRS}`);
  const out: string[] = [];
  for (const a of v) {
    if (typeof a !== 'string' || a.length === 0 || a.length > MAX_ADDR_CHARS) return reject('malformed', `${what}: an address is not a string of 1-${MAX_ADDR_CHARS} characters`);
    let components;
    try {
      components = multiaddr(a).getComponents();
    } catch {
      return reject('malformed', `${what}: '${a.slice(0, 80)}' is not a multiaddr`);
    }
    const last = components.at(-1);
    if (peerId !== null && last?.name === 'p2p' && last.value !== peerId) return reject('bad-signature', `${what}: an address of ${peerId} ends in another peer id`);
    out.push(a);
  }
  return { ok: true, value: out };
}

export function encodeRendezvousRequest(request: Omit<RendezvousRequest, 'v'>): Uint8Array {
  return encoder.encode(JSON.stringify({ v: RENDEZVOUS_VERSION, addrs: request.addrs, room: request.room, want: request.want }));
}

/** Never throws. */
export function decodeRendezvousRequest(bytes: Uint8Array | null): Verdict<RendezvousRequest> {
  if (bytes === null || bytes.length > MAX_REQUEST_BYTES) return reject('oversized', `a rendezvous request is at most ${MAX_REQUEST_BYTES} bytes`);
  const parsed = parseJson(bytes, 'rendezvous request');
  if (!parsed.ok) return parsed;
  const { addrs, room, want } = parsed.value;
  if (Object.keys(parsed.value).length !== 4) return reject('malformed', 'a rendezvous request has exactly v, addrs, room and want');
  if (!isCount(room, MAX_FREE_SLOTS) || !isCount(want, MAX_PEERS_PER_ANSWER)) return reject('malformed', `room must be 0-${MAX_FREE_SLOTS} and want 0-${MAX_PEERS_PER_ANSWER}`);
  const checked = checkAddrs(addrs, null, 'rendezvous request');
  if (!checked.ok) return checked;
  return { ok: true, value: { v: RENDEZVOUS_VERSION, addrs: checked.value, room, want } };
}

/** `addr` without a trailing /p2p/<peerId> (the record's id says whose it is: 55 bytes less per address on the wire). */
function withoutOwnId(addr: string, peerId: string): string {
  const suffix = `/p2p/${peerId}`;
  return addr.endsWith(suffix) ? addr.slice(0, -suffix.length) : addr;
}

/** `addr` ending in /p2p/<peerId>, as dialling a peer by address needs. */
function withOwnId(addr: string, peerId: string): string {
  return addr.endsWith(`/p2p/${peerId}`) ? addr : `${addr}/p2p/${peerId}`;
}

export function encodePeerList(peers: PeerRecord[]): Uint8Array {
  return encoder.encode(JSON.stringify({ v: RENDEZVOUS_VERSION, peers: peers.map((p) => ({ id: p.id, addrs: p.addrs.map((a) => withoutOwnId(a, p.id)) })) }));
}

/** An answer or an introduction from a relay. Never throws. */
export function decodePeerList(bytes: Uint8Array | null): Verdict<PeerRecord[]> {
  if (bytes === null || bytes.length > MAX_ANSWER_BYTES) return reject('oversized', `a peer list is at most ${MAX_ANSWER_BYTES} bytes`);
  const parsed = parseJson(bytes, 'peer list');
  if (!parsed.ok) return parsed;
  const { peers } = parsed.value;
  if (Object.keys(parsed.value).length !== 2) return reject('malformed', 'a peer list has exactly v and peers');
  if (!Array.isArray(peers) || peers.length > MAX_PEERS_PER_ANSWER) return reject('malformed', `peers must be a list of at most ${MAX_PEERS_PER_ANSWER}`);
  const out: PeerRecord[] = [];
  for (const p of peers as unknown[]) {
    if (typeof p !== 'object' || p === null || Object.keys(p).length !== 2) return reject('malformed', 'a peer is exactly { id, addrs }');
    const { id, addrs } = p as Record<string, unknown>;
    if (typeof id !== 'string' || !PEER_ID_PATTERN.test(id)) return reject('malformed', 'a peer id is not a peer id');
    const checked = checkAddrs(addrs, id, `peer ${id}`);
    if (!checked.ok) return checked;
    if (checked.value.length === 0) return reject('malformed', `peer ${id} has no address`);
    out.push({ id, addrs: checked.value.map((a) => withOwnId(a, id)) });
  }
  return { ok: true, value: out };
}

interface Registration {
  addrs: string[];
  room: number;
  refreshedAtMs: number;
}

/** The relay's table of registered peers: bounded, expiring, and sampled at random. */
export class RendezvousRegistry {
  private readonly entries = new Map<string, Registration>();
  /** Ids in an array too, so a random sample of a large table costs a few probes. */
  private readonly ids: string[] = [];
  private readonly index = new Map<string, number>();

  constructor(
    readonly maxEntries: number,
    readonly ttlMs = RENDEZVOUS_TTL_MS,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** False when the table is full and the peer is not in it yet. */
  register(peerId: string, addrs: string[], room: number, nowMs: number): boolean {
    if (!this.entries.has(peerId)) {
      if (this.entries.size >= this.maxEntries) return false;
      this.index.set(peerId, this.ids.length);
      this.ids.push(peerId);
    }
    this.entries.set(peerId, { addrs, room, refreshedAtMs: nowMs });
    return true;
  }

  remove(peerId: string): void {
    const at = this.index.get(peerId);
    if (at === undefined) return;
    const last = this.ids.pop()!;
    if (last !== peerId) {
      this.ids[at] = last;
      this.index.set(last, at);
    }
    this.index.delete(peerId);
    this.entries.delete(peerId);
  }

  /** One slot of a named peer is (probably) taken now: it was introduced to someone. */
  spendRoom(peerId: string): void {
    const entry = this.entries.get(peerId);
    if (entry && entry.room > 0) entry.room--;
  }

  expire(nowMs: number): void {
    for (const [id, entry] of [...this.entries]) if (nowMs - entry.refreshedAtMs > this.ttlMs) this.remove(id);
  }

  /** Up to `want` distinct registered peers with free slots and an address, other than `asker`, chosen at random. */
  sample(asker: string, want: number, nowMs: number, random = Math.random): PeerRecord[] {
    const eligible = (id: string) => {
      const e = this.entries.get(id)!;
      return id !== asker && e.room > 0 && e.addrs.length > 0 && nowMs - e.refreshedAtMs <= this.ttlMs;
    };
    const picked = new Set<string>();
    if (this.ids.length <= 4 * want + 16) {
      const pool = this.ids.filter(eligible);
      for (let i = pool.length - 1; i > 0; i--) {
        const j = Math.floor(random() * (i + 1));
        [pool[i], pool[j]] = [pool[j], pool[i]];
      }
      for (const id of pool.slice(0, want)) picked.add(id);
    } else {
      for (let probes = 0; probes < 16 * want && picked.size < want; probes++) {
        const id = this.ids[Math.floor(random() * this.ids.length)];
        if (!picked.has(id) && eligible(id)) picked.add(id);
      }
    }
    return [...picked].map((id) => ({ id, addrs: this.entries.get(id)!.addrs }));
  }
}

/**
 * The addresses worth registering: only those another peer's dial policy would dial (a tab's WebRTC addresses, not
 * its bare circuit ones), without the trailing /p2p/<own id> (the relay adds it back). Half or less of what the
 * address manager lists, and every answer that names this peer carries them.
 */
function ownAddrs(addrs: Multiaddr[], peerId: string, dialable: (ma: Multiaddr) => boolean): string[] {
  return addrs
    .filter(dialable)
    .map((ma) => withoutOwnId(ma.toString(), peerId))
    .filter((a) => a.length <= MAX_ADDR_CHARS)
    .slice(0, MAX_REGISTERED_ADDRS);
}

async function writeAndClose(stream: Stream, bytes: Uint8Array, signal: AbortSignal): Promise<void> {
  if (!stream.send(bytes)) await stream.onDrain({ signal });
  await stream.close({ signal });
}

export interface RendezvousStats {
  /** Requests sent (peer) or answered (relay). */
  requests: number;
  /** Introductions received (peer) or pushed (relay). */
  introductions: number;
  peersHeard: number;
  bytesSent: number;
  bytesReceived: number;
  rejected: number;
}

const zeroStats = (): RendezvousStats => ({ requests: 0, introductions: 0, peersHeard: 0, bytesSent: 0, bytesReceived: 0, rejected: 0 });

// ---------------------------------------------------------------------------------------------------------------
// Relay side.

export interface RendezvousServerInit {
  /** Registrations held at once (a relay holds one per connected peer; default 4096). */
  maxRegistrations?: number;
  /** Introductions being pushed at once; beyond it the relay only answers (the named peers still learn of the asker later). */
  maxIntroductionsInFlight?: number;
}

export interface RendezvousServerComponents {
  registrar: Registrar;
  connectionManager: ConnectionManager;
  events: TypedEventTarget<Libp2pEvents>;
  logger: ComponentLogger;
}

export interface RendezvousServer {
  registered(): number;
  stats(): RendezvousStats;
}

class SwarmRendezvousServer implements RendezvousServer, Startable {
  readonly [Symbol.toStringTag] = 'swarm/rendezvous-server';
  private readonly log: Logger;
  private readonly registry: RendezvousRegistry;
  private readonly limiter = new TelemetryRateLimiter(1_000, 4);
  private readonly maxIntroductionsInFlight: number;
  private introductionsInFlight = 0;
  /** Pairs introduced lately ("to/about" → when), so repeated asks do not introduce the same two peers again. */
  private readonly introduced = new Map<string, number>();
  private readonly counters = zeroStats();
  private timer?: ReturnType<typeof setInterval>;
  private started = false;

  constructor(private readonly components: RendezvousServerComponents, init: RendezvousServerInit) {
    this.log = components.logger.forComponent('swarm:rendezvous-server');
    this.registry = new RendezvousRegistry(init.maxRegistrations ?? 4096);
    this.maxIntroductionsInFlight = init.maxIntroductionsInFlight ?? 64;
    this.onDisconnect = this.onDisconnect.bind(this);
  }

  isStarted(): boolean {
    return this.started;
  }

  async start(): Promise<void> {
    await this.components.registrar.handle(RENDEZVOUS_PROTOCOL, (stream, connection) => this.answer(stream, connection), {
      maxInboundStreams: 4,
      maxOutboundStreams: 4,
    });
    this.components.events.addEventListener('peer:disconnect', this.onDisconnect);
    this.timer = setInterval(() => this.registry.expire(Date.now()), 30_000);
    this.started = true;
  }

  async stop(): Promise<void> {
    this.started = false;
    clearInterval(this.timer);
    this.components.events.removeEventListener('peer:disconnect', this.onDisconnect);
    await this.components.registrar.unhandle(RENDEZVOUS_PROTOCOL);
  }

  registered(): number {
    return this.registry.size;
  }

  stats(): RendezvousStats {
    return { ...this.counters };
  }

  private onDisconnect(evt: CustomEvent<PeerId>): void {
    this.registry.remove(evt.detail.toString());
  }

  private async answer(stream: Stream, connection: Connection): Promise<void> {
    const asker = connection.remotePeer.toString();
    const signal = AbortSignal.timeout(STREAM_TIMEOUT_MS);
    try {
      if (connection.limits != null || !this.limiter.take(asker, Date.now())) {
        stream.abort(new Error('rendezvous refused: too many requests, or a limited connection'));
        this.counters.rejected++;
        return;
      }
      const bytes = await readAll(stream, MAX_REQUEST_BYTES, signal, 'rendezvous request not received in time');
      const request = decodeRendezvousRequest(bytes);
      if (!request.ok) {
        this.counters.rejected++;
        this.log('rendezvous request from %s refused: %s', asker, request.detail);
        stream.abort(new Error(request.detail));
        return;
      }
      this.counters.bytesReceived += bytes?.length ?? 0;
      const { addrs, room, want } = request.value;
      // A registration names only addresses of the authenticated sender.
      const own = addrs.filter((a) => multiaddr(a).getComponents().at(-1)?.name !== 'p2p' || a.endsWith(`/p2p/${asker}`)).map((a) => (a.endsWith(`/p2p/${asker}`) ? a : `${a}/p2p/${asker}`));
      const now = Date.now();
      this.registry.register(asker, own, room, now);
      const named = want > 0 ? this.registry.sample(asker, Math.min(want, MAX_PEERS_PER_ANSWER), now) : [];
      const answer = encodePeerList(named);
      await writeAndClose(stream, answer, signal);
      this.counters.requests++;
      this.counters.bytesSent += answer.length;
      if (own.length > 0 && room > 0) {
        for (const peer of named) {
          this.registry.spendRoom(peer.id);
          void this.introduce(peer.id, { id: asker, addrs: own });
        }
      }
    } catch (err) {
      this.log('rendezvous with %s failed: %e', asker, err);
      stream.abort(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /** Tells `to` about `about`, so the side with the smaller id can dial at once. Best effort. */
  private async introduce(to: string, about: PeerRecord): Promise<void> {
    if (this.introductionsInFlight >= this.maxIntroductionsInFlight) return;
    const pair = `${to}/${about.id}`;
    const now = Date.now();
    const last = this.introduced.get(pair);
    if (last !== undefined && now - last < RENDEZVOUS_TTL_MS) return;
    this.introduced.delete(pair);
    this.introduced.set(pair, now);
    // Bounded: the oldest pairs go first (they are the ones that may be introduced again anyway).
    while (this.introduced.size > 64 * 1024) this.introduced.delete(this.introduced.keys().next().value as string);
    const connection = this.components.connectionManager.getConnections(peerIdFromString(to)).find((c) => c.status === 'open' && c.limits == null);
    if (!connection) return;
    this.introductionsInFlight++;
    const signal = AbortSignal.timeout(STREAM_TIMEOUT_MS);
    try {
      const stream = await connection.newStream(INTRODUCTION_PROTOCOL, { signal });
      const bytes = encodePeerList([about]);
      await writeAndClose(stream, bytes, signal);
      this.counters.introductions++;
      this.counters.bytesSent += bytes.length;
    } catch (err) {
      this.log('introducing %s to %s failed: %e', about.id, to, err);
    } finally {
      this.introductionsInFlight--;
    }
  }
}

export function rendezvousServer(init: RendezvousServerInit = {}): (components: RendezvousServerComponents) => RendezvousServer {
  return (components) => new SwarmRendezvousServer(components, init);
}

// ---------------------------------------------------------------------------------------------------------------
// Peer side.

export interface RendezvousDiscoveryInit {
  /** The run's relays (multiaddrs ending in /p2p/<id>): the only ones asked, and the only ones whose introductions count. */
  relays: string[];
  maxNeighbours?: number;
  /**
   * Neighbours after which a peer stops asking and only refreshes its registration once per refreshMs (it stays
   * named to others while it has free slots, so it still fills up as newcomers ask). Default
   * RENDEZVOUS_ENOUGH_NEIGHBOURS, at most maxNeighbours.
   */
  enoughNeighbours?: number;
  /** Which of this peer's addresses others can dial (the dial policy's isDirectAddress): only those are registered. */
  dialableAddress?: (ma: Multiaddr) => boolean;
  /** First delay after an answer that named someone new; doubles up to refreshMs while answers bring no one new. */
  fastMs?: number;
  refreshMs?: number;
  tickMs?: number;
}

export interface RendezvousDiscoveryComponents {
  peerId: PeerId;
  registrar: Registrar;
  connectionManager: ConnectionManager;
  addressManager: AddressManager;
  events: TypedEventTarget<Libp2pEvents>;
  logger: ComponentLogger;
}

export interface RendezvousDiscovery extends PeerDiscovery {
  /** Where the free slots are read from (the dial policy's neighbours), set once the node exists. */
  useNeighbours(neighbours: () => number, onLost: (listener: () => void) => void): void;
  stats(): RendezvousStats;
}

/**
 * What a peer with `neighbours` tells a relay: its free slots (`room`: the relay names it to others while above 0)
 * and how many peers it asks for (`want`): its free slots plus 2 for dials that fail while it has fewer than `enough`,
 * and none once it has enough (the rest of its room fills as newcomers are introduced to it). Asking for only what
 * was missing up to `enough` (8 names instead of 14 at the start) meshed 100 peers in separate processes as well,
 * but left 16 peers in one thread with 0–2 neighbours for 90 s in 3 of 4 runs (p2p/discovery.test.ts).
 */
export function rendezvousAsk(neighbours: number, maxNeighbours: number, enough: number): { room: number; want: number } {
  const room = Math.max(0, Math.min(MAX_FREE_SLOTS, maxNeighbours - neighbours));
  const want = neighbours < enough ? Math.min(MAX_PEERS_PER_ANSWER, room + 2) : 0;
  return { room, want };
}

interface RelayAsk {
  nextAtMs: number;
  delayMs: number;
  asking: boolean;
}

class SwarmRendezvousDiscovery extends TypedEventEmitter<PeerDiscoveryEvents> implements RendezvousDiscovery, Startable {
  readonly [peerDiscoverySymbol] = this;
  readonly [Symbol.toStringTag] = 'swarm/rendezvous-discovery';
  private readonly log: Logger;
  private readonly relayIds: Set<string>;
  private readonly asks = new Map<string, RelayAsk>();
  private readonly heard = new Set<string>();
  private readonly maxNeighbours: number;
  private readonly enoughNeighbours: number;
  private readonly dialable: (ma: Multiaddr) => boolean;
  private readonly fastMs: number;
  private readonly refreshMs: number;
  private readonly tickMs: number;
  private neighbours: () => number = () => 0;
  private readonly counters = zeroStats();
  private timer?: ReturnType<typeof setInterval>;
  private started = false;

  constructor(private readonly components: RendezvousDiscoveryComponents, init: RendezvousDiscoveryInit) {
    super();
    this.log = components.logger.forComponent('swarm:rendezvous');
    this.relayIds = new Set(
      init.relays.flatMap((r) => {
        try {
          const id = multiaddr(r).getComponents().findLast((c) => c.name === 'p2p')?.value;
          return id ? [id] : [];
        } catch {
          return [];
        }
      }),
    );
    this.maxNeighbours = init.maxNeighbours ?? DEFAULT_MAX_NEIGHBOURS;
    this.enoughNeighbours = Math.min(this.maxNeighbours, init.enoughNeighbours ?? RENDEZVOUS_ENOUGH_NEIGHBOURS);
    this.dialable = init.dialableAddress ?? isWebRtcAddress;
    this.fastMs = init.fastMs ?? RENDEZVOUS_FAST_MS;
    this.refreshMs = init.refreshMs ?? RENDEZVOUS_REFRESH_MS;
    this.tickMs = init.tickMs ?? 500;
    this.onSelfUpdate = this.onSelfUpdate.bind(this);
  }

  isStarted(): boolean {
    return this.started;
  }

  async start(): Promise<void> {
    await this.components.registrar.handle(INTRODUCTION_PROTOCOL, (stream, connection) => this.hearIntroduction(stream, connection), {
      maxInboundStreams: 8,
      maxOutboundStreams: 1,
    });
    this.components.events.addEventListener('self:peer:update', this.onSelfUpdate);
    this.started = true;
  }

  afterStart(): void {
    this.timer = setInterval(() => this.tick(), this.tickMs);
  }

  async stop(): Promise<void> {
    this.started = false;
    clearInterval(this.timer);
    this.components.events.removeEventListener('self:peer:update', this.onSelfUpdate);
    await this.components.registrar.unhandle(INTRODUCTION_PROTOCOL);
  }

  useNeighbours(neighbours: () => number, onLost: (listener: () => void) => void): void {
    this.neighbours = neighbours;
    // A lost neighbour frees a slot: ask soon, if it leaves this peer short of enough.
    onLost(() => {
      if (this.neighbours() < this.enoughNeighbours) this.hurry();
    });
  }

  stats(): RendezvousStats {
    return { ...this.counters };
  }

  /** New addresses (a reservation came through) must reach the relays, and free slots deserve a prompt ask. */
  private onSelfUpdate(): void {
    this.hurry();
  }

  private hurry(): void {
    const at = Date.now() + Math.round(Math.random() * 500);
    for (const ask of this.asks.values()) {
      ask.delayMs = this.fastMs;
      ask.nextAtMs = Math.min(ask.nextAtMs, at);
    }
  }

  private tick(): void {
    if (!this.started) return;
    const now = Date.now();
    for (const connection of this.components.connectionManager.getConnections()) {
      const relay = connection.remotePeer.toString();
      if (!this.relayIds.has(relay) || connection.status !== 'open' || connection.limits != null) continue;
      let ask = this.asks.get(relay);
      if (!ask) {
        ask = { nextAtMs: now, delayMs: this.fastMs, asking: false };
        this.asks.set(relay, ask);
      }
      if (ask.asking || now < ask.nextAtMs) continue;
      void this.ask(relay, connection, ask);
    }
  }

  private async ask(relay: string, connection: Connection, ask: RelayAsk): Promise<void> {
    ask.asking = true;
    const me = this.components.peerId.toString();
    const { room, want } = rendezvousAsk(this.neighbours(), this.maxNeighbours, this.enoughNeighbours);
    const signal = AbortSignal.timeout(STREAM_TIMEOUT_MS);
    let brought = 0;
    try {
      const stream = await connection.newStream(RENDEZVOUS_PROTOCOL, { signal });
      const request = encodeRendezvousRequest({ addrs: ownAddrs(this.components.addressManager.getAddresses(), me, this.dialable), room, want });
      const response = readAll(stream, MAX_ANSWER_BYTES, signal, 'rendezvous answer not received in time');
      stream.send(request);
      void stream.close({ signal }).catch(() => undefined);
      const bytes = await response;
      this.counters.requests++;
      this.counters.bytesSent += request.length;
      this.counters.bytesReceived += bytes?.length ?? 0;
      const peers = decodePeerList(bytes);
      if (!peers.ok) {
        this.counters.rejected++;
        this.log('relay %s answered badly: %s', relay, peers.detail);
        stream.abort(new Error(peers.detail));
      } else {
        brought = this.hear(peers.value);
      }
    } catch (err) {
      this.log('rendezvous with %s failed: %e', relay, err);
    } finally {
      ask.asking = false;
      const neighbours = this.neighbours();
      const stillAsking = neighbours < this.enoughNeighbours;
      // A peer with enough neighbours but free slots refreshes more often than a full one: the relay spends its
      // advertised room each time it names it, and a stale zero would hide it from the peers that still need one.
      const refresh = neighbours < this.maxNeighbours ? Math.min(this.refreshMs, RENDEZVOUS_ROOM_REFRESH_MS) : this.refreshMs;
      ask.delayMs = stillAsking && brought > 0 ? this.fastMs : stillAsking ? Math.min(this.refreshMs, ask.delayMs * 2) : refresh;
      // Jitter keeps a classroom that opened together from asking in lockstep.
      ask.nextAtMs = Date.now() + Math.round(ask.delayMs * (0.8 + 0.4 * Math.random()));
    }
  }

  private async hearIntroduction(stream: Stream, connection: Connection): Promise<void> {
    const from = connection.remotePeer.toString();
    try {
      if (!this.relayIds.has(from)) {
        // Only the run's relays introduce peers; anyone else could steer this node's dials.
        this.counters.rejected++;
        stream.abort(new Error('introductions are accepted from the run\'s relays only'));
        return;
      }
      const bytes = await readAll(stream, MAX_ANSWER_BYTES, AbortSignal.timeout(STREAM_TIMEOUT_MS), 'introduction not received in time');
      const peers = decodePeerList(bytes);
      this.counters.bytesReceived += bytes?.length ?? 0;
      if (!peers.ok) {
        this.counters.rejected++;
        stream.abort(new Error(peers.detail));
        return;
      }
      this.counters.introductions++;
      this.hear(peers.value);
      await stream.close().catch(() => undefined);
    } catch (err) {
      this.log('introduction from %s failed: %e', from, err);
      stream.abort(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /** Hands the peers to libp2p (and so to the dial policy); returns how many were never heard of before. */
  private hear(peers: PeerRecord[]): number {
    const me = this.components.peerId.toString();
    let fresh = 0;
    for (const peer of peers) {
      if (peer.id === me || this.relayIds.has(peer.id)) continue;
      let id: PeerId;
      try {
        id = peerIdFromString(peer.id);
      } catch {
        this.counters.rejected++;
        continue;
      }
      this.counters.peersHeard++;
      if (!this.heard.has(peer.id)) {
        fresh++;
        this.heard.add(peer.id);
        // Bounded memory: forgetting an old name only makes a later answer count as news once more.
        if (this.heard.size > 4096) this.heard.delete(this.heard.values().next().value as string);
      }
      this.safeDispatchEvent('peer', { detail: { id, multiaddrs: peer.addrs.map((a) => multiaddr(a)) } });
    }
    return fresh;
  }
}

export function rendezvousDiscovery(init: RendezvousDiscoveryInit): (components: RendezvousDiscoveryComponents) => RendezvousDiscovery {
  return (components) => new SwarmRendezvousDiscovery(components, init);
}
