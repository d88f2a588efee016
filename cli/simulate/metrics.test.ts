import { describe, expect, it } from 'vitest';
import { RunLog, runLogFromJson } from '../../core/swarm/run-log.ts';
import { telemetryReport } from '../../core/swarm/telemetry.ts';
import { defaultTarget, SIM_EVENTS, summarizeRun, type HeldOutDetail, type TabPeerDetail } from './metrics.ts';
import { comparisonMarkdown, runReportHtml } from './report.ts';
import { lineChart, niceTicks } from './svg.ts';

const RUN = 'sim-test.0123456789abcdef';
const T0 = 1_700_000_000_000;
const PEER = (slot: number, inc = 1) => `peer${slot}x${inc}aaaa`;

function report(peerId: string, atMs: number, step: number, bytes: number, merges: number) {
  return telemetryReport({
    peerId, runId: RUN, timeMs: atMs, step, trainLoss: 3, heldOutLoss: null, merges, bytesSent: bytes, bytesReceived: bytes,
    versionsAnnounced: 0, versionsFetched: 0, neighbours: [], rejections: {}, tokensPerSecond: null, backend: 'wasm',
  });
}

/**
 * Three tabs (slot 2 Byzantine), batch 4. Evaluations (all genres):
 *   slot 0: step 0 → 5.0, step 10 → 4.0, step 20 → 3.0
 *   slot 1: step 0 → 5.0, step 10 → 4.4, step 20 → 3.4 (killed after step 10, back as a new peer id)
 *   slot 2: Byzantine, step 20 → 9.0 (must not count)
 */
function fixture(): RunLog {
  const log = new RunLog({ source: 'simulation', wireRunId: RUN, createdAtMs: T0, meta: { 'sim.label': 'fedavg', 'sim.tabs': 3, 'sim.batchSize': 4, 'sim.byzantineSlots': '2', 'sim.baseline': 'none' } });
  const tabPeer = (slot: number, inc: number, at: number) => {
    const d: TabPeerDetail = { slot, incarnation: inc, byzantine: slot === 2, genres: ['g'] };
    log.addEvent(SIM_EVENTS.tabPeer, JSON.stringify(d), at, PEER(slot, inc));
  };
  const held = (slot: number, inc: number, step: number, loss: number, at: number) => {
    const d: HeldOutDetail = { slot, step, own: loss + 0.1, allGenres: loss, byGenre: { g: loss }, timeMs: at };
    log.addEvent(SIM_EVENTS.heldOut, JSON.stringify(d), at, PEER(slot, inc));
  };
  log.addEvent(SIM_EVENTS.start, '3 tabs', T0);
  for (const slot of [0, 1, 2]) tabPeer(slot, 1, T0 + 1000);
  held(0, 1, 0, 5.0, T0 + 2000);
  held(1, 1, 0, 5.0, T0 + 2000);
  held(2, 1, 0, 5.0, T0 + 2000);
  // Tab 1 adopts a neighbour's adapter during its warm-up and evaluates it at step 0: the base stays 5.0.
  held(1, 1, 0, 4.7, T0 + 3000);
  log.addReport(report(PEER(0), T0 + 5000, 5, 100, 1), T0 + 5000);
  log.addReport(report(PEER(1), T0 + 5000, 5, 300, 1), T0 + 5000);
  held(0, 1, 10, 4.0, T0 + 10_000);
  held(1, 1, 10, 4.4, T0 + 12_000);
  log.addEvent(SIM_EVENTS.kill, 'tab 1', T0 + 13_000, PEER(1));
  log.markLeft(PEER(1), 'killed', T0 + 13_000);
  tabPeer(1, 2, T0 + 20_000);
  log.addReport(report(PEER(1, 2), T0 + 21_000, 12, 50, 3), T0 + 21_000);
  log.addReport(report(PEER(0), T0 + 22_000, 20, 400, 4), T0 + 22_000);
  held(0, 1, 20, 3.0, T0 + 24_000);
  held(1, 2, 20, 3.4, T0 + 30_000);
  held(2, 1, 20, 9.0, T0 + 31_000);
  log.addEvent(SIM_EVENTS.end, 'done', T0 + 32_000);
  return log;
}

describe('summarizeRun', () => {
  it('averages honest tabs only, per evaluated step, with samples = step × batch × tabs', () => {
    const s = summarizeRun(fixture().toData(), 4.0);
    expect(s.curve.map((p) => [p.step, Number(p.meanLoss.toFixed(6)), p.samples, p.timeS, p.tabs])).toEqual([
      [0, 5.0, 0, 2, 2],
      [10, 4.2, 120, 12, 2],
      [20, 3.2, 240, 30, 2],
    ]);
    expect(s.baseLoss).toBeCloseTo(5.0, 9);
    expect(s.finalLoss).toBeCloseTo(3.2, 9);
    expect(s.spread!.max - s.spread!.min).toBeCloseTo(0.4, 9);
    expect(s.spread!.std).toBeCloseTo(0.2, 9);
    expect(s.finalBySlot['2']).toBeUndefined();
    expect(s.wallS).toBe(32);
  });

  it('finds the first step whose mean is at or below the target', () => {
    const s = summarizeRun(fixture().toData(), 4.0);
    // Step 10 has mean 4.2 > 4.0, so the target is reached at step 20: 240 samples, 30 s.
    expect(s.samplesToTarget).toBe(240);
    expect(s.timeToTargetS).toBe(30);
    expect(summarizeRun(fixture().toData(), 1.0).timeToTargetS).toBeNull();
  });

  it('sums a restarted tab\'s traffic over its incarnations and keeps its highest merge count', () => {
    const s = summarizeRun(fixture().toData());
    // slot 0: 400 + 400 = 800; slot 1: (300 + 300) + (50 + 50) = 700; mean 750 over the two slots with reports.
    expect(s.bytesPerPeer).toBe(750);
    expect(s.merges).toBe(4 + 3);
    expect(s.faults.map((f) => [f.name, f.atS])).toEqual([['kill', 13]]);
  });

  it('reads the same numbers back from the JSON run log', () => {
    const log = fixture();
    const again = summarizeRun(runLogFromJson(log.toJson()), 4.0);
    expect(again).toEqual(summarizeRun(log.toData(), 4.0));
  });

  it('defaults the target to the local-only final loss, else the worst final loss', () => {
    const s = summarizeRun(fixture().toData());
    expect(defaultTarget([{ ...s, finalLoss: 3.1 }, { ...s, baseline: 'local', finalLoss: 3.6 }])).toBe(3.6);
    expect(defaultTarget([{ ...s, finalLoss: 3.1 }, { ...s, finalLoss: 3.9 }])).toBe(3.9);
  });
});

describe('reports', () => {
  it('a run report is one HTML file with inline SVG and no external resource', () => {
    const data = fixture().toData();
    const html = runReportHtml(data, summarizeRun(data, 4.0));
    expect(html).toContain('<svg');
    expect(html).not.toMatch(/(src|href)="https?:/);
    expect(html).toContain('3.2000');
  });

  it('the markdown table has one row per run and the change against local-only', () => {
    const s = summarizeRun(fixture().toData(), 4.0);
    const md = comparisonMarkdown([{ label: 'local-only', summary: { ...s, baseline: 'local', finalLoss: 4 } }, { label: 'fedavg', summary: s }], 4);
    const rows = md.split('\n').filter((l) => l.startsWith('| '));
    expect(rows).toHaveLength(3);
    expect(rows[2]).toContain('| fedavg | 3.2000 | -20.0% |');
  });

  it('niceTicks covers the range with round steps', () => {
    expect(niceTicks(0, 10, 5)).toEqual([0, 2, 4, 6, 8, 10]);
    expect(niceTicks(2.93, 3.41, 5)).toEqual([3, 3.1, 3.2, 3.3, 3.4]);
  });

  it('lineChart maps the data range onto the plot area', () => {
    const svg = lineChart({ title: 't', xLabel: 'x', yLabel: 'y', series: [{ name: 'a', points: [[0, 0], [10, 1]] }], width: 400, height: 300 });
    // Plot area: x from 64 to 400 - 186 = 214; y padded by 5%: 0 maps near the bottom (300 - 46 = 254), 1 near the top (32).
    const path = /<path d="M([\d.]+),([\d.]+)L([\d.]+),([\d.]+)"/.exec(svg)!;
    expect(Number(path[1])).toBeCloseTo(64, 1);
    expect(Number(path[3])).toBeCloseTo(214, 1);
    expect(Number(path[2])).toBeCloseTo(254 - (0.05 / 1.1) * 222, 0);
    expect(Number(path[4])).toBeCloseTo(32 + (0.05 / 1.1) * 222, 0);
  });
});
