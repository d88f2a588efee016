/**
 * The run log: what one observer (a dashboard tab, or the simulator) saw of a run. It is the run manifest plus an
 * append-only, time-ordered list of records: every telemetry report accepted from a peer, and the events derived
 * from them or seen on the side (a peer joined or left, a peer merged, a message was rejected, a fault was
 * injected). The dashboard exports it; the simulation reports read it; a live and a simulated run compare through
 * it.
 *
 * JSON layout (format 'swarm-run-log', version 1):
 * {
 *   "format": "swarm-run-log", "formatVersion": 1,
 *   "source": "live" | "simulation",
 *   "createdAtMs": <ms since the epoch>,
 *   "wireRunId": "<runId>.<16 hex>"          (every report's runId; the telemetry topic's run),
 *   "manifest": <RunManifest> | null,          (null when the observer never learnt it)
 *   "meta": { "<key>": string | number | boolean, … }   (free settings: observer peer id, simulation options…),
 *   "records": [ … ]                           (atMs never decreases)
 * }
 * Records, by "type":
 *   report    { atMs, report: TelemetryReport }                    atMs = when the observer accepted it
 *   joined    { atMs, peerId }                                     first report of a peer (or its return after left)
 *   left      { atMs, peerId, detail }                             silent for too long, or killed by a simulation
 *   merge     { atMs, peerId, step, merges }                       a report whose merge counter went up; merges = new total
 *   rejection { atMs, peerId, reason, detail }                     a message from peerId the observer refused
 *   event     { atMs, peerId: string | null, name, detail }        anything else (faults: 'kill', 'restart', 'relay-down'…)
 *
 * CSV layout (toCsv): one row per report record, header row first, columns RUN_LOG_CSV_COLUMNS:
 *   atMs, peerId, timeMs, step, trainLoss, heldOutLoss, consensusDistance, merges, bytesSent, bytesReceived,
 *   versionsAnnounced, versionsFetched, tokensPerSecond, backend, neighbours, rejections, health, healthReason,
 *   epsilonSpent, privacyExhausted (runs with differential privacy; 'true'/'false')
 * Empty cell = null/absent. neighbours: peer ids joined by ';'. rejections: 'reason=count' joined by ';'.
 * healthReason is percent-encoded (it is free text in words). No cell ever needs quoting: peer ids, backend names
 * and reasons are restricted to [A-Za-z0-9-].
 */
import { TELEMETRY_FORMAT_VERSION } from '../wire/constants.ts';
import { isPlainObject } from '../wire/json.ts';
import { decodeRunManifest, type RunManifest } from '../wire/run-manifest.ts';
import { telemetryFromObject, type TelemetryReport } from '../wire/telemetry.ts';
import { isRejectReason, type RejectReason } from '../wire/verdict.ts';
import { PEER_ID_PATTERN, RUN_ID_PATTERN, BACKEND_PATTERN } from '../wire/constants.ts';
import { wireRunId as wireRunIdOf } from './run.ts';

export const RUN_LOG_FORMAT = 'swarm-run-log';
export const RUN_LOG_FORMAT_VERSION = 1;
/** A run log file holds at most this many records (16 peers reporting every 10 s for 24 h is ~140,000). */
export const MAX_RUN_LOG_RECORDS = 1_000_000;
const MAX_META_ENTRIES = 256;
const MAX_TEXT = 2048;
const EVENT_NAME_PATTERN = /^[a-z0-9][a-z0-9-]{0,63}$/;
const META_KEY_PATTERN = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;

export type RunLogSource = 'live' | 'simulation';
export type RunLogMeta = Record<string, string | number | boolean>;

export type RunLogRecord =
  | { type: 'report'; atMs: number; report: TelemetryReport }
  | { type: 'joined'; atMs: number; peerId: string }
  | { type: 'left'; atMs: number; peerId: string; detail: string }
  | { type: 'merge'; atMs: number; peerId: string; step: number; merges: number }
  | { type: 'rejection'; atMs: number; peerId: string; reason: RejectReason; detail: string }
  | { type: 'event'; atMs: number; peerId: string | null; name: string; detail: string };

export interface RunLogData {
  format: typeof RUN_LOG_FORMAT;
  formatVersion: typeof RUN_LOG_FORMAT_VERSION;
  source: RunLogSource;
  createdAtMs: number;
  wireRunId: string;
  manifest: RunManifest | null;
  meta: RunLogMeta;
  records: RunLogRecord[];
}

/** A run log file (or a record appended to one) that breaks the format; the message names the place. */
export class RunLogFormatError extends Error {
  static override readonly name = 'RunLogFormatError';
  override readonly name = RunLogFormatError.name;
}

export const RUN_LOG_CSV_COLUMNS = [
  'atMs', 'peerId', 'timeMs', 'step', 'trainLoss', 'heldOutLoss', 'consensusDistance', 'merges', 'bytesSent', 'bytesReceived',
  'versionsAnnounced', 'versionsFetched', 'tokensPerSecond', 'backend', 'neighbours', 'rejections', 'health', 'healthReason',
  'epsilonSpent', 'privacyExhausted',
] as const;

export interface RunLogInit {
  source: RunLogSource;
  wireRunId: string;
  manifest?: RunManifest | null;
  createdAtMs?: number;
  meta?: RunLogMeta;
}

function fail(where: string, message: string): never {
  throw new RunLogFormatError(`run log ${where}: ${message}`);
}

function checkTime(value: unknown, where: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) fail(where, `must be a whole number of ms ≥ 0, got ${String(value).slice(0, 40)}`);
  return value;
}

function checkPeerId(value: unknown, where: string): string {
  if (typeof value !== 'string' || !PEER_ID_PATTERN.test(value)) fail(where, `'${String(value).slice(0, 40)}' is not a peer id`);
  return value;
}

function checkText(value: unknown, where: string): string {
  if (typeof value !== 'string' || value.length > MAX_TEXT) fail(where, `must be a string of at most ${MAX_TEXT} characters`);
  return value;
}

function checkCount(value: unknown, where: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) fail(where, `must be a whole number ≥ 0`);
  return value;
}

function checkMeta(value: unknown): RunLogMeta {
  if (!isPlainObject(value)) fail('meta', 'must be an object');
  const entries = Object.entries(value);
  if (entries.length > MAX_META_ENTRIES) fail('meta', `has more than ${MAX_META_ENTRIES} entries`);
  const meta: RunLogMeta = {};
  for (const [key, v] of entries) {
    if (!META_KEY_PATTERN.test(key)) fail('meta', `key '${key.slice(0, 40)}' does not match ${META_KEY_PATTERN}`);
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) fail(`meta.${key}`, 'must be finite');
    } else if (typeof v === 'string') {
      checkText(v, `meta.${key}`);
    } else if (typeof v !== 'boolean') {
      fail(`meta.${key}`, 'must be a string, number or boolean');
    }
    meta[key] = v;
  }
  return meta;
}

function checkKeys(obj: Record<string, unknown>, keys: readonly string[], where: string): void {
  for (const key of keys) if (!Object.prototype.hasOwnProperty.call(obj, key)) fail(where, `missing field '${key}'`);
  for (const key of Object.keys(obj)) if (!keys.includes(key)) fail(where, `unknown field '${key.slice(0, 40)}'`);
}

/** Checks one record (from a file, or before appending); returns a fresh copy. */
export function checkRecord(value: unknown, wireRunId: string, where = 'record'): RunLogRecord {
  if (!isPlainObject(value)) fail(where, 'must be an object');
  const atMs = checkTime(value.atMs, `${where}.atMs`);
  switch (value.type) {
    case 'report': {
      checkKeys(value, ['type', 'atMs', 'report'], where);
      const verdict = telemetryFromObject(value.report);
      if (!verdict.ok) fail(`${where}.report`, `${verdict.reason}: ${verdict.detail}`);
      if (verdict.value.runId !== wireRunId) fail(`${where}.report.runId`, `'${verdict.value.runId}' is not the log's run '${wireRunId}'`);
      return { type: 'report', atMs, report: verdict.value };
    }
    case 'joined':
      checkKeys(value, ['type', 'atMs', 'peerId'], where);
      return { type: 'joined', atMs, peerId: checkPeerId(value.peerId, `${where}.peerId`) };
    case 'left':
      checkKeys(value, ['type', 'atMs', 'peerId', 'detail'], where);
      return { type: 'left', atMs, peerId: checkPeerId(value.peerId, `${where}.peerId`), detail: checkText(value.detail, `${where}.detail`) };
    case 'merge':
      checkKeys(value, ['type', 'atMs', 'peerId', 'step', 'merges'], where);
      return {
        type: 'merge', atMs, peerId: checkPeerId(value.peerId, `${where}.peerId`),
        step: checkCount(value.step, `${where}.step`), merges: checkCount(value.merges, `${where}.merges`),
      };
    case 'rejection': {
      checkKeys(value, ['type', 'atMs', 'peerId', 'reason', 'detail'], where);
      if (!isRejectReason(value.reason)) fail(`${where}.reason`, `'${String(value.reason).slice(0, 40)}' is not a rejection reason`);
      return { type: 'rejection', atMs, peerId: checkPeerId(value.peerId, `${where}.peerId`), reason: value.reason, detail: checkText(value.detail, `${where}.detail`) };
    }
    case 'event': {
      checkKeys(value, ['type', 'atMs', 'peerId', 'name', 'detail'], where);
      const name = value.name;
      if (typeof name !== 'string' || !EVENT_NAME_PATTERN.test(name)) fail(`${where}.name`, `must match ${EVENT_NAME_PATTERN}`);
      return {
        type: 'event', atMs, peerId: value.peerId === null ? null : checkPeerId(value.peerId, `${where}.peerId`),
        name, detail: checkText(value.detail, `${where}.detail`),
      };
    }
    default:
      fail(`${where}.type`, `unknown record type '${String(value.type).slice(0, 40)}'`);
  }
}

/** The run log an observer builds as it goes, with the events it derives from reports. */
export class RunLog {
  readonly source: RunLogSource;
  readonly wireRunId: string;
  readonly createdAtMs: number;
  manifest: RunManifest | null;
  readonly meta: RunLogMeta;
  private readonly list: RunLogRecord[] = [];
  /** Latest report per peer, and whether the peer is currently counted as present. */
  private readonly latest = new Map<string, TelemetryReport>();
  private readonly present = new Set<string>();

  constructor(init: RunLogInit) {
    if (!RUN_ID_PATTERN.test(init.wireRunId)) fail('wireRunId', `'${init.wireRunId.slice(0, 40)}' is not a run id`);
    this.source = init.source;
    this.wireRunId = init.wireRunId;
    this.createdAtMs = checkTime(init.createdAtMs ?? Date.now(), 'createdAtMs');
    this.manifest = null;
    this.meta = checkMeta(init.meta ?? {});
    if (init.manifest) this.setManifest(init.manifest);
  }

  /** The run's manifest once known; it must be the manifest of this log's wire run id. */
  setManifest(manifest: RunManifest): void {
    const verdict = decodeRunManifest(manifest);
    if (!verdict.ok) fail('manifest', `${verdict.reason}: ${verdict.detail}`);
    const id = wireRunIdOf(verdict.value);
    if (id !== this.wireRunId) fail('manifest', `belongs to run '${id}', not '${this.wireRunId}'`);
    this.manifest = verdict.value;
  }

  get records(): readonly RunLogRecord[] {
    return this.list;
  }

  /** Appends a checked record. Records arrive in time order; one stamped earlier than the last is stamped with the last's time. */
  append(record: RunLogRecord): RunLogRecord {
    if (this.list.length >= MAX_RUN_LOG_RECORDS) fail('records', `holds ${MAX_RUN_LOG_RECORDS} records already`);
    const checked = checkRecord(record, this.wireRunId);
    const last = this.list.at(-1);
    if (last && checked.atMs < last.atMs) checked.atMs = last.atMs;
    this.list.push(checked);
    if (checked.type === 'report') {
      this.latest.set(checked.report.peerId, checked.report);
      this.present.add(checked.report.peerId);
    } else if (checked.type === 'joined') {
      this.present.add(checked.peerId);
    } else if (checked.type === 'left') {
      this.present.delete(checked.peerId);
    }
    return checked;
  }

  /**
   * Records an accepted report, preceded by 'joined' when the peer is new (or back after 'left') and followed by
   * 'merge' when its merge counter went up since its previous report.
   */
  addReport(report: TelemetryReport, atMs: number): void {
    const previous = this.latest.get(report.peerId);
    if (!this.present.has(report.peerId)) this.append({ type: 'joined', atMs, peerId: report.peerId });
    this.append({ type: 'report', atMs, report });
    if (previous && report.merges > previous.merges) this.append({ type: 'merge', atMs, peerId: report.peerId, step: report.step, merges: report.merges });
  }

  addRejection(peerId: string, reason: RejectReason, detail: string, atMs: number): void {
    this.append({ type: 'rejection', atMs, peerId, reason, detail: detail.slice(0, MAX_TEXT) });
  }

  addEvent(name: string, detail: string, atMs: number, peerId: string | null = null): void {
    this.append({ type: 'event', atMs, peerId, name, detail: detail.slice(0, MAX_TEXT) });
  }

  markLeft(peerId: string, detail: string, atMs: number): void {
    if (this.present.has(peerId)) this.append({ type: 'left', atMs, peerId, detail: detail.slice(0, MAX_TEXT) });
  }

  /** Marks as left every present peer whose latest report is older than silenceMs; returns their ids. */
  expireSilent(nowMs: number, silenceMs: number): string[] {
    const gone: string[] = [];
    for (const peerId of [...this.present]) {
      const atMs = this.lastHeardMs(peerId);
      if (atMs !== null && nowMs - atMs > silenceMs) {
        this.markLeft(peerId, `no report for ${Math.round((nowMs - atMs) / 1000)} s`, nowMs);
        gone.push(peerId);
      }
    }
    return gone;
  }

  presentPeers(): string[] {
    return [...this.present].sort();
  }

  latestReports(): Map<string, TelemetryReport> {
    return new Map(this.latest);
  }

  private lastHeardMs(peerId: string): number | null {
    for (let i = this.list.length - 1; i >= 0; i--) {
      const r = this.list[i];
      if (r.type === 'report' && r.report.peerId === peerId) return r.atMs;
    }
    return null;
  }

  toData(): RunLogData {
    return {
      format: RUN_LOG_FORMAT,
      formatVersion: RUN_LOG_FORMAT_VERSION,
      source: this.source,
      createdAtMs: this.createdAtMs,
      wireRunId: this.wireRunId,
      manifest: this.manifest,
      meta: { ...this.meta },
      records: this.list.map((r) => structuredCloneRecord(r)),
    };
  }

  toJson(): string {
    return runLogToJson(this.toData());
  }

  toCsv(): string {
    return runLogToCsv(this.toData());
  }
}

function structuredCloneRecord(r: RunLogRecord): RunLogRecord {
  if (r.type !== 'report') return { ...r };
  return { ...r, report: { ...r.report, neighbours: [...r.report.neighbours], rejections: { ...r.report.rejections } } };
}

/** Pretty enough to diff (one record per line), still plain JSON. */
export function runLogToJson(data: RunLogData): string {
  const head = { ...data, records: undefined };
  const headJson = JSON.stringify(head).slice(0, -1);
  const lines = data.records.map((r) => JSON.stringify(r));
  return `${headJson},"records":[\n${lines.join(',\n')}\n]}\n`;
}

function cell(value: number | string | null | undefined): string {
  return value === null || value === undefined ? '' : String(value);
}

export function runLogToCsv(data: RunLogData): string {
  const rows: string[] = [RUN_LOG_CSV_COLUMNS.join(',')];
  for (const r of data.records) {
    if (r.type !== 'report') continue;
    const t = r.report;
    const rejections = (Object.entries(t.rejections) as [RejectReason, number][])
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([reason, n]) => `${reason}=${n}`)
      .join(';');
    rows.push([
      r.atMs, t.peerId, t.timeMs, t.step, cell(t.trainLoss), cell(t.heldOutLoss), cell(t.consensusDistance), t.merges, t.bytesSent,
      t.bytesReceived, t.versionsAnnounced, t.versionsFetched, cell(t.tokensPerSecond), t.backend, t.neighbours.join(';'), rejections,
      cell(t.health), t.healthReason === undefined ? '' : encodeURIComponent(t.healthReason),
      cell(t.epsilonSpent), t.privacyExhausted === undefined ? '' : String(t.privacyExhausted),
    ].join(','));
  }
  return `${rows.join('\n')}\n`;
}

/** Parses a run log file strictly: every field typed, every report a valid telemetry report of the log's run, time order kept. */
export function runLogFromJson(text: string): RunLogData {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    fail('file', `is not JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (!isPlainObject(parsed)) fail('file', 'is not a JSON object');
  checkKeys(parsed, ['format', 'formatVersion', 'source', 'createdAtMs', 'wireRunId', 'manifest', 'meta', 'records'], 'file');
  if (parsed.format !== RUN_LOG_FORMAT) fail('format', `must be '${RUN_LOG_FORMAT}'`);
  if (parsed.formatVersion !== RUN_LOG_FORMAT_VERSION) fail('formatVersion', `${String(parsed.formatVersion).slice(0, 20)}; this build reads ${RUN_LOG_FORMAT_VERSION}`);
  if (parsed.source !== 'live' && parsed.source !== 'simulation') fail('source', "must be 'live' or 'simulation'");
  const wireRunId = parsed.wireRunId;
  if (typeof wireRunId !== 'string' || !RUN_ID_PATTERN.test(wireRunId)) fail('wireRunId', 'is not a run id');
  const log = new RunLog({
    source: parsed.source,
    wireRunId,
    createdAtMs: checkTime(parsed.createdAtMs, 'createdAtMs'),
    meta: checkMeta(parsed.meta),
  });
  if (parsed.manifest !== null) {
    const verdict = decodeRunManifest(parsed.manifest as object);
    if (!verdict.ok) fail('manifest', `${verdict.reason}: ${verdict.detail}`);
    log.setManifest(verdict.value);
  }
  const records = parsed.records;
  if (!Array.isArray(records)) fail('records', 'must be an array');
  if (records.length > MAX_RUN_LOG_RECORDS) fail('records', `holds more than ${MAX_RUN_LOG_RECORDS} records`);
  let lastAt = 0;
  records.forEach((value, i) => {
    const record = checkRecord(value, wireRunId, `records[${i}]`);
    if (record.atMs < lastAt) fail(`records[${i}].atMs`, `${record.atMs} is earlier than the record before (${lastAt})`);
    lastAt = record.atMs;
    log.append(record);
  });
  return log.toData();
}

/** Rebuilds a RunLog (to append to it) from parsed data. */
export function runLogFromData(data: RunLogData): RunLog {
  const log = new RunLog({ source: data.source, wireRunId: data.wireRunId, createdAtMs: data.createdAtMs, manifest: data.manifest, meta: data.meta });
  for (const r of data.records) log.append(r);
  return log;
}

/** One CSV row read back (the reports of a CSV export; events are only in the JSON). */
export interface RunLogCsvRow {
  atMs: number;
  report: TelemetryReport;
}

/** Reads a CSV written by runLogToCsv back into reports of the given run, checking every cell. */
export function runLogCsvRows(csv: string, wireRunId: string): RunLogCsvRow[] {
  const lines = csv.split('\n').filter((l, i, all) => !(i === all.length - 1 && l === ''));
  if (lines[0] !== RUN_LOG_CSV_COLUMNS.join(',')) fail('csv', `the header must be ${RUN_LOG_CSV_COLUMNS.join(',')}`);
  return lines.slice(1).map((line, i) => {
    const where = `csv row ${i + 1}`;
    const cells = line.split(',');
    if (cells.length !== RUN_LOG_CSV_COLUMNS.length) fail(where, `has ${cells.length} cells, not ${RUN_LOG_CSV_COLUMNS.length}`);
    const c = Object.fromEntries(RUN_LOG_CSV_COLUMNS.map((name, k) => [name, cells[k]])) as Record<(typeof RUN_LOG_CSV_COLUMNS)[number], string>;
    const num = (name: keyof typeof c): number => {
      const v = Number(c[name]);
      if (c[name] === '' || !Number.isFinite(v)) fail(`${where}.${name}`, `'${c[name].slice(0, 40)}' is not a number`);
      return v;
    };
    const nullable = (name: keyof typeof c): number | null => (c[name] === '' ? null : num(name));
    const rejections: Record<string, number> = {};
    for (const part of c.rejections === '' ? [] : c.rejections.split(';')) {
      const [reason, n] = part.split('=');
      rejections[reason] = Number(n);
    }
    const report: Record<string, unknown> = {
      formatVersion: TELEMETRY_FORMAT_VERSION,
      peerId: c.peerId,
      runId: wireRunId,
      timeMs: num('timeMs'),
      step: num('step'),
      trainLoss: nullable('trainLoss'),
      heldOutLoss: nullable('heldOutLoss'),
      merges: num('merges'),
      bytesSent: num('bytesSent'),
      bytesReceived: num('bytesReceived'),
      versionsAnnounced: num('versionsAnnounced'),
      versionsFetched: num('versionsFetched'),
      neighbours: c.neighbours === '' ? [] : c.neighbours.split(';'),
      rejections,
      tokensPerSecond: nullable('tokensPerSecond'),
      backend: BACKEND_PATTERN.test(c.backend) ? c.backend : fail(`${where}.backend`, 'is not a backend name'),
    };
    if (c.consensusDistance !== '') report.consensusDistance = num('consensusDistance');
    if (c.health !== '') report.health = c.health;
    if (c.healthReason !== '') {
      try {
        report.healthReason = decodeURIComponent(c.healthReason);
      } catch {
        fail(`${where}.healthReason`, 'is not percent-encoded text');
      }
    }
    if (c.epsilonSpent !== '') report.epsilonSpent = num('epsilonSpent');
    if (c.privacyExhausted !== '') {
      if (c.privacyExhausted !== 'true' && c.privacyExhausted !== 'false') fail(`${where}.privacyExhausted`, "must be 'true' or 'false'");
      report.privacyExhausted = c.privacyExhausted === 'true';
    }
    const verdict = telemetryFromObject(report);
    if (!verdict.ok) fail(where, `${verdict.reason}: ${verdict.detail}`);
    return { atMs: checkTime(num('atMs'), `${where}.atMs`), report: verdict.value };
  });
}

// ─── Derived series (for charts and for comparing runs) ─────────────────────────────────────────────────────────

export type ReportMetric = 'trainLoss' | 'heldOutLoss' | 'consensusDistance' | 'bytesSent' | 'bytesReceived' | 'tokensPerSecond' | 'step' | 'epsilonSpent';

export interface Series {
  /** Times in ms (the peer's own report clock, timeMs). */
  t: number[];
  v: Array<number | null>;
}

function metricOf(report: TelemetryReport, metric: ReportMetric): number | null {
  const v = report[metric];
  return v === undefined ? null : v;
}

function reportsOf(records: readonly RunLogRecord[]): TelemetryReport[] {
  const out: TelemetryReport[] = [];
  for (const r of records) if (r.type === 'report') out.push(r.report);
  return out;
}

/** Per peer, the metric at each of its reports, in report order. */
export function perPeerSeries(records: readonly RunLogRecord[], metric: ReportMetric): Map<string, Series> {
  const series = new Map<string, Series>();
  for (const report of reportsOf(records)) {
    let s = series.get(report.peerId);
    if (!s) series.set(report.peerId, (s = { t: [], v: [] }));
    s.t.push(report.timeMs);
    s.v.push(metricOf(report, metric));
  }
  return series;
}

/**
 * The swarm's mean of a metric over time: at each report, the mean over present peers of each one's latest
 * non-null value. A peer stops counting when it leaves.
 */
export function swarmMeanSeries(records: readonly RunLogRecord[], metric: ReportMetric): Series {
  const latest = new Map<string, number>();
  const out: Series = { t: [], v: [] };
  for (const r of records) {
    if (r.type === 'left') latest.delete(r.peerId);
    if (r.type !== 'report') continue;
    const v = metricOf(r.report, metric);
    if (v !== null) latest.set(r.report.peerId, v);
    if (latest.size === 0) continue;
    let sum = 0;
    for (const x of latest.values()) sum += x;
    out.t.push(r.report.timeMs);
    out.v.push(sum / latest.size);
  }
  return out;
}

export interface TrafficTotals {
  perPeer: Map<string, { bytesSent: number; bytesReceived: number; versionsAnnounced: number; versionsFetched: number }>;
  bytesSent: number;
  bytesReceived: number;
  versionsAnnounced: number;
  versionsFetched: number;
}

/** Each peer's counters from its latest report (counters only grow), and their sums. */
export function trafficTotals(records: readonly RunLogRecord[]): TrafficTotals {
  const perPeer: TrafficTotals['perPeer'] = new Map();
  for (const t of reportsOf(records)) {
    perPeer.set(t.peerId, { bytesSent: t.bytesSent, bytesReceived: t.bytesReceived, versionsAnnounced: t.versionsAnnounced, versionsFetched: t.versionsFetched });
  }
  const totals = { bytesSent: 0, bytesReceived: 0, versionsAnnounced: 0, versionsFetched: 0 };
  for (const p of perPeer.values()) {
    totals.bytesSent += p.bytesSent;
    totals.bytesReceived += p.bytesReceived;
    totals.versionsAnnounced += p.versionsAnnounced;
    totals.versionsFetched += p.versionsFetched;
  }
  return { perPeer, ...totals };
}

/** Rejections the observer recorded, by reason and by sending peer. */
export function rejectionCounts(records: readonly RunLogRecord[]): { byReason: Partial<Record<RejectReason, number>>; byPeer: Map<string, number>; total: number } {
  const byReason: Partial<Record<RejectReason, number>> = {};
  const byPeer = new Map<string, number>();
  let total = 0;
  for (const r of records) {
    if (r.type !== 'rejection') continue;
    byReason[r.reason] = (byReason[r.reason] ?? 0) + 1;
    byPeer.set(r.peerId, (byPeer.get(r.peerId) ?? 0) + 1);
    total++;
  }
  return { byReason, byPeer, total };
}

/** Undirected direct connections from each present peer's latest report (a pair appears once, ids sorted). */
export function latestEdges(records: readonly RunLogRecord[]): Array<[string, string]> {
  const latest = new Map<string, TelemetryReport>();
  for (const r of records) {
    if (r.type === 'report') latest.set(r.report.peerId, r.report);
    else if (r.type === 'left') latest.delete(r.peerId);
  }
  const edges = new Set<string>();
  for (const report of latest.values()) {
    for (const n of report.neighbours) edges.add(report.peerId < n ? `${report.peerId} ${n}` : `${n} ${report.peerId}`);
  }
  return [...edges].sort().map((e) => e.split(' ') as [string, string]);
}
