/**
 * Verdicts on peer input and the per-peer rejection ledger. Peer input never throws: every decoder and validator
 * of core/wire returns a Verdict, and every rejection carries a reason that the ledger counts per peer.
 */
import {
  REJECTION_DISCONNECT_THRESHOLD,
  REJECTION_HISTORY_PER_PEER,
  REJECTION_MAX_PEERS,
  REJECTION_WINDOW_MS,
} from './constants.ts';

export const REJECT_REASONS = [
  /** Bytes that do not parse, wrong field types, out-of-range values, trailing bytes. */
  'malformed',
  /** A format version (payload, manifest, telemetry) this build does not understand. */
  'unknown-version',
  'wrong-run',
  'wrong-base-model',
  /** Adapter schema hash (rank, alpha, targets, module names, dims) differs from ours or from the announcement. */
  'schema-mismatch',
  /** Larger than a cap, or larger than announced. */
  'oversized',
  /** Shorter than declared or announced. */
  'truncated',
  /** Payload sha256 differs from the announced one. */
  'bad-hash',
  /** NaN or ±Infinity in a tensor or a number field. */
  'non-finite',
  /** A version not newer than one already accepted from that peer. */
  'replayed',
  /** The manifest's peer id is not the authenticated gossip sender. */
  'bad-signature',
  /** The peer sends faster than the node accepts. */
  'rate-limited',
  /** A fetch did not complete in time. */
  'timeout',
  /** A fetch failed at the transport (stream reset, peer unreachable, protocol error). */
  'fetch-failed',
  /** Valid on the wire, but values the update guard refuses (beyond its absolute bound). */
  'out-of-bounds',
  /**
   * A sparse delta for a version of the sender's public copy that this peer does not hold (it missed a delta or
   * joined after the last keyframe): ignored until the sender's next keyframe.
   */
  'delta-base-mismatch',
  /** In a run whose LoRA A is frozen (lora.mode 'frozen-a'), an adapter whose A is not the run's shared A. */
  'frozen-factor',
] as const;

export type RejectReason = (typeof REJECT_REASONS)[number];

export type Verdict<T = void> = { ok: true; value: T } | { ok: false; reason: RejectReason; detail: string };
export type Rejection = Extract<Verdict<unknown>, { ok: false }>;

export function accept(): Verdict<void>;
export function accept<T>(value: T): Verdict<T>;
export function accept<T>(value?: T): Verdict<T | undefined> {
  return { ok: true, value };
}

export function reject(reason: RejectReason, detail: string): Rejection {
  return { ok: false, reason, detail };
}

export function isRejectReason(value: unknown): value is RejectReason {
  return typeof value === 'string' && (REJECT_REASONS as readonly string[]).includes(value);
}

/**
 * How much one rejection counts towards disconnecting a peer. Proof of bad data (a wrong hash, a forged sender,
 * NaN, garbage bytes) counts fully; what an honest peer can cause by a race or a slow link counts less.
 * Timeouts and failed fetches count fully: each one held a fetch slot and memory for seconds, and a peer that
 * announces what it then stalls, trickles or does not serve is indistinguishable from one that wastes our fetches
 * on purpose. An honest peer fails a fetch rarely (transport failures are retried before one is counted), far
 * below REJECTION_DISCONNECT_THRESHOLD per REJECTION_WINDOW_MS.
 */
export const REJECTION_WEIGHTS: Record<RejectReason, number> = {
  malformed: 1,
  'unknown-version': 0.5,
  'wrong-run': 0.25,
  'wrong-base-model': 0.5,
  'schema-mismatch': 0.5,
  oversized: 1,
  truncated: 1,
  'bad-hash': 1,
  'non-finite': 1,
  replayed: 0.25,
  'bad-signature': 1,
  'rate-limited': 0.5,
  timeout: 1,
  'fetch-failed': 1,
  'out-of-bounds': 1,
  // A lost delivery or a late join causes it for honest senders; a sender repeating it gains nothing but bytes.
  'delta-base-mismatch': 0.25,
  'frozen-factor': 1,
};

/**
 * How a gossipsub topic validator should treat a rejected message: 'reject' penalises the sender in gossipsub's
 * score, 'ignore' drops it silently (reasons an honest peer can trigger, such as a reordered old version).
 */
export function gossipDisposition(reason: RejectReason): 'reject' | 'ignore' {
  return REJECTION_WEIGHTS[reason] >= 1 ? 'reject' : 'ignore';
}

export interface RejectionLedgerOptions {
  /** Sliding window over which rejections count towards a disconnect (ms). */
  windowMs?: number;
  /** Weighted rejections within the window at which shouldDisconnect() turns true. */
  disconnectThreshold?: number;
  weights?: Partial<Record<RejectReason, number>>;
  /** Clock; injectable for tests. */
  now?: () => number;
  maxPeers?: number;
  historyPerPeer?: number;
}

export interface PeerRejectionSnapshot {
  peerId: string;
  total: number;
  /** Weighted rejections within the sliding window. */
  recentWeight: number;
  byReason: Partial<Record<RejectReason, number>>;
  lastReason: RejectReason;
  lastDetail: string;
  lastAtMs: number;
}

export interface RejectionSnapshot {
  atMs: number;
  windowMs: number;
  disconnectThreshold: number;
  total: number;
  byReason: Partial<Record<RejectReason, number>>;
  /** Sorted by recentWeight, heaviest first. */
  peers: PeerRejectionSnapshot[];
}

interface PeerRecord {
  total: number;
  byReason: Partial<Record<RejectReason, number>>;
  /** Parallel arrays of recent rejection times and weights, oldest first. */
  times: number[];
  weights: number[];
  lastReason: RejectReason;
  lastDetail: string;
  lastAtMs: number;
}

/** Counts rejections per peer and per reason; decides when a peer has sent enough bad data to be disconnected. */
export class RejectionLedger {
  readonly windowMs: number;
  readonly disconnectThreshold: number;
  private readonly weights: Record<RejectReason, number>;
  private readonly now: () => number;
  private readonly maxPeers: number;
  private readonly historyPerPeer: number;
  /** Insertion order = least recently rejected first, which is the eviction order. */
  private readonly peers = new Map<string, PeerRecord>();
  private readonly totals: Partial<Record<RejectReason, number>> = {};
  private total = 0;

  constructor(options: RejectionLedgerOptions = {}) {
    this.windowMs = options.windowMs ?? REJECTION_WINDOW_MS;
    this.disconnectThreshold = options.disconnectThreshold ?? REJECTION_DISCONNECT_THRESHOLD;
    this.weights = { ...REJECTION_WEIGHTS, ...options.weights };
    this.now = options.now ?? Date.now;
    this.maxPeers = options.maxPeers ?? REJECTION_MAX_PEERS;
    this.historyPerPeer = options.historyPerPeer ?? REJECTION_HISTORY_PER_PEER;
  }

  /** Records one rejection; returns shouldDisconnect(peerId) after it. */
  record(peerId: string, reason: RejectReason, detail = ''): boolean {
    const at = this.now();
    let rec = this.peers.get(peerId);
    if (rec) {
      this.peers.delete(peerId);
    } else {
      rec = { total: 0, byReason: {}, times: [], weights: [], lastReason: reason, lastDetail: '', lastAtMs: at };
      if (this.peers.size >= this.maxPeers) {
        const oldest = this.peers.keys().next().value;
        if (oldest !== undefined) this.peers.delete(oldest);
      }
    }
    this.peers.set(peerId, rec);
    rec.total++;
    rec.byReason[reason] = (rec.byReason[reason] ?? 0) + 1;
    rec.times.push(at);
    rec.weights.push(this.weights[reason]);
    if (rec.times.length > this.historyPerPeer) {
      rec.times.shift();
      rec.weights.shift();
    }
    rec.lastReason = reason;
    rec.lastDetail = detail.slice(0, 200);
    rec.lastAtMs = at;
    this.total++;
    this.totals[reason] = (this.totals[reason] ?? 0) + 1;
    return this.shouldDisconnect(peerId);
  }

  /** Convenience: records a failed verdict (and nothing for an accepted one). Returns shouldDisconnect(peerId). */
  recordVerdict(peerId: string, verdict: Verdict<unknown>): boolean {
    if (verdict.ok) return this.shouldDisconnect(peerId);
    return this.record(peerId, verdict.reason, verdict.detail);
  }

  /** Sum of rejection weights from this peer within the sliding window. */
  recentWeight(peerId: string): number {
    const rec = this.peers.get(peerId);
    if (!rec) return 0;
    const since = this.now() - this.windowMs;
    let weight = 0;
    for (let i = rec.times.length - 1; i >= 0 && rec.times[i] > since; i--) weight += rec.weights[i];
    return weight;
  }

  shouldDisconnect(peerId: string): boolean {
    return this.recentWeight(peerId) >= this.disconnectThreshold;
  }

  /** All rejections ever recorded for this peer (0 for an unknown or forgotten peer). */
  countFor(peerId: string, reason?: RejectReason): number {
    const rec = this.peers.get(peerId);
    if (!rec) return 0;
    return reason === undefined ? rec.total : rec.byReason[reason] ?? 0;
  }

  /** Drops a peer's history (for example after disconnecting it, so a later reconnect starts clean). */
  forget(peerId: string): void {
    this.peers.delete(peerId);
  }

  snapshot(): RejectionSnapshot {
    const peers: PeerRejectionSnapshot[] = [];
    for (const [peerId, rec] of this.peers) {
      peers.push({
        peerId,
        total: rec.total,
        recentWeight: this.recentWeight(peerId),
        byReason: { ...rec.byReason },
        lastReason: rec.lastReason,
        lastDetail: rec.lastDetail,
        lastAtMs: rec.lastAtMs,
      });
    }
    peers.sort((x, y) => y.recentWeight - x.recentWeight || y.total - x.total);
    return {
      atMs: this.now(),
      windowMs: this.windowMs,
      disconnectThreshold: this.disconnectThreshold,
      total: this.total,
      byReason: { ...this.totals },
      peers,
    };
  }
}
