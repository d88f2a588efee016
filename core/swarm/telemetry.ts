/**
 * Telemetry records for the dashboard: a peer's state as a core/wire TelemetryReport, produced at a low rate.
 * The page gossips them on the run's telemetry topic; the same records are the rows of the run log.
 */
import { MAX_TELEMETRY_NEIGHBOURS, PEER_ID_PATTERN, TELEMETRY_FORMAT_VERSION, BACKEND_PATTERN } from '../wire/constants.ts';
import type { TelemetryReport } from '../wire/telemetry.ts';
import type { RejectReason } from '../wire/verdict.ts';

/** Gossip topic of a run's telemetry (separate from adapter announcements, so a dashboard can listen to it alone). */
export function telemetryTopic(wireRunId: string): string {
  return `swarm/run/${wireRunId}/telemetry/1`;
}

/** One report per peer every 10 s at most: 16 peers make under 2 small messages a second on the topic. */
export const DEFAULT_TELEMETRY_INTERVAL_MS = 10_000;

export interface PeerSnapshot {
  peerId: string;
  runId: string;
  timeMs: number;
  step: number;
  trainLoss: number | null;
  heldOutLoss: number | null;
  merges: number;
  bytesSent: number;
  bytesReceived: number;
  versionsAnnounced: number;
  versionsFetched: number;
  neighbours: string[];
  rejections: Partial<Record<RejectReason, number>>;
  tokensPerSecond: number | null;
  backend: string;
  /** Mean distance to the neighbours' adapters at the last merge (core/swarm/consensus.ts); optional. */
  consensusDistance?: number | null;
  /** The engine's health (EngineStatus.health); a peer in trouble keeps reporting, with the reason. */
  health?: { state: 'ok' | 'unhealthy'; reason: string | null };
  /** The engine's privacy status (EngineStatus.privacy); null or absent when the run does not use DP. */
  privacy?: { epsilonSpent: number; exhausted: boolean } | null;
}

const MAX_LOSS = 1e6;

function loss(v: number | null): number | null {
  return v !== null && Number.isFinite(v) && v >= 0 && v <= MAX_LOSS ? v : null;
}

function counter(v: number): number {
  return Number.isFinite(v) && v > 0 ? Math.min(Math.floor(v), Number.MAX_SAFE_INTEGER) : 0;
}

/**
 * A report that encodeTelemetry accepts whatever the snapshot holds: non-finite losses become null, counters are
 * clamped to whole non-negative numbers, neighbours are deduplicated and capped, unknown backend names are 'other'.
 */
export function telemetryReport(s: PeerSnapshot): TelemetryReport {
  const neighbours = [...new Set(s.neighbours.filter((n) => PEER_ID_PATTERN.test(n)))].sort().slice(0, MAX_TELEMETRY_NEIGHBOURS);
  const rejections: Partial<Record<RejectReason, number>> = {};
  for (const [reason, n] of Object.entries(s.rejections) as [RejectReason, number][]) if (counter(n) > 0) rejections[reason] = counter(n);
  const tps = s.tokensPerSecond;
  const distance = s.consensusDistance;
  const report: TelemetryReport = {
    formatVersion: TELEMETRY_FORMAT_VERSION,
    peerId: s.peerId,
    runId: s.runId,
    timeMs: counter(s.timeMs),
    step: counter(s.step),
    // In a DP run the training loss is measured on the volunteer's records without noise: it is not gossiped.
    trainLoss: s.privacy ? null : loss(s.trainLoss),
    heldOutLoss: loss(s.heldOutLoss),
    merges: counter(s.merges),
    bytesSent: counter(s.bytesSent),
    bytesReceived: counter(s.bytesReceived),
    versionsAnnounced: counter(s.versionsAnnounced),
    versionsFetched: counter(s.versionsFetched),
    neighbours,
    rejections,
    tokensPerSecond: tps !== null && Number.isFinite(tps) && tps >= 0 && tps <= 1e9 ? tps : null,
    backend: BACKEND_PATTERN.test(s.backend) ? s.backend : 'other',
  };
  if (distance !== undefined && distance !== null && Number.isFinite(distance) && distance >= 0 && distance <= 1e9) report.consensusDistance = distance;
  if (s.privacy && Number.isFinite(s.privacy.epsilonSpent) && s.privacy.epsilonSpent >= 0) {
    report.epsilonSpent = s.privacy.epsilonSpent;
    report.privacyExhausted = s.privacy.exhausted;
  }
  if (s.health) {
    report.health = s.health.state;
    if (s.health.state === 'unhealthy' && s.health.reason) report.healthReason = s.health.reason.replace(/[^ -~]/g, '?').slice(0, 200);
  }
  return report;
}

/** Lets a report through at most once per interval; the first one immediately. */
export class TelemetryGate {
  private lastMs = Number.NEGATIVE_INFINITY;
  constructor(readonly intervalMs: number = DEFAULT_TELEMETRY_INTERVAL_MS) {}

  due(nowMs: number): boolean {
    return nowMs - this.lastMs >= this.intervalMs;
  }

  /** True (and the interval restarts) when a report may go out now. */
  take(nowMs: number): boolean {
    if (!this.due(nowMs)) return false;
    this.lastMs = nowMs;
    return true;
  }
}
