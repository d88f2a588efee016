import { describe, expect, it } from 'vitest';
import { defaultRunManifest, wireRunId } from './run.ts';
import {
  latestEdges,
  perPeerSeries,
  rejectionCounts,
  RUN_LOG_CSV_COLUMNS,
  runLogCsvRows,
  runLogFromData,
  runLogFromJson,
  RunLog,
  RunLogFormatError,
  swarmMeanSeries,
  trafficTotals,
} from './run-log.ts';
import { decodeTelemetry, encodeTelemetry, type TelemetryReport } from '../wire/telemetry.ts';
import { telemetryReport } from './telemetry.ts';

const SHA = 'a'.repeat(64);
const MANIFEST = defaultRunManifest(SHA);
const RUN = wireRunId(MANIFEST);
const P1 = '12D3KooWPeerOne1111';
const P2 = '12D3KooWPeerTwo2222';
const P3 = '12D3KooWPeerThree333';

function report(peerId: string, timeMs: number, patch: Partial<TelemetryReport> = {}): TelemetryReport {
  return {
    formatVersion: 1, peerId, runId: RUN, timeMs, step: 0, trainLoss: null, heldOutLoss: null, merges: 0, bytesSent: 0, bytesReceived: 0,
    versionsAnnounced: 0, versionsFetched: 0, neighbours: [], rejections: {}, tokensPerSecond: null, backend: 'wasm', ...patch,
  };
}

/** A hand-built run: two peers that see each other, a third that joins late and leaves, one merge, one rejection. */
function sampleLog(): RunLog {
  const log = new RunLog({ source: 'live', wireRunId: RUN, manifest: MANIFEST, createdAtMs: 1000, meta: { observer: P3, tabs: 4, headless: true } });
  log.addReport(report(P1, 1000, { step: 10, trainLoss: 3.5, neighbours: [P2], bytesSent: 100, bytesReceived: 50, backend: 'webgpu' }), 1010);
  log.addReport(report(P2, 1500, { step: 8, trainLoss: 3.25, heldOutLoss: 3.75, neighbours: [P1], bytesSent: 40, tokensPerSecond: 1234.5, epsilonSpent: 2.125, privacyExhausted: false }), 1510);
  log.addReport(report(P1, 3000, { step: 20, trainLoss: 3.0, merges: 1, neighbours: [P2], bytesSent: 300, bytesReceived: 150, consensusDistance: 0.125, rejections: { 'bad-hash': 2, malformed: 1 } }), 3010);
  log.addRejection(P3, 'malformed', 'telemetry is not JSON', 3100);
  log.addReport(report(P3, 3200, { step: 1, trainLoss: 4.5, health: 'unhealthy', healthReason: 'could not publish: 1e30, beyond fp16' }), 3210);
  log.markLeft(P3, 'killed', 4000);
  log.addEvent('relay-down', 'relay killed by the simulator', 4100);
  return log;
}

describe('run log', () => {
  it('derives joined, merge and left records from reports, in time order', () => {
    const types = sampleLog().records.map((r) => `${r.type}:${'peerId' in r ? r.peerId ?? '-' : r.report.peerId}`);
    expect(types).toEqual([
      `joined:${P1}`, `report:${P1}`, `joined:${P2}`, `report:${P2}`, `report:${P1}`, `merge:${P1}`,
      `rejection:${P3}`, `joined:${P3}`, `report:${P3}`, `left:${P3}`, 'event:-',
    ]);
    const merge = sampleLog().records.find((r) => r.type === 'merge');
    expect(merge).toEqual({ type: 'merge', atMs: 3010, peerId: P1, step: 20, merges: 1 });
  });

  it('round-trips through JSON exactly, and the reloaded log keeps appending', () => {
    const log = sampleLog();
    const data = runLogFromJson(log.toJson());
    expect(data).toEqual(log.toData());
    expect(data.manifest).toEqual(MANIFEST);
    const again = runLogFromData(data);
    again.addReport(report(P3, 5000, { step: 2 }), 5000);
    // P3 had left, so its return is a new 'joined'.
    expect(again.records.slice(-2).map((r) => r.type)).toEqual(['joined', 'report']);
  });

  it('writes one CSV row per report with the documented columns, and reads them back', () => {
    const csv = sampleLog().toCsv();
    const lines = csv.trimEnd().split('\n');
    expect(lines[0]).toBe('atMs,peerId,timeMs,step,trainLoss,heldOutLoss,consensusDistance,merges,bytesSent,bytesReceived,versionsAnnounced,versionsFetched,tokensPerSecond,backend,neighbours,rejections,health,healthReason,epsilonSpent,privacyExhausted');
    expect(lines).toHaveLength(5);
    expect(lines[2]).toBe(`1510,${P2},1500,8,3.25,3.75,,0,40,0,0,0,1234.5,wasm,${P1},,,,2.125,false`);
    expect(lines[3]).toBe(`3010,${P1},3000,20,3,,0.125,1,300,150,0,0,,wasm,${P2},bad-hash=2;malformed=1,,,,`);
    // A reason in words (commas included) stays one cell.
    expect(lines[4]).toBe(`3210,${P3},3200,1,4.5,,,0,0,0,0,0,,wasm,,,unhealthy,could%20not%20publish%3A%201e30%2C%20beyond%20fp16,,`);
    const rows = runLogCsvRows(csv, RUN);
    const expected = sampleLog().records.flatMap((r) => (r.type === 'report' ? [{ atMs: r.atMs, report: r.report }] : []));
    expect(rows).toEqual(expected);
    expect(RUN_LOG_CSV_COLUMNS).toHaveLength(20);
    expect(() => runLogCsvRows(csv.replace(',2.125,false', ',2.125,yes'), RUN)).toThrow(/privacyExhausted/);
  });

  it('refuses malformed logs with a RunLogFormatError that names the place', () => {
    const good = JSON.parse(sampleLog().toJson()) as Record<string, unknown> & { records: Array<Record<string, unknown>> };
    const bad = (mutate: (d: typeof good) => void): string => {
      const copy = structuredClone(good);
      mutate(copy);
      try {
        runLogFromJson(JSON.stringify(copy));
      } catch (error) {
        expect(error).toBeInstanceOf(RunLogFormatError);
        return (error as Error).message;
      }
      return 'accepted';
    };
    expect(bad(() => undefined)).toBe('accepted');
    expect(bad((d) => { d.format = 'other'; })).toMatch(/format/);
    expect(bad((d) => { d.formatVersion = 2; })).toMatch(/formatVersion/);
    expect(bad((d) => { d.extra = 1; })).toMatch(/unknown field 'extra'/);
    expect(bad((d) => { delete d.meta; })).toMatch(/missing field 'meta'/);
    expect(bad((d) => { d.source = 'guess'; })).toMatch(/source/);
    expect(bad((d) => { (d.records[1].report as Record<string, unknown>).trainLoss = -1; })).toMatch(/records\[1\]\.report.*trainLoss/);
    expect(bad((d) => { (d.records[1].report as Record<string, unknown>).runId = 'other-run'; })).toMatch(/records\[1\]\.report\.runId/);
    expect(bad((d) => { (d.records[1].report as Record<string, unknown>).surprise = true; })).toMatch(/unknown field 'surprise'/);
    expect(bad((d) => { d.records[2].atMs = 5; })).toMatch(/records\[2\]\.atMs.*earlier/);
    expect(bad((d) => { d.records[0].type = 'gossip'; })).toMatch(/unknown record type/);
    expect(bad((d) => { d.records[6].reason = 'because'; })).toMatch(/records\[6\]\.reason/);
    expect(bad((d) => { d.records[0].peerId = 'not a peer'; })).toMatch(/records\[0\]\.peerId/);
    expect(bad((d) => { (d.manifest as Record<string, unknown>).localSteps = 0; })).toMatch(/manifest/);
    // A valid manifest of another run.
    expect(bad((d) => { d.manifest = defaultRunManifest('b'.repeat(64)); })).toMatch(/belongs to run/);
    expect(bad((d) => { d.meta = { 'bad key': 1 }; })).toMatch(/meta/);
    expect(() => runLogFromJson('{"format": ')).toThrow(RunLogFormatError);
    expect(() => runLogFromJson('[]')).toThrow(RunLogFormatError);
  });

  it('refuses a CSV with a broken header, a wrong cell count or a bad value', () => {
    const csv = sampleLog().toCsv();
    expect(() => runLogCsvRows(csv.replace('atMs,', 'time,'), RUN)).toThrow(RunLogFormatError);
    expect(() => runLogCsvRows(csv.replace(',webgpu,', ',webgpu,x,'), RUN)).toThrow(/cells/);
    expect(csv).toContain(',webgpu,');
    expect(() => runLogCsvRows(csv.replace(',3.25,', ',abc,'), RUN)).toThrow(/trainLoss/);
    expect(() => runLogCsvRows(csv.replace('bad-hash=2', 'bad-hash=-2'), RUN)).toThrow(/malformed/);
  });

  it('derives per-peer series, the swarm mean, traffic, rejections and edges', () => {
    const records = sampleLog().records;
    const train = perPeerSeries(records, 'trainLoss');
    expect(train.get(P1)).toEqual({ t: [1000, 3000], v: [3.5, 3.0] });
    expect(train.get(P2)).toEqual({ t: [1500], v: [3.25] });
    // Mean of each present peer's latest value: {3.5}, {3.5, 3.25}, {3.0, 3.25}, {3.0, 3.25, 4.5}.
    expect(swarmMeanSeries(records, 'trainLoss')).toEqual({ t: [1000, 1500, 3000, 3200], v: [3.5, 3.375, 3.125, (3 + 3.25 + 4.5) / 3] });
    expect(perPeerSeries(records, 'consensusDistance').get(P1)?.v).toEqual([null, 0.125]);
    const traffic = trafficTotals(records);
    expect(traffic.bytesSent).toBe(300 + 40 + 0);
    expect(traffic.bytesReceived).toBe(150);
    expect(traffic.perPeer.get(P1)?.bytesSent).toBe(300);
    expect(rejectionCounts(records)).toEqual({ byReason: { malformed: 1 }, byPeer: new Map([[P3, 1]]), total: 1 });
    expect(latestEdges(records)).toEqual([[P1, P2].sort() as [string, string]]);
  });

  it('marks peers silent for longer than the limit as left, once', () => {
    const log = sampleLog();
    log.addReport(report(P2, 9000, { trainLoss: 3 }), 9000);
    expect(log.expireSilent(20_000, 15_000)).toEqual([P1]);
    expect(log.expireSilent(30_000, 15_000)).toEqual([P2]);
    expect(log.presentPeers()).toEqual([]);
    expect(log.records.filter((r) => r.type === 'left')).toHaveLength(3);
  });
});

describe('telemetry epsilonSpent and privacyExhausted (optional fields of DP runs)', () => {
  const base = report(P1, 1000, { trainLoss: 3 });
  const reasonOf = (patch: Record<string, unknown>) => {
    const v = decodeTelemetry(new TextEncoder().encode(JSON.stringify({ ...base, ...patch })));
    return v.ok ? 'accepted' : `${v.reason}: ${v.detail}`;
  };

  it('round-trips when present, and is checked strictly', () => {
    const dp = { ...base, epsilonSpent: 2.5, privacyExhausted: true };
    expect(decodeTelemetry(encodeTelemetry(dp))).toEqual({ ok: true, value: dp });
    expect(reasonOf({ epsilonSpent: 0 })).toBe('accepted');
    expect(reasonOf({ epsilonSpent: -1 })).toMatch(/^malformed/);
    expect(reasonOf({ epsilonSpent: 1e5 })).toMatch(/^malformed/);
    expect(reasonOf({ epsilonSpent: '2' })).toMatch(/^malformed/);
    expect(reasonOf({ epsilonSpent: 1, privacyExhausted: 'yes' })).toMatch(/privacyExhausted must be true or false/);
    expect(reasonOf({ privacyExhausted: false })).toMatch(/privacyExhausted belongs to a report with epsilonSpent only/);
  });

  it('a DP peer reports ε and not its training loss (measured on private records); a peer without DP reports no ε', () => {
    const snapshot = {
      peerId: P1, runId: RUN, timeMs: 5, step: 3, trainLoss: 2.5, heldOutLoss: 2.75, merges: 0, bytesSent: 0, bytesReceived: 0,
      versionsAnnounced: 0, versionsFetched: 0, neighbours: [], rejections: {}, tokensPerSecond: null, backend: 'wasm',
    };
    const dp = telemetryReport({ ...snapshot, privacy: { epsilonSpent: 1.25, exhausted: false } });
    expect(dp).toMatchObject({ trainLoss: null, heldOutLoss: 2.75, epsilonSpent: 1.25, privacyExhausted: false });
    const plain = telemetryReport({ ...snapshot, privacy: null });
    expect(plain.trainLoss).toBe(2.5);
    expect('epsilonSpent' in plain || 'privacyExhausted' in plain).toBe(false);
  });
});

describe('telemetry consensusDistance (optional field)', () => {
  const base = report(P1, 1000, { trainLoss: 3 });

  it('is absent from old-style reports, which still decode unchanged', () => {
    const bytes = new TextEncoder().encode(JSON.stringify(base));
    const v = decodeTelemetry(bytes);
    expect(v.ok && v.value).toEqual(base);
    expect(v.ok && 'consensusDistance' in v.value).toBe(false);
  });

  it('round-trips when present, and is checked strictly', () => {
    const withDistance = { ...base, consensusDistance: 0.75 };
    expect(decodeTelemetry(encodeTelemetry(withDistance))).toEqual({ ok: true, value: withDistance });
    const reasonOf = (value: unknown) => {
      const v = decodeTelemetry(new TextEncoder().encode(JSON.stringify({ ...base, consensusDistance: value })));
      return v.ok ? 'accepted' : v.reason;
    };
    expect(reasonOf(-0.5)).toBe('malformed');
    expect(reasonOf('0.5')).toBe('malformed');
    expect(reasonOf(null)).toBe('malformed');
    // JSON.stringify cannot write Infinity, but a peer can send a literal that parses to it.
    const huge = new TextEncoder().encode(`${JSON.stringify(base).slice(0, -1)},"consensusDistance":1e400}`);
    expect(decodeTelemetry(huge)).toMatchObject({ ok: false, reason: 'non-finite' });
  });
});
