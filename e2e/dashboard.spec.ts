// The researcher's dashboard against a real swarm: real relay process, 4 Chromium tabs training and gossiping
// telemetry, and a 5th tab that only watches (it joins the run's topics, never trains). Then a real extra node
// floods the telemetry topic with junk, which must be refused, counted, and leave the page responsive.
// SWARM_DASHBOARD_PEERS=8 runs the same checks with 8 training tabs (used for the 8-peer screenshot);
// SWARM_DASHBOARD_WARMUP=0|1 turns the paused start (below) off or on whatever the number of tabs.
import { mkdirSync, readFileSync } from 'node:fs';
import { test, expect, type BrowserContext, type Download, type Page } from '@playwright/test';
import { startRelayProcess, type RelayProcess } from './relay-process.ts';
import { encodeRunLink, wireRunId } from '../core/swarm/run.ts';
import { runLogCsvRows, runLogFromJson, type RunLogData } from '../core/swarm/run-log.ts';
import type { RunManifest } from '../core/wire/run-manifest.ts';
import type { TelemetryReport } from '../core/wire/telemetry.ts';
import type { PeerProbe } from '../app/lib/probe.ts';
import { modelSha256, SCREENSHOTS, testManifest } from './run-fixture.ts';

const PEERS = Number(process.env.SWARM_DASHBOARD_PEERS ?? 4);
/**
 * More than 4 training tabs on a 2-core machine starve each other's WebRTC and Noise handshakes (README, known
 * gaps), so larger swarms start as `swarm simulate` starts them: loaded and paused until each tab has direct
 * neighbours, then resumed together.
 */
const WARM_UP = process.env.SWARM_DASHBOARD_WARMUP ? process.env.SWARM_DASHBOARD_WARMUP !== '0' : PEERS > 4;
const WARM_UP_MS = 240_000;

let relay: RelayProcess | undefined;
let context: BrowserContext;
let tabs: Page[] = [];
let dashboard: Page;
let manifest: RunManifest;
let runLink = '';

const relayParam = () => `relays=${encodeURIComponent(relay!.multiaddr)}`;
const probe = (page: Page): Promise<PeerProbe> => page.evaluate(() => window.swarmPeer.status());
const number = async (page: Page, testId: string): Promise<number> => Number((await page.getByTestId(testId).textContent()) ?? NaN);
const attr = async (page: Page, testId: string, name: string): Promise<number> => Number(await page.getByTestId(testId).getAttribute(name));

async function warmUp(pages: Page[]): Promise<void> {
  const started = Date.now();
  let states: PeerProbe[] = [];
  for (;;) {
    states = await Promise.all(pages.map(probe));
    const loaded = states.every((s) => s.ready && s.phase === 'paused');
    if (loaded && states.every((s) => s.neighbours.length >= PEERS - 1)) break;
    if (Date.now() - started > WARM_UP_MS) {
      // A tab with at least 2 neighbours still gossips with everyone; fewer is a failed start.
      expect(states.map((s) => s.neighbours.length).every((n) => n >= 2), `direct neighbours after ${WARM_UP_MS / 1000} s of warm-up`).toBe(true);
      break;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
  console.log(`[dashboard] warm-up: ${((Date.now() - started) / 1000).toFixed(0)} s, direct neighbours per tab ${states.map((s) => s.neighbours.length).join(', ')}`);
  await Promise.all(pages.map((page) => page.getByTestId('resume').click()));
}

async function exported(page: Page, testId: 'export-json' | 'export-csv'): Promise<string> {
  const [download] = await Promise.all([page.waitForEvent('download') as Promise<Download>, page.getByTestId(testId).click()]);
  return readFileSync((await download.path())!, 'utf8');
}

const reportsOf = (log: RunLogData, peerId?: string): Array<{ atMs: number; report: TelemetryReport }> =>
  log.records.flatMap((r) => (r.type === 'report' && (peerId === undefined || r.report.peerId === peerId) ? [{ atMs: r.atMs, report: r.report }] : []));

test.describe.serial(`dashboard: a watching tab sees ${PEERS} training tabs`, () => {
  test.beforeAll(async ({ browser }) => {
    manifest = testManifest('e2e-dashboard', modelSha256());
    runLink = encodeRunLink(manifest);
    relay = await startRelayProcess();
    context = await browser.newContext({ viewport: { width: 1400, height: 1100 }, acceptDownloads: true });
    mkdirSync(SCREENSHOTS, { recursive: true });
  });

  test.afterAll(async () => {
    await context?.close();
    await relay?.stop();
  });

  test('the dashboard shows the peers, their connections, growing loss curves and traffic; its export matches the peers', async () => {
    test.setTimeout(720_000);
    const started = Date.now();
    tabs = await Promise.all(
      Array.from({ length: PEERS }, async (_, slot) => {
        const page = await context.newPage();
        page.on('pageerror', (e) => console.log(`[tab ${slot}] page error: ${e.message}`));
        await page.goto(`/?autojoin=1&run=${runLink}&${relayParam()}&slot=${slot}&peer=dash-${slot}&bootstrap=0&eval=10&evalBatches=1&checkpoint=5&telemetry=2000${WARM_UP ? '&paused=1' : ''}`);
        return page;
      }),
    );
    if (WARM_UP) await warmUp(tabs);
    dashboard = await context.newPage();
    dashboard.on('pageerror', (e) => console.log(`[dashboard] page error: ${e.message}`));
    await dashboard.goto(`/?view=dashboard&run=${runLink}&${relayParam()}`);
    await expect(dashboard.getByTestId('dashboard')).toHaveAttribute('data-phase', 'watching', { timeout: 60_000 });
    // The watching tab has not joined: it does not train.
    expect((await probe(dashboard)).joined).toBe(false);
    await expect(dashboard.getByTestId('dashboard-status')).toContainText(wireRunId(manifest));

    let lastLog = 0;
    await expect
      .poll(
        async () => {
          const count = await number(dashboard, 'dashboard-peer-count');
          if (Date.now() - lastLog > 30_000) {
            lastLog = Date.now();
            // Progress only: a tab the dev server is reloading has no probe for a moment.
            const states = await Promise.all(tabs.map((t) => t.evaluate(() => window.swarmPeer?.status() ?? null).catch(() => null)));
            console.log(`[dashboard] ${count} peers shown; tabs: ${states.map((s) => (s ? `${s.phase} step ${s.step} nb ${s.neighbours.length} conn ${s.connections}` : 'reloading')).join(' | ')}`);
            // Why a tab lacks neighbours: its pending dials and their last errors.
            for (const s of states) {
              if (!s || s.neighbours.length >= PEERS - 1) continue;
              const errors = s.dialPending.map((p) => `…${p.peerId.slice(-4)}×${p.attempts}${p.lastError ? ` ${p.lastError.slice(0, 90)}` : ''}`);
              if (errors.length) console.log(`[dashboard]   slot ${s.slot} pending: ${errors.join('; ')}`);
            }
          }
          return count;
        },
        { timeout: 420_000, intervals: [2000], message: `${PEERS} peers on the dashboard` },
      )
      .toBe(PEERS);
    console.log(`[dashboard] ${PEERS} peers visible after ${((Date.now() - started) / 1000).toFixed(0)} s`);
    // Training tabs reach a full direct mesh among themselves (the default cap of 12 neighbours is above PEERS − 1;
    // the watching dashboard may be one more neighbour, not counted here).
    const fewestTabNeighbours = async () => {
      const states = await Promise.all(tabs.map(probe));
      const ids = new Set(states.map((s) => s.peerId));
      return Math.min(...states.map((s) => s.neighbours.filter((n) => ids.has(n)).length));
    };
    await expect.poll(fewestTabNeighbours, { timeout: 240_000, intervals: [2000], message: 'a full mesh of training tabs' }).toBe(PEERS - 1);
    console.log(`[dashboard] every training tab has ${PEERS - 1} direct neighbours after ${((Date.now() - started) / 1000).toFixed(0)} s`);
    // Direct connections between the peers: at least a spanning tree (with the default cap of 12 neighbours, usually all pairs).
    await expect.poll(() => attr(dashboard, 'topology', 'data-edges'), { timeout: 120_000, intervals: [2000] }).toBeGreaterThanOrEqual(PEERS - 1);
    await expect.poll(() => attr(dashboard, 'chart-train-loss', 'data-points'), { timeout: 120_000, intervals: [2000] }).toBeGreaterThanOrEqual(PEERS);
    const pointsBefore = await attr(dashboard, 'chart-train-loss', 'data-points');
    // Adapters flow (bytes are counted when a neighbour fetches a payload), and the curves keep growing.
    await expect.poll(async () => (await dashboard.getByTestId('dashboard-bytes-sent').textContent()) ?? '0 B', { timeout: 240_000, intervals: [2000] }).not.toBe('0 B');
    await expect.poll(() => attr(dashboard, 'chart-train-loss', 'data-points'), { timeout: 60_000, intervals: [2000] }).toBeGreaterThanOrEqual(pointsBefore + PEERS);
    const pointsAfter = await attr(dashboard, 'chart-train-loss', 'data-points');
    console.log(`[dashboard] training-loss points ${pointsBefore} → ${pointsAfter}; edges ${await attr(dashboard, 'topology', 'data-edges')}; ` +
      `bytes sent ${await dashboard.getByTestId('dashboard-bytes-sent').textContent()}; lag ${await dashboard.getByTestId('dashboard-lag').textContent()} ms`);
    await expect(dashboard.getByTestId('dashboard-peer-row')).toHaveCount(PEERS);
    await expect(dashboard.getByTestId('dashboard-strategy')).toContainText(manifest.strategy.name);
    // Let the held-out chart have a point or two before the picture.
    await expect.poll(() => attr(dashboard, 'chart-heldout-loss', 'data-points'), { timeout: 120_000, intervals: [2000] }).toBeGreaterThanOrEqual(PEERS);
    await dashboard.screenshot({ path: `${SCREENSHOTS}/dashboard-${PEERS}-peers.png`, fullPage: true });

    // The exported run log: strict format, the peers' reports exactly as each peer logged them.
    const log = runLogFromJson(await exported(dashboard, 'export-json'));
    expect(log.source).toBe('live');
    expect(log.wireRunId).toBe(wireRunId(manifest));
    expect(log.manifest).toEqual(manifest);
    const states = await Promise.all(tabs.map(probe));
    const peerIds = states.map((s) => s.peerId!);
    expect(new Set(reportsOf(log).map((r) => r.report.peerId))).toEqual(new Set(peerIds));
    let matched = 0;
    for (const [i, tab] of tabs.entries()) {
      const logged = await tab.evaluate(() => window.swarmPeer.telemetry());
      const byTime = new Map(logged.map((r) => [r.timeMs, r]));
      const seen = reportsOf(log, peerIds[i]);
      expect(seen.length).toBeGreaterThanOrEqual(2);
      for (const { report } of seen) {
        expect(report).toEqual(byTime.get(report.timeMs));
        matched++;
      }
      // The dashboard's last training loss for this peer is one the peer logged, and the losses went somewhere.
      expect(seen.some((r) => r.report.trainLoss !== null)).toBe(true);
      expect(seen.at(-1)!.report.neighbours.length).toBeGreaterThanOrEqual(1);
    }
    const bytesSent = peerIds.map((id) => reportsOf(log, id).at(-1)!.report.bytesSent).reduce((a, b) => a + b, 0);
    expect(bytesSent).toBeGreaterThan(0);
    console.log(`[dashboard] exported ${log.records.length} records; ${matched} reports match the peers' own telemetry exactly; bytes sent ${bytesSent}`);
    // The CSV holds the same reports, one row each.
    const rows = runLogCsvRows(await exported(dashboard, 'export-csv'), log.wireRunId);
    expect(rows.length).toBeGreaterThanOrEqual(reportsOf(log).length);
    expect(rows.slice(0, reportsOf(log).length)).toEqual(reportsOf(log));
  });

  test('junk and floods from a real extra node are rejected and counted; the dashboard stays responsive', async () => {
    test.setTimeout(420_000);
    const observer = runLogFromJson(await exported(dashboard, 'export-json')).meta.observer as string;
    const flooder = await context.newPage();
    await flooder.goto(`/harness/telemetry-flood.html?run=${encodeURIComponent(wireRunId(manifest))}&${relayParam()}`);
    await flooder.evaluate(() => window.telemetryFlood.ready);
    // Gossipsub sends a publication to the topic's subscribers it is connected to: wait until that includes the dashboard.
    // On a loaded 2-core machine the WebRTC connection to the sixth node can take minutes (seen: > 120 s once, and
    // twice never within 300 s while the dial policy spread its tries over every peer the relay named), so after
    // 30 s the flooder also dials the dashboard itself, with a long timeout each time.
    const waitStarted = Date.now();
    let lastDial = 0;
    await expect.poll(async () => {
      const peers = await flooder.evaluate(() => window.telemetryFlood.topicPeers());
      if (!peers.includes(observer) && Date.now() - waitStarted > 30_000 && Date.now() - lastDial > 5_000) {
        const result = await flooder.evaluate((id) => window.telemetryFlood.connectTo(id, 45_000), observer);
        lastDial = Date.now();
        const pending = await flooder.evaluate(() => window.telemetryFlood.pending());
        console.log(`[dashboard] flooder → dashboard after ${((Date.now() - waitStarted) / 1000).toFixed(0)} s: ${result}; pending dials: ${pending.join('; ') || 'none'}`);
        return flooder.evaluate(() => window.telemetryFlood.topicPeers());
      }
      return peers;
    }, { timeout: 300_000, intervals: [1000] }).toContain(observer);
    console.log(`[dashboard] the flooder reaches the dashboard directly after ${((Date.now() - waitStarted) / 1000).toFixed(0)} s`);
    const rejectedBefore = await number(dashboard, 'dashboard-rejected-count');
    const reportsBefore = await number(dashboard, 'dashboard-report-count');
    const flood = flooder.evaluate(() => window.telemetryFlood.flood(['malformed', 'forged', 'wrong-run', 'oversized'], 300, 50));
    // While the flood runs the page answers, and its own clock shows how long the main thread stalled.
    const answerMs: number[] = [];
    const lags: number[] = [];
    while (answerMs.length < 8) {
      const t0 = Date.now();
      await dashboard.getByTestId('dashboard-rejected-count').textContent();
      answerMs.push(Date.now() - t0);
      lags.push(await number(dashboard, 'dashboard-lag'));
      await dashboard.waitForTimeout(500);
    }
    const sent = await flood;
    await expect.poll(() => number(dashboard, 'dashboard-rejected-count'), { timeout: 30_000 }).toBeGreaterThan(rejectedBefore);
    const byReason = Object.fromEntries(
      await Promise.all(['malformed', 'bad-signature', 'wrong-run', 'oversized', 'rate-limited'].map(async (reason) => {
        const cell = dashboard.getByTestId(`rejections-here-${reason}`);
        return [reason, (await cell.count()) > 0 ? Number(await cell.textContent()) : 0] as const;
      })),
    );
    console.log(`[dashboard] flood: ${sent} junk messages sent; rejected here by reason ${JSON.stringify(byReason)}; ` +
      `page answered in ≤ ${Math.max(...answerMs)} ms; main-thread lag ≤ ${Math.max(...lags)} ms`);
    // The limiter refuses most of the flood before parsing; what passes it is refused by the decoder or the sender check.
    expect(byReason['rate-limited']).toBeGreaterThan(0);
    expect(byReason.malformed + byReason['bad-signature'] + byReason['wrong-run'] + byReason.oversized).toBeGreaterThan(0);
    // No forged peer appeared, and the real peers keep reporting.
    await expect(dashboard.getByTestId('dashboard-peer-row')).toHaveCount(PEERS);
    await expect.poll(() => number(dashboard, 'dashboard-report-count'), { timeout: 30_000 }).toBeGreaterThan(reportsBefore + PEERS);
    // The page stayed interactive: a 500 ms-paced probe never waited seconds for it.
    expect(Math.max(...answerMs)).toBeLessThan(5000);
    // On a loaded machine the page still works through queued junk for seconds after the flood: export once the
    // count has stopped moving, so the export and the counter describe the same moment.
    let settled = -1;
    await expect.poll(async () => {
      const now = await number(dashboard, 'dashboard-rejections-total');
      const stable = now === settled;
      settled = now;
      return stable;
    }, { timeout: 60_000, intervals: [3000] }).toBe(true);
    const log = runLogFromJson(await exported(dashboard, 'export-json'));
    const rejections = log.records.filter((r) => r.type === 'rejection');
    expect(rejections.length).toBe(await number(dashboard, 'dashboard-rejections-total'));
    // Every rejection is the flooder's: the honest peers' reports (every 2 s, within the limit) were never refused.
    const flooderId = await flooder.evaluate(() => window.telemetryFlood.peerId);
    expect(rejections.length).toBeGreaterThan(0);
    expect(rejections.filter((r) => r.type === 'rejection' && r.peerId !== flooderId)).toEqual([]);
    await flooder.close();
  });
});
