// The run's telemetry topic. Only dashboards and relays subscribe: a peer publishes its report to the subscribers it
// is connected to (its relays, and a dashboard that happens to be its neighbour), and each relay forwards reports to
// the dashboards connected to it, so no training peer receives another's telemetry. Every message passes a topic
// validator before it is delivered or forwarded, at the relay and again at the dashboard: a per-sender rate limit
// first (so a flood costs no parsing), then core/wire's strict decoder, then the checks that tie a report to its
// authenticated sender, its run and its order.
import { TopicValidatorResult, type GossipSub, type Message, type SubscriptionChangeData } from '@libp2p/gossipsub';
import type { PeerId } from '@libp2p/interface';
import { telemetryTopic } from '../core/swarm/telemetry.ts';
import { decodeTelemetry, type TelemetryReport } from '../core/wire/telemetry.ts';
import { gossipDisposition, reject, type RejectionLedger, type RejectReason, type Verdict } from '../core/wire/verdict.ts';

/** A peer reports every 10 s by default; one report per 2 s sustained (with a burst of 2 for jitter) is the most a topic accepts from one sender. */
export const TELEMETRY_MIN_INTERVAL_MS = 2000;
export const TELEMETRY_BURST = 2;
/** Senders remembered by the limiter and the replay check; the least recently heard is forgotten first. */
const MAX_TRACKED_SENDERS = 4096;

/** Token bucket per sender: `burst` tokens, one more every `intervalMs`. */
export class TelemetryRateLimiter {
  private readonly buckets = new Map<string, { tokens: number; atMs: number }>();
  constructor(
    readonly intervalMs = TELEMETRY_MIN_INTERVAL_MS,
    readonly burst = TELEMETRY_BURST,
  ) {}

  /** True when a message from this sender may pass now (and spends a token). */
  take(peerId: string, nowMs: number): boolean {
    const previous = this.buckets.get(peerId);
    let tokens = this.burst;
    if (previous) {
      this.buckets.delete(peerId);
      tokens = Math.min(this.burst, previous.tokens + Math.max(0, nowMs - previous.atMs) / this.intervalMs);
    } else if (this.buckets.size >= MAX_TRACKED_SENDERS) {
      this.buckets.delete(this.buckets.keys().next().value as string);
    }
    const allowed = tokens >= 1;
    this.buckets.set(peerId, { tokens: allowed ? tokens - 1 : tokens, atMs: nowMs });
    return allowed;
  }
}

export interface TelemetryAdmissionOptions {
  wireRunId: string;
  intervalMs?: number;
  burst?: number;
  now?: () => number;
}

/** Decides on one telemetry message from an authenticated sender. Never throws. */
export class TelemetryAdmission {
  readonly wireRunId: string;
  private readonly limiter: TelemetryRateLimiter;
  private readonly now: () => number;
  private readonly lastTimeMs = new Map<string, number>();

  constructor(options: TelemetryAdmissionOptions) {
    this.wireRunId = options.wireRunId;
    this.limiter = new TelemetryRateLimiter(options.intervalMs, options.burst);
    this.now = options.now ?? Date.now;
  }

  admit(bytes: Uint8Array, senderPeerId: string): Verdict<TelemetryReport> {
    if (!this.limiter.take(senderPeerId, this.now())) {
      return reject('rate-limited', `more than one telemetry report per ${this.limiter.intervalMs / 1000} s from ${senderPeerId}`);
    }
    const decoded = decodeTelemetry(bytes);
    if (!decoded.ok) return decoded;
    const report = decoded.value;
    if (report.peerId !== senderPeerId) return reject('bad-signature', `a report about ${report.peerId} signed by ${senderPeerId}`);
    if (report.runId !== this.wireRunId) return reject('wrong-run', `a report of run ${report.runId}, not ${this.wireRunId}`);
    const last = this.lastTimeMs.get(senderPeerId);
    if (last !== undefined && report.timeMs <= last) return reject('replayed', `report time ${report.timeMs} is not after ${last}`);
    this.lastTimeMs.delete(senderPeerId);
    if (this.lastTimeMs.size >= MAX_TRACKED_SENDERS) this.lastTimeMs.delete(this.lastTimeMs.keys().next().value as string);
    this.lastTimeMs.set(senderPeerId, report.timeMs);
    return { ok: true, value: report };
  }
}

export type TelemetryReportListener = (report: TelemetryReport, atMs: number) => void;
export type TelemetryRejectionListener = (peerId: string, reason: RejectReason, detail: string, atMs: number) => void;

export interface TelemetryFeedStats {
  accepted: number;
  rejected: number;
  byReason: Partial<Record<RejectReason, number>>;
}

export interface TelemetryFeed {
  readonly topic: string;
  readonly wireRunId: string;
  onReport(listener: TelemetryReportListener): () => void;
  onRejection(listener: TelemetryRejectionListener): () => void;
  /** Hands the node's own report to the listeners (gossipsub never delivers our own messages back to us). */
  ingestOwn(report: TelemetryReport): void;
  stats(): TelemetryFeedStats;
  stop(): void;
}

export interface TelemetryNode {
  libp2p: { services: { pubsub: GossipSub } };
  ledger: RejectionLedger;
}

/** Subscribes a node to the run's telemetry topic behind the validator; listeners get accepted reports and rejections. */
export function listenToTelemetry(node: TelemetryNode, wireRunId: string, options: Omit<TelemetryAdmissionOptions, 'wireRunId'> = {}): TelemetryFeed {
  const pubsub = node.libp2p.services.pubsub;
  const topic = telemetryTopic(wireRunId);
  const admission = new TelemetryAdmission({ ...options, wireRunId });
  const now = options.now ?? Date.now;
  const reportListeners = new Set<TelemetryReportListener>();
  const rejectionListeners = new Set<TelemetryRejectionListener>();
  const stats: TelemetryFeedStats = { accepted: 0, rejected: 0, byReason: {} };
  // Reports the validator accepted, waiting for gossipsub's 'message' event (keyed by the message's bytes).
  const accepted = new WeakMap<Uint8Array, TelemetryReport>();

  const validate = (_source: PeerId, message: Message): TopicValidatorResult => {
    try {
      if (message.type !== 'signed') return TopicValidatorResult.Reject;
      const sender = message.from.toString();
      const verdict = admission.admit(message.data, sender);
      if (!verdict.ok) {
        stats.rejected++;
        stats.byReason[verdict.reason] = (stats.byReason[verdict.reason] ?? 0) + 1;
        node.ledger.record(sender, verdict.reason, verdict.detail);
        const atMs = now();
        for (const l of rejectionListeners) l(sender, verdict.reason, verdict.detail, atMs);
        return gossipDisposition(verdict.reason) === 'reject' ? TopicValidatorResult.Reject : TopicValidatorResult.Ignore;
      }
      accepted.set(message.data, verdict.value);
      return TopicValidatorResult.Accept;
    } catch {
      return TopicValidatorResult.Ignore;
    }
  };

  const deliver = (report: TelemetryReport): void => {
    stats.accepted++;
    const atMs = now();
    for (const l of reportListeners) l(report, atMs);
  };

  const onMessage = (evt: CustomEvent<Message>): void => {
    const message = evt.detail;
    if (message.topic !== topic || message.type !== 'signed') return;
    let report = accepted.get(message.data);
    if (!report) {
      // Not the same bytes object the validator saw: decode again (it passed the validator, so this succeeds).
      const decoded = decodeTelemetry(message.data);
      if (!decoded.ok || decoded.value.peerId !== message.from.toString()) return;
      report = decoded.value;
    }
    deliver(report);
  };

  pubsub.topicValidators.set(topic, validate);
  pubsub.addEventListener('message', onMessage);
  pubsub.subscribe(topic);

  return {
    topic,
    wireRunId,
    onReport(listener) {
      reportListeners.add(listener);
      return () => reportListeners.delete(listener);
    },
    onRejection(listener) {
      rejectionListeners.add(listener);
      return () => rejectionListeners.delete(listener);
    },
    ingestOwn: deliver,
    stats: () => ({ ...stats, byReason: { ...stats.byReason } }),
    stop() {
      try {
        pubsub.unsubscribe(topic);
      } catch {
        // Already stopped with the node.
      }
      pubsub.removeEventListener('message', onMessage);
      pubsub.topicValidators.delete(topic);
      reportListeners.clear();
      rejectionListeners.clear();
    },
  };
}

/**
 * A peer's own report goes out on the run's telemetry topic without the peer subscribing to it: gossipsub hands it
 * to the connected peers that did subscribe (the relays, which forward it to dashboards, and any dashboard that is a
 * direct neighbour), so training peers never receive each other's telemetry.
 */
export async function publishTelemetry(node: TelemetryNode, encodedReport: Uint8Array, wireRunId: string): Promise<void> {
  await node.libp2p.services.pubsub.publish(telemetryTopic(wireRunId), encodedReport);
}

/** Telemetry topics a relay may carry: `swarm/run/<wire run id>/telemetry/1` (core/swarm/telemetry.ts). */
const TELEMETRY_TOPIC_PATTERN = /^swarm\/run\/([A-Za-z0-9._-]{1,160})\/telemetry\/1$/;

export interface RelayTelemetryOptions {
  /** Runs whose telemetry one relay carries at once (default 64). */
  maxTopics?: number;
  /** How often topics without a subscribed dashboard are dropped (default 30 s). */
  sweepMs?: number;
}

export interface RelayTelemetry {
  topics(): string[];
  stats(): { accepted: number; rejected: number };
  stop(): void;
}

/**
 * Makes a relay the telemetry hub of the runs whose dashboards connect to it: when a connected node subscribes to
 * a run's telemetry topic (only dashboards do), the relay subscribes too, so the peers connected to it publish their
 * reports to it and it forwards them to the dashboards in its mesh. Every report passes the same admission as at a
 * dashboard (rate limit, strict decode, sender and run checks) before the relay forwards it. A topic that no
 * connected node subscribes to any more is dropped at the next sweep.
 */
export function carryTelemetryAtRelay(pubsub: GossipSub, options: RelayTelemetryOptions = {}): RelayTelemetry {
  const maxTopics = options.maxTopics ?? 64;
  const carried = new Set<string>();
  const counts = { accepted: 0, rejected: 0 };

  const carry = (topic: string): void => {
    const match = TELEMETRY_TOPIC_PATTERN.exec(topic);
    if (!match || carried.has(topic) || carried.size >= maxTopics) return;
    const admission = new TelemetryAdmission({ wireRunId: match[1] });
    pubsub.topicValidators.set(topic, (_source: PeerId, message: Message): TopicValidatorResult => {
      try {
        if (message.type !== 'signed') return TopicValidatorResult.Reject;
        const verdict = admission.admit(message.data, message.from.toString());
        if (verdict.ok) {
          counts.accepted++;
          return TopicValidatorResult.Accept;
        }
        counts.rejected++;
        return gossipDisposition(verdict.reason) === 'reject' ? TopicValidatorResult.Reject : TopicValidatorResult.Ignore;
      } catch {
        return TopicValidatorResult.Ignore;
      }
    });
    carried.add(topic);
    pubsub.subscribe(topic);
  };

  const onSubscriptionChange = (evt: CustomEvent<SubscriptionChangeData>): void => {
    for (const s of evt.detail.subscriptions) if (s.subscribe) carry(s.topic);
  };

  const sweep = (): void => {
    for (const topic of [...carried]) {
      if (pubsub.getSubscribers(topic).length > 0) continue;
      carried.delete(topic);
      try {
        pubsub.unsubscribe(topic);
      } catch {
        // Stopped already.
      }
      pubsub.topicValidators.delete(topic);
    }
  };

  pubsub.addEventListener('subscription-change', onSubscriptionChange);
  const timer = setInterval(sweep, options.sweepMs ?? 30_000);
  return {
    topics: () => [...carried],
    stats: () => ({ ...counts }),
    stop() {
      clearInterval(timer);
      pubsub.removeEventListener('subscription-change', onSubscriptionChange);
    },
  };
}
