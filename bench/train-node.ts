// `npx tsx bench/train-node.ts [--backends webgpu,wasm] [--model default|random|gpt2-small] [--batch N] [--json out.json]`:
// the same LoRA training step and roofline as `npm run bench:train` (core/train/benchmark-run.ts), run in Node:
// WebGPU through Dawn's Node binding (the `webgpu` package), WASM and the pure-JS CPU backend through tfjs. This is
// the one command for a GPU machine with no browser: `npx tsx bench/train-node.ts --backends webgpu,wasm --gpt2-small`.
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { getThreadsCount } from '@tensorflow/tfjs-backend-wasm';
import { directorySource } from '../cli/hf-source.ts';
import { initNodeBackend, installNodeWebGpu, type NodeBackend } from '../cli/tf-node.ts';
import { loadHfCheckpoint } from '../core/io/hf-checkpoint.ts';
import type { Gpt2Config } from '../core/model/config.ts';
import { DEFAULT_MODEL_CONFIG, DEFAULT_MODEL_ID, GPT2_SMALL_CONFIG } from '../core/model/defaults.ts';
import { initGpt2Weights } from '../core/model/gpt2.ts';
import { benchmarkTraining, type BenchmarkResult } from '../core/train/benchmark-run.ts';

const { values } = parseArgs({
  options: {
    backends: { type: 'string', default: 'webgpu,wasm' },
    model: { type: 'string', default: 'default' },
    batch: { type: 'string', default: '8' },
    seq: { type: 'string', default: '128' },
    steps: { type: 'string', default: '3' },
    runs: { type: 'string', default: '1' },
    'gpt2-small': { type: 'boolean', default: false },
    'small-batch': { type: 'string', default: '1' },
    'small-seq': { type: 'string', default: '128' },
    'small-steps': { type: 'string', default: '2' },
    'square-size': { type: 'string', default: '1024' },
    json: { type: 'string' },
  },
});

const load = () => loadavg().map((x) => Number(x.toFixed(2)));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
const tokens = new Uint8Array(readFileSync('public/data/brown/fiction.train.txt'));
const cpuMs = () => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
};

async function weightsFor(model: string, config: Gpt2Config) {
  if (model === 'default') return (await loadHfCheckpoint(directorySource(`public/models/${DEFAULT_MODEL_ID}`))).weights;
  return initGpt2Weights(config, 1);
}

interface Row {
  backend: string;
  model: string;
  adapterInfo?: string;
  threads?: number;
  batchSize: number;
  seqLen: number;
  runs: BenchmarkResult[];
}

async function measure(backend: string, model: string, batchSize: number, seqLen: number, steps: number, runs: number): Promise<Row> {
  const config = model === 'gpt2-small' ? GPT2_SMALL_CONFIG : DEFAULT_MODEL_CONFIG;
  const row: Row = { backend, model, batchSize, seqLen, runs: [] };
  if (backend === 'wasm') row.threads = getThreadsCount();
  for (let run = 0; run < runs; run++) {
    const result = await benchmarkTraining(
      { steps, batchSize, seqLen, seed: run + 1, rank: 8, warmupSteps: 1, roofline: run === 0, squareSize: Number(values['square-size']) },
      { config, weights: await weightsFor(model, config), tokens, heapBytes: () => process.memoryUsage().rss, cpuMs },
    );
    row.runs.push(result);
    console.log(`  ${model} ${backend} run ${run + 1}: ${result.tokensPerSecond.toFixed(0)} tokens/s (load ${load().join(' ')})`);
  }
  return row;
}

function summarise(row: Row) {
  const roof = row.runs[0].roofline!;
  const effective = median(row.runs.map((r) => r.effectiveGflops));
  return {
    backend: row.backend,
    model: row.model,
    adapterInfo: row.adapterInfo,
    threads: row.threads ?? null,
    batchSize: row.batchSize,
    seqLen: row.seqLen,
    parameters: row.runs[0].parameters,
    tokensPerSecondMedian: median(row.runs.map((r) => r.tokensPerSecond)),
    stepMsRuns: row.runs.map((r) => r.stepMs.map((ms) => Number(ms.toFixed(1)))),
    /** Median CPU time per step (all threads of this process; wall time on one thread, without waiting for a core). */
    cpuMsPerStepMedian: median(row.runs.flatMap((r) => r.stepCpuMs ?? [])),
    flopsPerStep: row.runs[0].flopsPerStep,
    effectiveGflopsMedian: effective,
    matMulCeilingGflops: { modelShapes: roof.modelShapeGflops, square: roof.square.gflops, squareSide: roof.square.m },
    shareOfModelShapeCeiling: effective / roof.modelShapeGflops,
    profile: { wallMs: roof.profile.wallMs, kernelMs: roof.profile.kernelMs, kernels: roof.profile.kernels.slice(0, 12) },
    peakMemoryBytes: Math.max(...row.runs.map((r) => Math.max(r.peakTensorBytes, r.peakJsHeapBytes ?? 0))),
    lossesFirstRun: row.runs[0].losses,
  };
}

const loadBefore = load();
const rows: ReturnType<typeof summarise>[] = [];
const requested = values.backends!.split(',') as NodeBackend[];
let adapterInfo: string | undefined;
if (requested.includes('webgpu')) adapterInfo = (await installNodeWebGpu()).adapterInfo;
for (const backend of requested) {
  await initNodeBackend(backend);
  if (tf.getBackend() !== backend) throw new Error(`asked for ${backend}, tfjs runs ${tf.getBackend()}`);
  const add = (row: Row) => rows.push(summarise({ ...row, adapterInfo: backend === 'webgpu' ? adapterInfo : undefined }));
  add(await measure(backend, values.model!, Number(values.batch), Number(values.seq), Number(values.steps), Number(values.runs)));
  if (values['gpt2-small']) add(await measure(backend, 'gpt2-small', Number(values['small-batch']), Number(values['small-seq']), Number(values['small-steps']), 1));
}
const loadAfter = load();
console.log(`\nNode ${process.version}; load average ${loadBefore.join(' ')} → ${loadAfter.join(' ')} (${cpus().length} logical cores)`);
for (const s of rows) {
  console.log(
    `${s.model.padEnd(10)} ${s.backend.padEnd(7)} ${s.batchSize}×${s.seqLen}: ${s.tokensPerSecondMedian.toFixed(0)} tokens/s · ${s.effectiveGflopsMedian.toFixed(2)} GFLOP/s effective · ` +
      `matMul ceiling ${s.matMulCeilingGflops.modelShapes.toFixed(2)} (model shapes) / ${s.matMulCeilingGflops.square.toFixed(2)} (${s.matMulCeilingGflops.squareSide}²) · ` +
      `${(100 * s.shareOfModelShapeCeiling).toFixed(0)}% of ceiling · CPU ${s.cpuMsPerStepMedian.toFixed(0)} ms/step · threads ${s.threads ?? '-'} · peak ${mib(s.peakMemoryBytes)}${s.adapterInfo ? ` · ${s.adapterInfo}` : ''}`,
  );
}
const report = { bench: 'train-node', command: `npx tsx bench/train-node.ts ${process.argv.slice(2).join(' ')}`.trim(), date: new Date().toISOString(), node: process.version, logicalCores: cpus().length, loadAverageBefore: loadBefore, loadAverageAfter: loadAfter, rows };
if (values.json) {
  writeFileSync(values.json, JSON.stringify(report, null, 2) + '\n');
  console.log(`wrote ${values.json}`);
}
// Dawn keeps the process alive while its GPU object exists (dawn-gpu/node-webgpu README): exit explicitly.
process.exit(0);
