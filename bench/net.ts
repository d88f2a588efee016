// Network benchmark: real relay process, real headless Chromium tabs, WebRTC between them.
// Mesh formation time for 4 and 8 tabs; throughput and announce-to-fetched latency for 1 MB and 20 MB payloads.
// Usage: npm run bench:net [-- --json [--out path (default bench/results/net.json)]] [--runs N] [--port P]
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium, type Browser, type Page } from '@playwright/test';
import { CHROMIUM_ARGS, findChromium, NO_CHROMIUM_MESSAGE } from '../e2e/chromium.ts';
import { startRelayProcess } from '../e2e/relay-process.ts';

const { values } = parseArgs({
  options: { json: { type: 'boolean' }, out: { type: 'string' }, runs: { type: 'string' }, port: { type: 'string' } },
});
const RUNS = Number(values.runs ?? 3);
const PORT = Number(values.port ?? 5173);
const OUT = values.out ?? 'bench/results/net.json';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function serving(): Promise<boolean> {
  try {
    return (await fetch(`http://127.0.0.1:${PORT}/harness/p2p.html`)).ok;
  } catch {
    return false;
  }
}

/** Reuses a dev server already serving the harness on PORT, otherwise starts one. */
async function startVite(): Promise<ChildProcess | undefined> {
  if (await serving()) return undefined;
  const vite = spawn(process.execPath, ['node_modules/vite/bin/vite.js', '--host', '127.0.0.1', '--port', String(PORT), '--strictPort'], { stdio: 'ignore' });
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(`http://127.0.0.1:${PORT}/harness/p2p.html`)).ok) return vite;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 300));
  }
  vite?.kill();
  throw new Error('vite did not start');
}

async function openTabs(browser: Browser, relay: string, n: number, size: number): Promise<Page[]> {
  const context = await browser.newContext();
  const pages = await Promise.all(Array.from({ length: n }, () => context.newPage()));
  await Promise.all(
    pages.map(async (p) => {
      await p.goto(`http://127.0.0.1:${PORT}/harness/p2p.html?relays=${encodeURIComponent(relay)}&size=${size}&discovery=1000`);
      await p.waitForFunction(() => window.swarmHarness?.peerId !== '');
    }),
  );
  return pages;
}

async function waitUntil(condition: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** ms from opening the tabs to a full direct mesh, or null (with the smallest degree reached) after the limit. */
async function meshRun(browser: Browser, relay: string, n: number): Promise<{ ms: number | null; minDegree: number }> {
  const started = Date.now();
  const pages = await openTabs(browser, relay, n, 1_000_000);
  const ids = await Promise.all(pages.map((p) => p.evaluate(() => window.swarmHarness.peerId)));
  let minDegree = 0;
  let ms: number | null = null;
  try {
    await waitUntil(async () => {
      const lists = await Promise.all(pages.map((p) => p.evaluate(() => window.swarmHarness.neighbours())));
      minDegree = Math.min(...lists.map((l) => l.length));
      return lists.every((list, i) => ids.every((id, j) => i === j || list.includes(id)));
    }, 90_000, `full mesh of ${n}`);
    ms = Date.now() - started;
  } catch {
    // An incomplete mesh: say which tabs lack whom and why their last dials failed, so a run on a loaded machine
    // can be told apart from a dialling bug.
    for (const [i, page] of pages.entries()) {
      const [neighbours, pending] = await Promise.all([
        page.evaluate(() => window.swarmHarness.neighbours()),
        page.evaluate(() => window.swarmHarness.pending()),
      ]);
      const missing = ids.filter((id, j) => j !== i && !neighbours.includes(id));
      if (missing.length === 0) continue;
      const waiting = pending.filter((p) => missing.includes(p.peerId));
      console.log(
        `  tab ${i}: degree ${neighbours.length}/${n - 1}; missing ${missing.map((id) => `…${id.slice(-6)}`).join(' ')}; ` +
          (waiting.length
            ? waiting.map((p) => `…${p.peerId.slice(-6)}: ${p.attempts} attempts${p.lastError ? ` (${p.lastError})` : ''}`).join('; ')
            : `no dial pending (the other side, with the smaller id, dials)`),
      );
    }
  }
  await pages[0].context().close();
  return { ms, minDegree };
}

async function payloadRuns(browser: Browser, relay: string, size: number): Promise<{ latencyMs: number[]; throughputMBps: number[]; bytes: number }> {
  const pages = await openTabs(browser, relay, 2, size);
  const [ida, idb] = await Promise.all(pages.map((p) => p.evaluate(() => window.swarmHarness.peerId)));
  await waitUntil(async () => (await pages[0].evaluate(() => window.swarmHarness.neighbours())).includes(idb) &&
    (await pages[1].evaluate(() => window.swarmHarness.neighbours())).includes(ida), 60_000, 'two tabs connected');
  // Gossip reaches only peers whose subscription has arrived; announcing before that measures nothing but a loss.
  await waitUntil(async () => (await pages[0].evaluate(() => window.swarmHarness.topicPeers())).includes(idb), 30_000, 'the receiver subscribed to the run topic');
  const latencyMs: number[] = [];
  const throughputMBps: number[] = [];
  let bytes = 0;
  for (let run = 0; run < RUNS; run++) {
    const sent = await pages[0].evaluate((seed) => window.swarmHarness.announce(seed), run + 1);
    let record: { sha256: string; receivedAtMs: number; fetchMs: number; bytes: number } | undefined;
    await waitUntil(async () => {
      record = (await pages[1].evaluate(() => window.swarmHarness.received())).find((r) => r.version === sent.version);
      return record !== undefined;
    }, 120_000, `payload ${size} run ${run}`);
    if (record!.sha256 !== sent.sha256) throw new Error('payload arrived corrupted');
    bytes = record!.bytes;
    latencyMs.push(record!.receivedAtMs - sent.createdAtMs);
    throughputMBps.push(record!.bytes / 1e6 / (record!.fetchMs / 1000));
  }
  await pages[0].context().close();
  return { latencyMs, throughputMBps, bytes };
}

const executable = await findChromium();
if (!executable) {
  console.error(NO_CHROMIUM_MESSAGE);
  process.exit(1);
}
const vite = await startVite();
const relay = await startRelayProcess();
const browser = await chromium.launch({ executablePath: executable, args: CHROMIUM_ARGS });
// A first load lets the dev server finish optimising dependencies, which would otherwise reload measured tabs.
{
  const warm = await openTabs(browser, relay.multiaddr, 1, 1_000_000);
  await new Promise((r) => setTimeout(r, 3_000));
  await warm[0].context().close();
}
const results: Record<string, unknown> = { runs: RUNS, date: new Date().toISOString() };
try {
  for (const n of [4, 8]) {
    const runs: Array<{ ms: number | null; minDegree: number }> = [];
    for (let run = 0; run < RUNS; run++) runs.push(await meshRun(browser, relay.multiaddr, n));
    const times = runs.map((r) => r.ms).filter((t): t is number => t !== null);
    const incomplete = runs.filter((r) => r.ms === null);
    results[`mesh${n}`] = { medianMs: times.length ? median(times) : null, runsMs: runs.map((r) => r.ms), incompleteMinDegree: incomplete.map((r) => r.minDegree) };
    console.log(
      `mesh of ${n} tabs (page open → full direct WebRTC mesh): ` +
        (times.length ? `median ${(median(times) / 1000).toFixed(1)} s  [${times.map((t) => (t / 1000).toFixed(1)).join(', ')}]` : 'never complete') +
        (incomplete.length ? `; ${incomplete.length} run(s) incomplete after 90 s (smallest degree ${incomplete.map((r) => r.minDegree).join(', ')} of ${n - 1})` : ''),
    );
  }
  for (const [label, size] of [['1MB', 1_000_000], ['20MB', 20_000_000]] as const) {
    let r: Awaited<ReturnType<typeof payloadRuns>>;
    try {
      r = await payloadRuns(browser, relay.multiaddr, size);
    } catch (err) {
      results[`payload${label}`] = { error: (err as Error).message };
      console.log(`${label} adapter: FAILED (${(err as Error).message})`);
      continue;
    }
    results[`payload${label}`] = { bytes: r.bytes, medianLatencyMs: median(r.latencyMs), medianThroughputMBps: median(r.throughputMBps), latencyMs: r.latencyMs, throughputMBps: r.throughputMBps };
    console.log(`${label} adapter (${r.bytes} B): announce→fetched+validated median ${median(r.latencyMs).toFixed(0)} ms, fetch throughput median ${median(r.throughputMBps).toFixed(1)} MB/s`);
  }
} finally {
  await browser.close();
  await relay.stop();
  vite?.kill();
}
if (values.json) {
  await mkdir(dirname(OUT), { recursive: true });
  await writeFile(OUT, JSON.stringify(results, null, 2) + '\n');
  console.log(`wrote ${OUT}`);
}
