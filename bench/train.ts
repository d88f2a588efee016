// `npm run bench:train [-- --json out.json] [--steps N] [--runs N]`: LoRA training throughput of the default model
// in headless Chromium, for every backend this machine offers (WebGPU, WASM with and without threads, CPU).
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { chromium, type Page } from '@playwright/test';
import { CHROMIUM_ARGS, findChromium, NO_CHROMIUM_MESSAGE } from '../e2e/chromium.ts';
import { startAppServer } from './app-server.ts';

const { values } = parseArgs({
  options: {
    json: { type: 'string' },
    steps: { type: 'string', default: '5' },
    runs: { type: 'string', default: '3' },
    batch: { type: 'string', default: '8' },
    port: { type: 'string', default: '5180' },
    backends: { type: 'string', default: 'webgpu,wasm-threads,wasm-1-thread,cpu' },
    model: { type: 'string', default: 'default' },
    'timeout-s': { type: 'string', default: '300' },
  },
});

interface Config {
  name: string;
  query: string;
  /** CPU is ~6x slower than WASM here: fewer steps keep the bench short. */
  stepScale: number;
}
const CONFIGS: Config[] = [
  { name: 'wasm-threads', query: 'backend=wasm', stepScale: 1 },
  { name: 'wasm-1-thread', query: 'backend=wasm&threads=1', stepScale: 1 },
  { name: 'cpu', query: 'backend=cpu', stepScale: 0.4 },
  // Last: on a software adapter (SwiftShader) it is by far the slowest, and a time-out must not cost the others.
  { name: 'webgpu', query: 'backend=webgpu', stepScale: 1 },
].filter((c) => values.backends!.split(',').includes(c.name));

const executablePath = await findChromium();
if (!executablePath) {
  console.error(NO_CHROMIUM_MESSAGE);
  process.exit(1);
}
const server = await startAppServer(Number(values.port));
const browser = await chromium.launch({ executablePath, args: CHROMIUM_ARGS });
const batchSize = Number(values.batch);
const seqLen = 128;
const rows: Record<string, unknown>[] = [];
/** Settles with `work` or fails after limitMs; the timer is cleared either way, so it never holds the process open. */
async function withTimeout<T>(work: Promise<T>, limitMs: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([work, new Promise<never>((_, fail) => (timer = setTimeout(() => fail(new Error(`no result within ${limitMs / 1000} s`)), limitMs)))]);
  } finally {
    clearTimeout(timer);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
try {
  for (const config of CONFIGS) {
    const tokensPerSecond: number[] = [];
    const peaks: number[] = [];
    let reason = '';
    let backend = '';
    let threads: number | undefined;
    let error: string | undefined;
    for (let run = 0; run < Number(values.runs); run++) {
      let page: Page | undefined;
      try {
        page = await browser.newPage();
        page.on('console', (m) => {
          if (m.type() === 'error') console.log(`  [${config.name}] ${m.text().slice(0, 200)}`);
        });
        await page.goto(`${server.url}/harness/train.html?${config.query}`);
        const steps = Math.max(2, Math.round(Number(values.steps) * config.stepScale));
        const evaluation = page.evaluate(
          (o) => window.trainHarness.run(o),
          { steps, batchSize, seqLen, seed: run + 1, rank: 8, model: (values.model === 'random' ? 'random' : 'default') as 'random' | 'default', genre: 'fiction', warmupSteps: 1 },
        );
        const r = await withTimeout(evaluation, Number(values['timeout-s']) * 1000);
        tokensPerSecond.push(r.tokensPerSecond);
        peaks.push(Math.max(r.peakTensorBytes, r.peakJsHeapBytes ?? 0));
        reason = r.backend.reason;
        backend = r.backend.backend;
        threads = r.backend.threads;
      } catch (e) {
        error = (e as Error).message.split('\n')[0];
        break;
      } finally {
        await page?.close().catch(() => {});
      }
    }
    const row = error
      ? { config: config.name, error }
      : { config: config.name, backend, threads, reason, runs: tokensPerSecond.length, tokensPerSecondMedian: median(tokensPerSecond), tokensPerSecondRuns: tokensPerSecond, peakMemoryBytesMedian: median(peaks) };
    rows.push(row);
    console.log(error ? `${config.name.padEnd(14)} unavailable: ${error}` : `${config.name.padEnd(14)} ${median(tokensPerSecond).toFixed(0).padStart(7)} tokens/s  peak ${(median(peaks) / 2 ** 20).toFixed(0)} MiB  (${reason})`);
  }
} finally {
  await browser.close();
  await server.stop();
}
const byName = Object.fromEntries(rows.map((r) => [r.config as string, r]));
const threaded = byName['wasm-threads']?.tokensPerSecondMedian as number | undefined;
const single = byName['wasm-1-thread']?.tokensPerSecondMedian as number | undefined;
if (threaded && single) console.log(`WASM threads speed-up over one thread: ${(threaded / single).toFixed(2)}x`);
const report = { bench: 'train', model: values.model === 'random' ? 'random init, default architecture' : 'swarm-brown-byte-gpt2', batchSize, seqLen, loraRank: 8, date: new Date().toISOString(), rows };
if (values.json) {
  writeFileSync(values.json, JSON.stringify(report, null, 2) + '\n');
  console.log(`wrote ${values.json}`);
}
