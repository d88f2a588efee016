/** `swarm report` end to end: real run logs written to a temp folder, main() called directly, outputs read back. */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { defaultRunManifest, wireRunId } from '../core/swarm/run.ts';
import { RunLog, runLogFromJson } from '../core/swarm/run-log.ts';
import { telemetryReport } from '../core/swarm/telemetry.ts';
import { SIM_EVENTS, type HeldOutDetail, type TabPeerDetail } from './simulate/metrics.ts';
import { useCommandSandbox } from './command-sandbox.ts';
import { main } from './report.ts';

let dir: string;
let stdout: string[];
let stderr: string[];
const sandbox = useCommandSandbox('swarm-report-');
beforeEach(() => ({ dir, stdout, stderr } = sandbox));

const T0 = 1_700_000_000_000;
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

interface ReportSpec {
  peer: string;
  atS: number;
  step: number;
  heldOut: number | null;
  merges: number;
  sent: number;
  received: number;
}

function addReport(log: RunLog, runId: string, r: ReportSpec, t0: number): void {
  log.addReport(
    telemetryReport({
      peerId: r.peer, runId, timeMs: t0 + r.atS * 1000, step: r.step, trainLoss: 3, heldOutLoss: r.heldOut, merges: r.merges,
      bytesSent: r.sent, bytesReceived: r.received, versionsAnnounced: 1, versionsFetched: 1, neighbours: [], rejections: {},
      tokensPerSecond: null, backend: 'wasm',
    }),
    t0 + r.atS * 1000,
  );
}

// A live run as a dashboard sees it: telemetry only, no simulator events, no settings in meta; peer C joins late.
const LIVE_MANIFEST = defaultRunManifest('ab'.repeat(32));
const LIVE_RUN = wireRunId(LIVE_MANIFEST);
const LIVE: ReportSpec[] = [
  { peer: 'peerAaaaaaaa', atS: 1, step: 0, heldOut: 2.5, merges: 0, sent: 0, received: 0 },
  { peer: 'peerBbbbbbbb', atS: 1, step: 0, heldOut: 2.6, merges: 0, sent: 0, received: 0 },
  { peer: 'peerAaaaaaaa', atS: 11, step: 10, heldOut: 2.5, merges: 1, sent: 400, received: 300 },
  { peer: 'peerBbbbbbbb', atS: 12, step: 8, heldOut: 2.4, merges: 1, sent: 200, received: 100 },
  { peer: 'peerCcccccccc', atS: 15, step: 5, heldOut: null, merges: 0, sent: 10, received: 20 },
  { peer: 'peerAaaaaaaa', atS: 21, step: 20, heldOut: 2.2, merges: 2, sent: 1000, received: 2000 },
  { peer: 'peerBbbbbbbb', atS: 22, step: 18, heldOut: 2.3, merges: 3, sent: 500, received: 700 },
  { peer: 'peerCcccccccc', atS: 25, step: 12, heldOut: 2.45, merges: 1, sent: 90, received: 60 },
];

function liveLog(): RunLog {
  const log = new RunLog({ source: 'live', wireRunId: LIVE_RUN, manifest: LIVE_MANIFEST, createdAtMs: T0 - 600_000, meta: { observer: 'dashboard' } });
  for (const r of LIVE) addReport(log, LIVE_RUN, r, T0);
  log.addRejection('peerDdddddddd', 'malformed', 'junk', T0 + 26_000);
  log.markLeft('peerBbbbbbbb', 'no report for 30 s', T0 + 52_000);
  return log;
}

// A simulation: two tabs, batch 4, all-genre evaluations at steps 0 and 10, telemetry with each tab's own-genre loss.
const SIM_RUN = 'sim-fedavg.0123456789abcdef';
const SIM_BATCH = 4;
const SIM_EVALS: Array<{ slot: number; step: number; allGenres: number; atS: number }> = [
  { slot: 0, step: 0, allGenres: 3.0, atS: 2 },
  { slot: 1, step: 0, allGenres: 3.0, atS: 2 },
  { slot: 0, step: 10, allGenres: 2.6, atS: 30 },
  { slot: 1, step: 10, allGenres: 2.8, atS: 34 },
];
const SIM_REPORTS: ReportSpec[] = [
  { peer: 'simtab0i1', atS: 3, step: 0, heldOut: 2.9, merges: 0, sent: 0, received: 0 },
  { peer: 'simtab1i1', atS: 3, step: 0, heldOut: 3.1, merges: 0, sent: 0, received: 0 },
  { peer: 'simtab0i1', atS: 35, step: 10, heldOut: 2.5, merges: 2, sent: 300, received: 500 },
  { peer: 'simtab1i1', atS: 35, step: 10, heldOut: 2.7, merges: 2, sent: 100, received: 300 },
];

function simLog(): RunLog {
  const log = new RunLog({
    source: 'simulation', wireRunId: SIM_RUN, createdAtMs: T0,
    meta: { 'sim.label': 'fedavg', 'sim.tabs': 2, 'sim.trainingTabs': 2, 'sim.batchSize': SIM_BATCH, 'sim.baseline': 'none', 'sim.steps': 10 },
  });
  log.addEvent(SIM_EVENTS.start, '2 tabs', T0);
  for (const slot of [0, 1]) {
    const d: TabPeerDetail = { slot, incarnation: 1, byzantine: false, genres: ['g'] };
    log.addEvent(SIM_EVENTS.tabPeer, JSON.stringify(d), T0 + 1000, `simtab${slot}i1`);
  }
  const timeline = [
    ...SIM_EVALS.map((e) => ({ atS: e.atS, add: () => {
      const d: HeldOutDetail = { slot: e.slot, step: e.step, own: e.allGenres - 0.1, allGenres: e.allGenres, byGenre: { g: e.allGenres }, timeMs: T0 + e.atS * 1000 };
      log.addEvent(SIM_EVENTS.heldOut, JSON.stringify(d), T0 + e.atS * 1000, `simtab${e.slot}i1`);
    } })),
    ...SIM_REPORTS.map((r) => ({ atS: r.atS, add: () => addReport(log, SIM_RUN, r, T0) })),
  ].sort((a, b) => a.atS - b.atS);
  for (const item of timeline) item.add();
  log.addEvent(SIM_EVENTS.end, 'done', T0 + 40_000);
  return log;
}

/** What each log says, worked out here from the specs above rather than by the code under test. */
function lastPerPeer(reports: ReportSpec[]): Map<string, ReportSpec> {
  const last = new Map<string, ReportSpec>();
  for (const r of reports) last.set(r.peer, r);
  return last;
}
function lastLossPerPeer(reports: ReportSpec[]): Map<string, { loss: number; step: number }> {
  const last = new Map<string, { loss: number; step: number }>();
  for (const r of reports) if (r.heldOut !== null) last.set(r.peer, { loss: r.heldOut, step: r.step });
  return last;
}

function writeLogs(): { live: string; sim: string } {
  const live = join(dir, `run-log-${LIVE_RUN}.json`);
  writeFileSync(live, liveLog().toJson());
  mkdirSync(join(dir, 'sim', 'runs', 'fedavg'), { recursive: true });
  const sim = join(dir, 'sim', 'runs', 'fedavg', 'run-log.json');
  writeFileSync(sim, simLog().toJson());
  return { live, sim };
}

/** The markdown table as rows of cells keyed by the header's column names. */
function tableRows(md: string): Array<Record<string, string>> {
  const lines = md.split('\n').filter((l) => l.startsWith('| '));
  const cells = (l: string) => l.slice(2, -2).split(' | ');
  const head = cells(lines[0]);
  return lines.slice(1).map((l) => Object.fromEntries(cells(l).map((c, i) => [head[i], c])));
}

describe('swarm report', () => {
  it('compares a live log with a simulation log: telemetry for the live run, evaluations for the simulation', async () => {
    const { live, sim } = writeLogs();
    const out = join(dir, 'out');
    expect(await main([live, sim, '--out', out])).toBe(0);

    // The live run: each peer's last reported own-genre loss (C's first report had none, B left but counts).
    const liveLast = lastLossPerPeer(LIVE);
    const liveOwnFinal = mean([...liveLast.values()].map((v) => v.loss));
    const livePeers = lastPerPeer(LIVE);
    const liveBytes = mean([...livePeers.values()].map((r) => r.sent + r.received));
    const liveMerges = [...livePeers.values()].reduce((n, r) => n + r.merges, 0);
    // The simulation: mean over tabs of their last all-genre evaluation; the default target is the worst final.
    const simFinal = mean([0, 1].map((slot) => SIM_EVALS.filter((e) => e.slot === slot).at(-1)!.allGenres));
    const simOwnFinal = mean([...lastLossPerPeer(SIM_REPORTS).values()].map((v) => v.loss));

    const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
    expect(summary.target).toBeCloseTo(simFinal, 9);
    const [l, s] = summary.runs;
    expect(l.label).toBe(LIVE_RUN);
    expect(l.source).toBe('live');
    expect(l.evaluated).toBe(false);
    expect(l.finalLoss).toBeNull();
    expect(l.ownGenre.finalLoss).toBeCloseTo(liveOwnFinal, 9);
    expect(l.ownGenre.baseLoss).toBeCloseTo(mean(LIVE.filter((r) => r.step === 0 && r.heldOut !== null).map((r) => r.heldOut!)), 9);
    expect(l.ownGenre.peers).toBe(liveLast.size);
    // The batch comes from the manifest when no simulator wrote it; samples = Σ each peer's latest step × batch.
    const batch = LIVE_MANIFEST.schedule.batchSize as number;
    expect(l.batchSize).toBe(batch);
    const lastPoint = l.ownGenre.curve.at(-1);
    expect(lastPoint.samples).toBe([...livePeers.values()].reduce((n, r) => n + r.step * batch, 0));
    expect(lastPoint.meanLoss).toBeCloseTo(liveOwnFinal, 9);
    expect(lastPoint.timeS).toBe(LIVE.at(-1)!.atS - LIVE[0].atS);
    expect(l.bytesPerPeer).toBeCloseTo(liveBytes, 9);
    expect(l.merges).toBe(liveMerges);
    expect(l.tabs).toBe(livePeers.size);
    expect(l.missing.join(' ')).toMatch(/all-genre evaluations/);
    expect(s.label).toBe('fedavg');
    expect(s.evaluated).toBe(true);
    expect(s.finalLoss).toBeCloseTo(simFinal, 9);
    expect(s.ownGenre.finalLoss).toBeCloseTo(simOwnFinal, 9);
    expect(s.missing).toEqual([]);

    const md = readFileSync(join(out, 'comparison.md'), 'utf8');
    const rows = tableRows(md);
    expect(rows.map((r) => r.run)).toEqual([LIVE_RUN, 'fedavg']);
    expect(rows[0]['final held-out (all genres)']).toBe('not in log');
    expect(rows[0]['time to target']).toBe('not in log');
    expect(rows[0]['final held-out (own genre, telemetry)']).toBe(liveOwnFinal.toFixed(4));
    expect(rows[1]['final held-out (all genres)']).toBe(simFinal.toFixed(4));
    expect(rows[1]['final held-out (own genre, telemetry)']).toBe(simOwnFinal.toFixed(4));
    expect(md).toMatch(new RegExp(`${LIVE_RUN.replace('.', '\\.')} \\(live\\): not in its log: all-genre evaluations`));
    expect(stdout.join('\n')).toContain(md.trim());

    const html = readFileSync(join(out, 'report.html'), 'utf8');
    expect(html).toContain('<svg');
    expect(html).not.toMatch(/(src|href)="https?:/);
    expect(html).toContain('Mean held-out loss (own genre, telemetry)');
    const liveReport = readFileSync(join(out, 'runs', LIVE_RUN, 'report.html'), 'utf8');
    expect(liveReport).toContain(`<h1>Live run: ${LIVE_RUN}</h1>`);
    expect(liveReport).toContain(`→ ${liveOwnFinal.toFixed(4)}`);
    expect(readFileSync(join(out, 'runs', 'fedavg', 'report.html'), 'utf8')).toContain(`<h1>Simulation: fedavg</h1>`);
    // Each run's log is copied beside its report, so the folder can be compared again on its own.
    expect(runLogFromJson(readFileSync(join(out, 'runs', LIVE_RUN, 'run-log.json'), 'utf8'))).toEqual(liveLog().toData());
    expect(existsSync(join(out, 'curves-samples.svg'))).toBe(true);
  });

  it('takes labels and a target loss from the command line', async () => {
    const { live, sim } = writeLogs();
    const out = join(dir, 'out');
    const target = 2.75;
    expect(await main([live, sim, '--labels', 'browser tabs,sim', '--target-loss', String(target), '--out', out])).toBe(0);
    // First evaluated step whose mean over both tabs is at or below the target; its time is the later tab's.
    const steps = [...new Set(SIM_EVALS.map((e) => e.step))].filter((st) => st > 0);
    const reached = steps.find((st) => mean(SIM_EVALS.filter((e) => e.step === st).map((e) => e.allGenres)) <= target)!;
    const atS = Math.max(...SIM_EVALS.filter((e) => e.step === reached).map((e) => e.atS));
    const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
    expect(summary.target).toBe(target);
    expect(summary.runs[1].samplesToTarget).toBe(reached * SIM_BATCH * 2);
    expect(summary.runs[1].timeToTargetS).toBe(atS);
    const rows = tableRows(readFileSync(join(out, 'comparison.md'), 'utf8'));
    // A label becomes a folder name: the space is replaced, as simulate does.
    expect(rows.map((r) => r.run)).toEqual(['browser_tabs', 'sim']);
    expect(rows[1]['time to target']).toBe(`${atS} s`);
    expect(rows[1]['samples to target']).toBe(String(reached * SIM_BATCH * 2));
    expect(existsSync(join(out, 'runs', 'browser_tabs', 'report.html'))).toBe(true);
  });

  it('keeps the table simulate writes when every log is a simulation', async () => {
    const { sim } = writeLogs();
    const out = join(dir, 'out');
    expect(await main([sim, sim, '--out', out])).toBe(0);
    const md = readFileSync(join(out, 'comparison.md'), 'utf8');
    const rows = tableRows(md);
    expect(Object.keys(rows[0])).not.toContain('final held-out (own genre, telemetry)');
    // The same log twice gets two labels, so neither run's folder overwrites the other's.
    expect(rows.map((r) => r.run)).toEqual(['fedavg', 'fedavg-2']);
  });

  it('lists its options', async () => {
    expect(await main(['--help'])).toBe(0);
    for (const option of ['--labels', '--target-loss', '--out']) expect(stdout.join('\n')).toContain(option);
  });
});

describe('swarm report on bad input', () => {
  async function expectRefused(argv: string[], file: string | null, problem: RegExp): Promise<void> {
    const out = join(dir, 'out');
    expect(await main([...argv, '--out', out])).toBe(2);
    expect(stderr).toHaveLength(1);
    expect(stderr[0]).not.toContain('\n');
    expect(stderr[0]).toMatch(/^swarm report: /);
    if (file) expect(stderr[0]).toContain(file);
    expect(stderr[0]).toMatch(problem);
    expect(stdout).toEqual([]);
    expect(existsSync(out)).toBe(false);
  }

  it('a missing file', async () => {
    const file = join(dir, 'nope.json');
    await expectRefused([file], file, /no such file/);
  });

  it('a file that is not JSON', async () => {
    const file = join(dir, 'log.json');
    writeFileSync(file, '{"format": "swarm-run-log", ');
    await expectRefused([file], file, /is not JSON/);
  });

  it('another format version', async () => {
    const file = join(dir, 'log.json');
    writeFileSync(file, liveLog().toJson().replace('"formatVersion":1,', '"formatVersion":2,'));
    await expectRefused([file], file, /formatVersion: 2; this build reads 1/);
  });

  it('JSON that is not a run log', async () => {
    const file = join(dir, 'summary.json');
    writeFileSync(file, JSON.stringify({ command: 'swarm simulate', runs: [] }));
    await expectRefused([file], file, /is not a run log/);
  });

  it("the dashboard's CSV export", async () => {
    const file = join(dir, 'run-log.csv');
    writeFileSync(file, liveLog().toCsv());
    await expectRefused([file], file, /CSV export/);
  });

  it("the dashboard's CSV export of an earlier build (without the privacy columns)", async () => {
    const file = join(dir, 'old-run-log.csv');
    const csv = liveLog().toCsv();
    expect(csv).toContain(',epsilonSpent,privacyExhausted\n');
    writeFileSync(file, csv.replace(/,epsilonSpent,privacyExhausted\n/, '\n'));
    await expectRefused([file], file, /CSV export/);
  });

  it('a run log with a report of another run', async () => {
    const file = join(dir, 'log.json');
    writeFileSync(file, liveLog().toJson().replace(`"runId":"${LIVE_RUN}"`, '"runId":"other.0123456789abcdef"'));
    await expectRefused([file], file, /records\[\d+\]\.report\.runId/);
  });

  it('a bad log after a good one writes nothing', async () => {
    const { live } = writeLogs();
    const bad = join(dir, 'missing.json');
    await expectRefused([live, bad], bad, /no such file/);
  });

  it('labels that do not match the logs, and no log at all', async () => {
    const { live, sim } = writeLogs();
    await expectRefused([live, sim, '--labels', 'one'], null, /--labels has 1 label\(s\) for 2 run log\(s\)/);
    stderr.length = 0;
    await expectRefused([], null, /no run log given/);
    stderr.length = 0;
    await expectRefused([live, '--bogus'], null, /unknown option --bogus/);
  });

  it('ends the swarm process with exit code 2 and one line', () => {
    const file = join(dir, 'nope.json');
    const run = spawnSync(process.execPath, ['--import', 'tsx', 'cli/swarm.ts', 'report', file, '--out', join(dir, 'out')], { encoding: 'utf8' });
    expect(run.status).toBe(2);
    expect(run.stderr.trim().split('\n')).toEqual([`swarm report: ${file}: no such file`]);
    expect(existsSync(join(dir, 'out'))).toBe(false);
  });
});
