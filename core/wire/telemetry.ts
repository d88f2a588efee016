/** A peer's periodic telemetry report, small enough to gossip, for the dashboard. */
import { asciiToBytes, WireFormatError } from './bytes.ts';
import {
  BACKEND_PATTERN,
  MAX_TELEMETRY_BYTES,
  MAX_TELEMETRY_NEIGHBOURS,
  PEER_ID_PATTERN,
  RUN_ID_PATTERN,
  TELEMETRY_FORMAT_VERSION,
} from './constants.ts';
import { canonicalJson, FieldRejection, guarded, intField, isPlainObject, nullableNumberField, numberField, parseJsonObject, requireKeys, stringField } from './json.ts';
import { isRejectReason, type RejectReason, type Verdict } from './verdict.ts';

export interface TelemetryReport {
  formatVersion: number;
  peerId: string;
  runId: string;
  /** Wall-clock time of the report (ms since the epoch). */
  timeMs: number;
  step: number;
  trainLoss: number | null;
  heldOutLoss: number | null;
  merges: number;
  bytesSent: number;
  bytesReceived: number;
  versionsAnnounced: number;
  versionsFetched: number;
  /** Peer ids of direct (non-relayed) neighbours. */
  neighbours: string[];
  rejections: Partial<Record<RejectReason, number>>;
  tokensPerSecond: number | null;
  /** tfjs backend name: 'webgpu', 'wasm', 'cpu', … */
  backend: string;
  /**
   * Mean Frobenius distance ‖ΔWself − ΔWneighbour‖ between this peer's adapter and its neighbours' last accepted
   * ones (added later: optional, absent when the peer has no neighbour adapter or an older build sent it).
   */
  consensusDistance?: number;
  /**
   * Whether the peer is training normally (added later: optional, absent means not stated). 'unhealthy' comes with
   * healthReason in words (a poisoned adapter refused, a non-finite loss, a checkpoint that failed), so a peer in
   * trouble keeps reporting and the dashboard sees why.
   */
  health?: TelemetryHealth;
  healthReason?: string;
  /**
   * In a run with differential privacy (added later: optional, absent in runs without it): the ε the peer's
   * volunteer files have spent so far, and whether their budget is spent (the peer then shares no more updates).
   */
  epsilonSpent?: number;
  privacyExhausted?: boolean;
}

export const TELEMETRY_HEALTH = ['ok', 'unhealthy'] as const;
export type TelemetryHealth = (typeof TELEMETRY_HEALTH)[number];
/** Printable ASCII, at most 200 characters. */
const HEALTH_REASON_PATTERN = /^[ -~]{1,200}$/;

const TELEMETRY_KEYS = [
  'formatVersion', 'peerId', 'runId', 'timeMs', 'step', 'trainLoss', 'heldOutLoss', 'merges', 'bytesSent',
  'bytesReceived', 'versionsAnnounced', 'versionsFetched', 'neighbours', 'rejections', 'tokensPerSecond', 'backend',
] as const;
const OPTIONAL_TELEMETRY_KEYS = ['consensusDistance', 'health', 'healthReason', 'epsilonSpent', 'privacyExhausted'] as const;
/** Above core/privacy's largest target ε (1000), with room for the last release's rounding. */
const MAX_EPSILON = 1e4;
const MAX_CONSENSUS_DISTANCE = 1e9;
const MAX_COUNTER = Number.MAX_SAFE_INTEGER;
const MAX_LOSS = 1e6;
const MAX_TOKENS_PER_SECOND = 1e9;

function readTelemetry(obj: Record<string, unknown>): TelemetryReport {
  const where = 'telemetry';
  if (typeof obj.formatVersion !== 'number' || !Number.isSafeInteger(obj.formatVersion)) {
    throw new FieldRejection('malformed', `${where}.formatVersion must be an integer`);
  }
  if (obj.formatVersion !== TELEMETRY_FORMAT_VERSION) {
    throw new FieldRejection('unknown-version', `telemetry format version ${obj.formatVersion}; this build reads ${TELEMETRY_FORMAT_VERSION}`);
  }
  requireKeys(obj, TELEMETRY_KEYS, OPTIONAL_TELEMETRY_KEYS, where);
  const neighboursRaw = obj.neighbours;
  if (!Array.isArray(neighboursRaw) || neighboursRaw.length > MAX_TELEMETRY_NEIGHBOURS) {
    throw new FieldRejection('malformed', `${where}.neighbours must be an array of at most ${MAX_TELEMETRY_NEIGHBOURS} peer ids`);
  }
  const neighbours: string[] = [];
  for (const n of neighboursRaw) {
    if (typeof n !== 'string' || !PEER_ID_PATTERN.test(n)) throw new FieldRejection('malformed', `${where}.neighbours holds something that is not a peer id`);
    if (neighbours.includes(n)) throw new FieldRejection('malformed', `${where}.neighbours lists ${n} twice`);
    neighbours.push(n);
  }
  if (!isPlainObject(obj.rejections)) throw new FieldRejection('malformed', `${where}.rejections must be an object`);
  const rejections: Partial<Record<RejectReason, number>> = {};
  for (const key of Object.keys(obj.rejections)) {
    if (!isRejectReason(key)) throw new FieldRejection('malformed', `${where}.rejections: unknown reason '${key.slice(0, 40)}'`);
    rejections[key] = intField(obj.rejections, key, 0, MAX_COUNTER, `${where}.rejections`);
  }
  const report: TelemetryReport = {
    formatVersion: TELEMETRY_FORMAT_VERSION,
    peerId: stringField(obj, 'peerId', PEER_ID_PATTERN, where),
    runId: stringField(obj, 'runId', RUN_ID_PATTERN, where),
    timeMs: intField(obj, 'timeMs', 0, MAX_COUNTER, where),
    step: intField(obj, 'step', 0, MAX_COUNTER, where),
    trainLoss: nullableNumberField(obj, 'trainLoss', 0, MAX_LOSS, where),
    heldOutLoss: nullableNumberField(obj, 'heldOutLoss', 0, MAX_LOSS, where),
    merges: intField(obj, 'merges', 0, MAX_COUNTER, where),
    bytesSent: intField(obj, 'bytesSent', 0, MAX_COUNTER, where),
    bytesReceived: intField(obj, 'bytesReceived', 0, MAX_COUNTER, where),
    versionsAnnounced: intField(obj, 'versionsAnnounced', 0, MAX_COUNTER, where),
    versionsFetched: intField(obj, 'versionsFetched', 0, MAX_COUNTER, where),
    neighbours,
    rejections,
    tokensPerSecond: nullableNumberField(obj, 'tokensPerSecond', 0, MAX_TOKENS_PER_SECOND, where),
    backend: stringField(obj, 'backend', BACKEND_PATTERN, where),
  };
  if (obj.consensusDistance !== undefined) report.consensusDistance = numberField(obj, 'consensusDistance', 0, MAX_CONSENSUS_DISTANCE, where);
  if (obj.health !== undefined) {
    if (!(TELEMETRY_HEALTH as readonly unknown[]).includes(obj.health)) throw new FieldRejection('malformed', `${where}.health must be one of ${TELEMETRY_HEALTH.join(', ')}`);
    report.health = obj.health as TelemetryHealth;
  }
  if (obj.healthReason !== undefined) {
    if (report.health !== 'unhealthy') throw new FieldRejection('malformed', `${where}.healthReason belongs to an unhealthy report only`);
    report.healthReason = stringField(obj, 'healthReason', HEALTH_REASON_PATTERN, where);
  }
  if (obj.epsilonSpent !== undefined) report.epsilonSpent = numberField(obj, 'epsilonSpent', 0, MAX_EPSILON, where);
  if (obj.privacyExhausted !== undefined) {
    if (typeof obj.privacyExhausted !== 'boolean') throw new FieldRejection('malformed', `${where}.privacyExhausted must be true or false`);
    if (report.epsilonSpent === undefined) throw new FieldRejection('malformed', `${where}.privacyExhausted belongs to a report with epsilonSpent only`);
    report.privacyExhausted = obj.privacyExhausted;
  }
  return report;
}

/**
 * The report with every measured value the wire cannot carry (NaN, ±Infinity, negative or beyond its bound)
 * replaced: nullable ones by null, the optional distance dropped, and the report marked unhealthy with the
 * reason. A poisoned peer's losses are exactly such values; refusing its report would make it go silent.
 */
export function sanitizeTelemetry(report: TelemetryReport): TelemetryReport {
  const problems: string[] = [];
  const measured = (name: string, v: number | null, max: number): number | null => {
    if (v === null) return null;
    if (typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= max) return v;
    problems.push(`${name} was ${String(v)}`);
    return null;
  };
  const out: TelemetryReport = {
    ...report,
    trainLoss: measured('trainLoss', report.trainLoss, MAX_LOSS),
    heldOutLoss: measured('heldOutLoss', report.heldOutLoss, MAX_LOSS),
    tokensPerSecond: measured('tokensPerSecond', report.tokensPerSecond, MAX_TOKENS_PER_SECOND),
  };
  if (report.consensusDistance !== undefined) {
    const distance = measured('consensusDistance', report.consensusDistance, MAX_CONSENSUS_DISTANCE);
    if (distance === null) delete out.consensusDistance;
  }
  if (report.epsilonSpent !== undefined && measured('epsilonSpent', report.epsilonSpent, MAX_EPSILON) === null) {
    delete out.epsilonSpent;
    delete out.privacyExhausted;
  }
  let reason = report.health === 'unhealthy' ? report.healthReason : undefined;
  if (reason !== undefined) reason = reason.replace(/[^ -~]/g, '?').slice(0, 200) || undefined;
  if (problems.length > 0) reason = [reason, problems.join(', ')].filter(Boolean).join('; ').slice(0, 200);
  if (problems.length > 0 || report.health === 'unhealthy') {
    out.health = 'unhealthy';
    if (reason !== undefined) out.healthReason = reason;
    else delete out.healthReason;
  } else if (out.healthReason !== undefined) {
    delete out.healthReason;
  }
  return out;
}

/**
 * Canonical JSON bytes. Measured values the wire cannot carry are sanitised first (sanitizeTelemetry: the report
 * goes out marked unhealthy instead of being refused). Throws WireFormatError when another field is invalid (ids,
 * counters: the caller's bug, not the training's) or the report exceeds MAX_TELEMETRY_BYTES.
 */
export function encodeTelemetry(report: TelemetryReport): Uint8Array {
  const clean = sanitizeTelemetry(report);
  const copy: Record<string, unknown> = {};
  for (const key of [...TELEMETRY_KEYS, ...OPTIONAL_TELEMETRY_KEYS]) if (clean[key] !== undefined) copy[key] = clean[key];
  const checked = guarded(() => readTelemetry(copy), 'telemetry');
  if (!checked.ok) throw new WireFormatError(`cannot encode telemetry: ${checked.detail}`);
  const bytes = asciiToBytes(canonicalJson(checked.value));
  if (bytes.length > MAX_TELEMETRY_BYTES) throw new WireFormatError(`telemetry of ${bytes.length} bytes exceeds ${MAX_TELEMETRY_BYTES}`);
  return bytes;
}

/** Parses and type-checks a telemetry report from a peer. Never throws. */
export function decodeTelemetry(bytes: Uint8Array): Verdict<TelemetryReport> {
  const parsed = parseJsonObject(bytes, MAX_TELEMETRY_BYTES, 'telemetry');
  if (!parsed.ok) return parsed;
  return guarded(() => readTelemetry(parsed.value), 'telemetry');
}

/** Type-checks an already parsed report (a run log's rows, which arrive inside a larger JSON file). Never throws. */
export function telemetryFromObject(value: unknown): Verdict<TelemetryReport> {
  if (!isPlainObject(value)) return { ok: false, reason: 'malformed', detail: 'telemetry is not a JSON object' };
  return guarded(() => readTelemetry(value), 'telemetry');
}
