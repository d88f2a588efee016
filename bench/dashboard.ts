// Dashboard responsiveness benchmark: the real dashboard in headless Chromium, fed the telemetry of N synthetic
// peers at the real report rate (one report per peer per 10 s) with the clock sped up (app/harness/dashboard-load,
// which says exactly what is real and what is bypassed). While it runs, Playwright times a round trip into the page
// every 250 ms; at the end the page hands over its long tasks and requestAnimationFrame frame-to-frame delays, and
// the DOM is read for what the dashboard shows (peers, graph nodes, chart points). A 0-peer case runs first: on a
// loaded machine its numbers are the floor the others should be read against.
// Usage: npm run bench:dashboard [-- --peers 0,16,32] [--speed 10] [--minutes 10] [--json bench/results/dashboard.json]
//        [--port 5197] [--screenshots .tmp] [--profile]   (--profile also writes a CPU profile per case there and prints its hottest functions)
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { loadavg, cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { chromium, type Browser, type CDPSession, type Page } from '@playwright/test';
import { CHROMIUM_ARGS, findChromium, NO_CHROMIUM_MESSAGE } from '../e2e/chromium.ts';
import { startAppServer } from './app-server.ts';
import type { DashboardLoadStats } from '../app/harness/dashboard-load.tsx';

const { values } = parseArgs({
  options: {
    peers: { type: 'string' },
    speed: { type: 'string' },
    minutes: { type: 'string' },
    json: { type: 'string' },
    port: { type: 'string' },
    profile: { type: 'boolean' },
    screenshots: { type: 'string' },
  },
});
const PEERS = (values.peers ?? '0,16,32').split(',').map(Number);
const SPEED = Number(values.speed ?? 10);
const MINUTES = Number(values.minutes ?? 10);
const PORT = Number(values.port ?? process.env.SWARM_APP_PORT ?? 5197);
const SHOTS = values.screenshots ?? '.tmp';

function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}
const max = (xs: number[]) => (xs.length === 0 ? 0 : xs.reduce((m, x) => Math.max(m, x), -Infinity));
const round = (x: number) => Math.round(x * 10) / 10;

interface CaseResult {
  peers: number;
  speed: number;
  simulatedMinutes: number;
  wallSeconds: number;
  loadAverageBefore: number;
  reports: { published: number; accepted: number; rejected: number };
  observerNotifications: number;
  longTasks: { count: number; longestMs: number; totalMs: number; p95Ms: number };
  frames: { count: number; p50Ms: number; p95Ms: number; maxMs: number; over100Ms: number };
  evaluateRoundTrip: { count: number; p50Ms: number; p95Ms: number; maxMs: number };
  observerMaxLagMs: number;
  /** CPU time of the page's main thread over the run: unlike the wall-clock numbers above, barely moved by other processes. */
  mainThreadCpu: { seconds: number; ofWallPercent: number; perRenderMs: number; scriptSeconds: number; layoutSeconds: number; styleSeconds: number };
  end: {
    peersPresent: number;
    peerRows: number;
    topologyNodes: number;
    topologyEdges: number;
    cytoscapeNodes: number;
    charts: Record<string, { series: number; points: number }>;
    /** Reports accepted, as the status line says. */
    recordCount: number;
  };
  screenshot: string;
  hottest?: Array<{ fn: string; selfMs: number }>;
}

type Metrics = Record<string, number>;

/** Chromium's own counters for the page: ThreadTime is the main thread's CPU time, the *Duration ones its task time by kind. */
async function mainThreadMetrics(cdp: CDPSession): Promise<Metrics & { atMs: number }> {
  const { metrics } = (await cdp.send('Performance.getMetrics')) as { metrics: Array<{ name: string; value: number }> };
  return { ...Object.fromEntries(metrics.map((m) => [m.name, m.value])), atMs: Date.now() };
}

function cpuUse(a: Metrics & { atMs: number }, b: Metrics & { atMs: number }, renders: number): CaseResult['mainThreadCpu'] {
  const d = (k: string) => (b[k] ?? NaN) - (a[k] ?? NaN);
  const seconds = d('ThreadTime');
  return {
    seconds: Math.round(seconds * 100) / 100,
    ofWallPercent: Math.round((100 * seconds * 1000) / (b.atMs - a.atMs)),
    perRenderMs: renders > 0 ? round((seconds * 1000) / renders) : NaN,
    scriptSeconds: Math.round(d('ScriptDuration') * 100) / 100,
    layoutSeconds: Math.round(d('LayoutDuration') * 100) / 100,
    styleSeconds: Math.round(d('RecalcStyleDuration') * 100) / 100,
  };
}

/** Self time per function from a V8 CPU profile (the slowest frames of the page, summed). */
function hottest(profile: { nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number } }>; samples: number[]; timeDeltas: number[] }, n = 15) {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map<string, number>();
  profile.samples.forEach((id, i) => {
    const f = byId.get(id)!.callFrame;
    const file = f.url.split('/').pop()?.split('?')[0] ?? '';
    const key = `${f.functionName || '(anonymous)'} ${file}:${f.lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
  });
  return [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, n).map(([fn, ms]) => ({ fn, selfMs: Math.round(ms) }));
}

async function runCase(browser: Browser, base: string, peers: number): Promise<CaseResult> {
  const context = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
  const page: Page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const loadAverageBefore = loadavg()[0];
  const cdp = await context.newCDPSession(page);
  await cdp.send('Performance.enable', { timeDomain: 'threadTicks' });
  if (values.profile) {
    await cdp.send('Profiler.enable');
    await cdp.send('Profiler.setSamplingInterval', { interval: 1000 });
    await cdp.send('Profiler.start');
  }
  const started = Date.now();
  await page.goto(`${base}/harness/dashboard-load.html?peers=${peers}&speed=${SPEED}&minutes=${MINUTES}`);
  await page.waitForFunction(() => window.dashboardLoad?.ready === true, undefined, { timeout: 120_000 });

  const metricsAtStart = await mainThreadMetrics(cdp);
  const notificationsAtStart = await page.evaluate(() => window.dashboardLoad.stats().notifications);
  const rtt: number[] = [];
  const deadline = started + (MINUTES * 60_000) / SPEED + 180_000;
  for (;;) {
    const t = performance.now();
    const done = await page.evaluate(() => window.dashboardLoad.stats().done);
    rtt.push(performance.now() - t);
    if (done) break;
    if (errors.length > 0) throw new Error(`the page failed: ${errors.join('; ')}`);
    if (Date.now() > deadline) throw new Error(`${peers} peers: the simulated ${MINUTES} min did not end in time`);
    await new Promise((r) => setTimeout(r, 250));
  }
  const wallSeconds = (Date.now() - started) / 1000;
  const metricsAtEnd = await mainThreadMetrics(cdp);
  // Two notification intervals so the last reports are on screen before the DOM is read.
  await page.waitForTimeout(1200);
  const stats: DashboardLoadStats = await page.evaluate(() => window.dashboardLoad.stats());
  // No helper functions inside evaluate: tsx names them with a __name() call that does not exist in the page.
  const end = await page.evaluate(() => {
    const charts: Record<string, { series: number; points: number }> = {};
    for (const id of ['chart-train-loss', 'chart-heldout-loss', 'chart-consensus', 'chart-bytes']) {
      const el = document.querySelector(`[data-testid="${id}"]`);
      charts[id] = { series: Number(el?.getAttribute('data-series') ?? NaN), points: Number(el?.getAttribute('data-points') ?? NaN) };
    }
    // Cytoscape keeps its instance on the container: count the nodes it holds, not React's props.
    const host = document.querySelector('[data-testid="topology"]') as (HTMLElement & { _cyreg?: { cy?: { nodes(): { length: number } } } }) | null;
    return {
      peersPresent: Number(document.querySelector('[data-testid="dashboard-peer-count"]')?.textContent ?? NaN),
      peerRows: document.querySelectorAll('[data-testid="dashboard-peer-row"]').length,
      topologyNodes: Number(host?.getAttribute('data-nodes') ?? NaN),
      topologyEdges: Number(host?.getAttribute('data-edges') ?? NaN),
      cytoscapeNodes: host?._cyreg?.cy?.nodes().length ?? NaN,
      charts,
      recordCount: Number(document.querySelector('[data-testid="dashboard-report-count"]')?.textContent ?? NaN),
    };
  });
  await mkdir(SHOTS, { recursive: true });
  const screenshot = `${SHOTS}/dashboard-${peers}-peers.png`;
  await page.screenshot({ path: screenshot, fullPage: true });
  let hot: CaseResult['hottest'];
  if (values.profile) {
    const { profile } = await cdp.send('Profiler.stop');
    await writeFile(`${SHOTS}/dashboard-${peers}-peers.cpuprofile`, JSON.stringify(profile));
    hot = hottest(profile as Parameters<typeof hottest>[0]);
  }
  await context.close();

  const tasks = stats.longTasks.map((t) => t.durationMs);
  const frames = stats.frameDeltas;
  return {
    peers,
    speed: SPEED,
    simulatedMinutes: MINUTES,
    wallSeconds: round(wallSeconds),
    loadAverageBefore: round(loadAverageBefore),
    reports: { published: stats.published, accepted: stats.accepted, rejected: stats.rejected },
    observerNotifications: stats.notifications,
    longTasks: { count: tasks.length, longestMs: max(tasks), totalMs: tasks.reduce((a, b) => a + b, 0), p95Ms: quantile(tasks, 0.95) || 0 },
    frames: { count: frames.length, p50Ms: round(quantile(frames, 0.5)), p95Ms: round(quantile(frames, 0.95)), maxMs: round(max(frames)), over100Ms: frames.filter((f) => f > 100).length },
    evaluateRoundTrip: { count: rtt.length, p50Ms: round(quantile(rtt, 0.5)), p95Ms: round(quantile(rtt, 0.95)), maxMs: round(max(rtt)) },
    observerMaxLagMs: stats.maxObserverLagMs,
    mainThreadCpu: cpuUse(metricsAtStart, metricsAtEnd, stats.notifications - notificationsAtStart),
    end,
    screenshot,
    hottest: hot,
  };
}

const executable = await findChromium();
if (!executable) {
  console.error(NO_CHROMIUM_MESSAGE);
  process.exit(1);
}
const server = await startAppServer(PORT);
const browser = await chromium.launch({ executablePath: executable, args: CHROMIUM_ARGS });
const results: CaseResult[] = [];
try {
  // A first load lets Vite finish optimising dependencies, which would otherwise reload the measured page.
  {
    const warm = await browser.newPage();
    await warm.goto(`${server.url}/harness/dashboard-load.html?peers=1&speed=10&minutes=1`);
    await warm.waitForFunction(() => window.dashboardLoad?.ready === true, undefined, { timeout: 180_000 });
    await warm.waitForTimeout(3000);
    await warm.close();
  }
  console.log(`dashboard benchmark: ${PEERS.join(', ')} synthetic peers, one report per peer per 10 s, clock ×${SPEED}, ${MINUTES} simulated min per case`);
  console.log(`machine: ${cpus().length} cores, load average ${loadavg().map((x) => x.toFixed(1)).join(' ')} (numbers are pessimistic under load)`);
  for (const n of PEERS) {
    const r = await runCase(browser, server.url, n);
    results.push(r);
    console.log('');
    console.log(`${n} peers (${r.wallSeconds} s wall, load ${r.loadAverageBefore}): ${r.reports.accepted}/${r.reports.published} reports accepted, ${r.observerNotifications} renders`);
    console.log(`  longest main-thread task ${r.longTasks.longestMs} ms (${r.longTasks.count} long tasks, ${r.longTasks.totalMs} ms in all, p95 ${r.longTasks.p95Ms} ms); observer lagMs max ${r.observerMaxLagMs} ms`);
    console.log(`  main-thread CPU ${r.mainThreadCpu.seconds} s (${r.mainThreadCpu.ofWallPercent}% of wall; ${r.mainThreadCpu.perRenderMs} ms per render; script ${r.mainThreadCpu.scriptSeconds} s, layout ${r.mainThreadCpu.layoutSeconds} s, style ${r.mainThreadCpu.styleSeconds} s)`);
    console.log(`  rAF frame-to-frame: p50 ${r.frames.p50Ms} ms, p95 ${r.frames.p95Ms} ms, max ${r.frames.maxMs} ms, ${r.frames.over100Ms} of ${r.frames.count} frames > 100 ms`);
    console.log(`  page.evaluate round trip: p50 ${r.evaluateRoundTrip.p50Ms} ms, p95 ${r.evaluateRoundTrip.p95Ms} ms, max ${r.evaluateRoundTrip.maxMs} ms (${r.evaluateRoundTrip.count} calls)`);
    console.log(`  shown: ${r.end.peersPresent} peers present, ${r.end.peerRows} rows, graph ${r.end.topologyNodes} peers (${r.end.cytoscapeNodes} cytoscape nodes) / ${r.end.topologyEdges} links; ` +
      Object.entries(r.end.charts).map(([k, c]) => `${k.replace('chart-', '')} ${c.series} series ${c.points} points`).join(', '));
    console.log(`  screenshot ${r.screenshot}`);
    if (r.hottest) for (const h of r.hottest) console.log(`    ${String(h.selfMs).padStart(6)} ms self  ${h.fn}`);
  }
} finally {
  await browser.close();
  await server.stop();
}
if (values.json) {
  await mkdir(dirname(values.json), { recursive: true });
  const report = { chromium: executable, cores: cpus().length, reportIntervalS: 10, speed: SPEED, simulatedMinutes: MINUTES, cases: results };
  await writeFile(values.json, JSON.stringify(report, null, 2) + '\n');
  console.log(`\nJSON written to ${values.json}`);
}
