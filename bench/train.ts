// `npm run bench:train [-- --json out.json] [--steps N] [--runs N] [--batch N] [--backends a,b] [--gpt2-small]`:
// LoRA training throughput in headless Chromium for every backend this machine offers (WebGPU, WASM with every
// core and with one thread, CPU), with a roofline measured in the same page: plain matMul GFLOP/s at the model's
// shapes and at a large square shape, the step's effective GFLOP/s (FLOPs counted from the config), and the share
// of step time per kernel from tf.profile. Runs of different backends are interleaved, so a change in machine load
// hits them alike. `--gpt2-small` adds a GPT-2-small-shaped model (124 M parameters, random weights).
import { writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { chromium, type Browser } from '@playwright/test';
import { CHROMIUM_ARGS, findChromium, NO_CHROMIUM_MESSAGE } from '../e2e/chromium.ts';
import { startAppServer } from './app-server.ts';
import type { TrainRunOptions, TrainRunResult } from '../app/harness/train.ts';

const { values } = parseArgs({
  options: {
    json: { type: 'string' },
    steps: { type: 'string', default: '5' },
    runs: { type: 'string', default: '3' },
    batch: { type: 'string', default: '8' },
    port: { type: 'string', default: '5180' },
    backends: { type: 'string', default: 'webgpu,wasm-threads,wasm-1-thread,cpu' },
    model: { type: 'string', default: 'default' },
    'gpt2-small': { type: 'boolean', default: false },
    'small-backends': { type: 'string', default: 'wasm-threads,wasm-1-thread' },
    'small-batch': { type: 'string', default: '1' },
    'small-seq': { type: 'string', default: '128' },
    'small-steps': { type: 'string', default: '2' },
    'square-size': { type: 'string', default: '1024' },
    'timeout-s': { type: 'string', default: '300' },
  },
});

interface Config {
  name: string;
  query: string;
  /** CPU is ~6x slower than WASM here: fewer steps keep the bench short. */
  stepScale: number;
  /** Side of the roofline's square matMul (the pure-JS backend needs seconds for 1024³). */
  squareScale: number;
}
const ALL_CONFIGS: Config[] = [
  { name: 'wasm-threads', query: 'backend=wasm', stepScale: 1, squareScale: 1 },
  { name: 'wasm-1-thread', query: 'backend=wasm&threads=1', stepScale: 1, squareScale: 1 },
  { name: 'cpu', query: 'backend=cpu', stepScale: 0.4, squareScale: 0.5 },
  // Last: on a software adapter (SwiftShader) it is by far the slowest, and a time-out must not cost the others.
  { name: 'webgpu', query: 'backend=webgpu', stepScale: 1, squareScale: 1 },
];
const pick = (list: string) => ALL_CONFIGS.filter((c) => list.split(',').includes(c.name));

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
const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
const load = () => loadavg().map((x) => Number(x.toFixed(2)));

interface Row {
  config: string;
  model: string;
  results: TrainRunResult[];
  error?: string;
}

async function runOnce(browser: Browser, url: string, config: Config, options: TrainRunOptions): Promise<TrainRunResult> {
  const page = await browser.newPage();
  try {
    page.on('console', (m) => {
      if (m.type() === 'error') console.log(`  [${config.name}] ${m.text().slice(0, 200)}`);
    });
    await page.goto(`${url}/harness/train.html?${config.query}`);
    return await withTimeout(page.evaluate((o) => window.trainHarness.run(o), options), Number(values['timeout-s']) * 1000);
  } finally {
    await page.close().catch(() => {});
  }
}

/** Runs every config `runs` times, interleaved: run 1 of each, then run 2 of each, ... */
async function measure(browser: Browser, url: string, configs: Config[], runs: number, options: (c: Config, run: number) => TrainRunOptions, model: string): Promise<Row[]> {
  const rows = configs.map((c): Row => ({ config: c.name, model, results: [] }));
  for (let run = 0; run < runs; run++) {
    for (const [i, config] of configs.entries()) {
      if (rows[i].error) continue;
      try {
        const r = await runOnce(browser, url, config, options(config, run));
        rows[i].results.push(r);
        console.log(`  ${model} ${config.name} run ${run + 1}: ${r.tokensPerSecond.toFixed(0)} tokens/s (load ${load().join(' ')})`);
      } catch (e) {
        rows[i].error = (e as Error).message.split('\n')[0];
        console.log(`  ${model} ${config.name} run ${run + 1}: ${rows[i].error}`);
      }
    }
  }
  return rows;
}

/** The printed and recorded summary of one config: medians over its runs; the roofline of its first run. */
function summarise(row: Row) {
  if (row.results.length === 0) return { config: row.config, model: row.model, error: row.error ?? 'no runs' };
  const rs = row.results;
  const first = rs[0];
  const roof = rs.find((r) => r.roofline)?.roofline;
  const effective = median(rs.map((r) => r.effectiveGflops));
  return {
    config: row.config,
    model: row.model,
    backend: first.backend.backend,
    reason: first.backend.reason,
    adapterInfo: first.backend.adapterInfo,
    threads: first.backend.threads ?? null,
    threadsWanted: first.backend.threadsWanted ?? null,
    parameters: first.parameters,
    runs: rs.length,
    tokensPerSecondMedian: median(rs.map((r) => r.tokensPerSecond)),
    tokensPerSecondRuns: rs.map((r) => Number(r.tokensPerSecond.toFixed(1))),
    stepMsRuns: rs.map((r) => r.stepMs.map((ms) => Number(ms.toFixed(1)))),
    flopsPerStep: first.flopsPerStep,
    effectiveGflopsMedian: effective,
    matMulCeilingGflops: roof ? { modelShapes: roof.modelShapeGflops, square: roof.square.gflops, squareSide: roof.square.m } : null,
    shareOfModelShapeCeiling: roof ? effective / roof.modelShapeGflops : null,
    matMulShapes: roof?.shapes.map((s) => ({ label: s.label, batch: s.batch, m: s.m, k: s.k, n: s.n, perStep: s.perStep, gflops: Number(s.gflops.toFixed(2)) })),
    profile: roof
      ? {
          wallMs: roof.profile.wallMs,
          kernelMs: roof.profile.kernelMs,
          matMulGflopsInStep: roof.profile.matMulGflops,
          kernels: roof.profile.kernels.slice(0, 15).map((k) => ({ kernel: k.kernel, calls: k.calls, ms: Number(k.ms.toFixed(2)), share: Number(k.share.toFixed(4)) })),
        }
      : null,
    peakMemoryBytesMedian: median(rs.map((r) => Math.max(r.peakTensorBytes, r.peakJsHeapBytes ?? 0))),
    lossesFirstRun: first.losses,
  };
}

function print(s: ReturnType<typeof summarise>): void {
  if ('error' in s) {
    console.log(`${s.config.padEnd(14)} unavailable: ${s.error}`);
    return;
  }
  const ceiling = s.matMulCeilingGflops;
  const parts = [
    `${s.tokensPerSecondMedian.toFixed(0).padStart(6)} tokens/s`,
    `${s.effectiveGflopsMedian.toFixed(2)} GFLOP/s effective`,
    ceiling ? `matMul ceiling ${ceiling.modelShapes.toFixed(2)} (model shapes) / ${ceiling.square.toFixed(2)} (${ceiling.squareSide}²) GFLOP/s` : 'no roofline',
    s.shareOfModelShapeCeiling !== null ? `${(100 * s.shareOfModelShapeCeiling).toFixed(0)}% of ceiling` : '',
    `threads ${s.threads ?? '-'}`,
    `peak ${mib(s.peakMemoryBytesMedian)}`,
  ].filter(Boolean);
  console.log(`${s.config.padEnd(14)} ${parts.join(' · ')}`);
  if (s.profile) {
    const top = s.profile.kernels.slice(0, 8).map((k) => `${k.kernel} ${(100 * k.share).toFixed(0)}%`).join(', ');
    const kernelNote = s.profile.kernelMs !== null ? `kernels ${s.profile.kernelMs.toFixed(0)} of ${s.profile.wallMs.toFixed(0)} ms profiled` : 'kernels not timed by this backend';
    console.log(`${''.padEnd(14)} profile (${kernelNote}): ${top}`);
  }
}

const executablePath = await findChromium();
if (!executablePath) {
  console.error(NO_CHROMIUM_MESSAGE);
  process.exit(1);
}
const loadBefore = load();
const server = await startAppServer(Number(values.port));
const browser = await chromium.launch({ executablePath, args: CHROMIUM_ARGS });
const batchSize = Number(values.batch);
const seqLen = 128;
const model = values.model === 'random' ? 'random' : 'default';
const summaries: ReturnType<typeof summarise>[] = [];
try {
  const rows = await measure(
    browser,
    server.url,
    pick(values.backends!),
    Number(values.runs),
    (c, run) => ({
      steps: Math.max(2, Math.round(Number(values.steps) * c.stepScale)),
      batchSize,
      seqLen,
      seed: run + 1,
      rank: 8,
      model,
      genre: 'fiction',
      warmupSteps: 1,
      roofline: run === 0,
      squareSize: Math.round(Number(values['square-size']) * c.squareScale),
    }),
    model,
  );
  summaries.push(...rows.map(summarise));
  if (values['gpt2-small']) {
    const small = await measure(
      browser,
      server.url,
      pick(values['small-backends']!),
      1,
      (c) => ({
        steps: Number(values['small-steps']),
        batchSize: Number(values['small-batch']),
        seqLen: Number(values['small-seq']),
        seed: 1,
        rank: 8,
        model: 'gpt2-small',
        genre: 'fiction',
        warmupSteps: 1,
        roofline: true,
        squareSize: Math.round(Number(values['square-size']) * c.squareScale),
      }),
      'gpt2-small',
    );
    summaries.push(...small.map(summarise));
  }
} finally {
  await browser.close();
  await server.stop();
}
const loadAfter = load();
console.log(`\nbatch ${batchSize}×${seqLen} bytes, LoRA r=8 on all four modules; load average ${loadBefore.join(' ')} → ${loadAfter.join(' ')} (${cpus().length} logical cores)`);
for (const s of summaries.filter((x) => x.model === model)) print(s);
const smallRows = summaries.filter((s) => s.model === 'gpt2-small');
if (smallRows.length) {
  console.log(`\nGPT-2 small shape (124 M parameters, random weights), batch ${values['small-batch']}×${values['small-seq']}:`);
  for (const s of smallRows) print(s);
}
const byName = Object.fromEntries(summaries.filter((s) => s.model === model && !('error' in s)).map((s) => [s.config, s as Extract<typeof s, { tokensPerSecondRuns: number[] }>]));
const threaded = byName['wasm-threads'];
const single = byName['wasm-1-thread'];
let threadSpeedup: number | null = null;
if (threaded && single) {
  threadSpeedup = threaded.tokensPerSecondMedian / single.tokensPerSecondMedian;
  console.log(`WASM ${threaded.threads} threads over one thread: ${threadSpeedup.toFixed(2)}x (medians of ${threaded.runs} and ${single.runs} interleaved runs)`);
}
const report = {
  bench: 'train',
  model: model === 'random' ? 'random init, default architecture' : 'swarm-brown-byte-gpt2',
  batchSize,
  seqLen,
  loraRank: 8,
  date: new Date().toISOString(),
  command: `npx tsx bench/train.ts ${process.argv.slice(2).join(' ')}`.trim(),
  logicalCores: cpus().length,
  loadAverageBefore: loadBefore,
  loadAverageAfter: loadAfter,
  wasmThreadSpeedup: threadSpeedup,
  rows: summaries,
};
if (values.json) {
  writeFileSync(values.json, JSON.stringify(report, null, 2) + '\n');
  console.log(`wrote ${values.json}`);
}
