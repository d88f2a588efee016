/**
 * Merge benchmark: 8 adapters of GPT-2-small shape (d = 768, 12 layers, rank 16 on attn.c_attn, attn.c_proj,
 * mlp.c_fc and mlp.c_proj), every registered strategy at its defaults plus product-space TIES, each timed as the
 * median of several runs, beside a plain memory copy of the same input bytes measured in the same run.
 *
 *   npm run bench:merge                      # table on stdout
 *   npm run bench:merge -- --json out.json   # also writes the results as JSON to out.json
 *   npm run bench:merge -- --json -          # JSON on stdout instead of the table
 *   npm run bench:merge -- --runs 7          # runs per strategy (default 5; 3 for the slow ones)
 *
 * Times are wall-clock medians (GB/s and "× copy" use them); CPU-time medians are printed beside them because on a
 * shared machine they move less. Extra memory of product-space TIES is measured in a child process started with
 * --expose-gc: after a GC, the growth of RSS, peak RSS, ArrayBuffers and JS heap over one merge.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { adapterParameterCount, type Adapter, type LoraPair } from '../core/model/adapter.ts';
import { createRng } from '../core/util/random.ts';
import { listStrategies, resolveParams } from '../core/merge/registry.ts';
import type { MergeInput, MergeParams, MergeStrategy } from '../core/merge/types.ts';

const D = 768;
const LAYERS = 12;
const RANK = 16;
const PEERS = 8;
const SHAPES: Array<[string, number, number]> = [
  ['attn.c_attn', D, 3 * D],
  ['attn.c_proj', D, D],
  ['mlp.c_fc', D, 4 * D],
  ['mlp.c_proj', 4 * D, D],
];

function gpt2SmallAdapter(seed: number): Adapter {
  const random = createRng(seed);
  const modules = new Map<string, LoraPair>();
  for (let layer = 0; layer < LAYERS; layer++) {
    for (const [suffix, inDim, outDim] of SHAPES) {
      const a = new Float32Array(RANK * inDim);
      const b = new Float32Array(outDim * RANK);
      for (let i = 0; i < a.length; i++) a[i] = (random() - 0.5) * 0.04;
      for (let i = 0; i < b.length; i++) b[i] = (random() - 0.5) * 0.01;
      modules.set(`transformer.h.${layer}.${suffix}`, { a, b, inDim, outDim });
    }
  }
  return { baseModelId: 'gpt2', config: { r: RANK, alpha: 2 * RANK, targetModules: SHAPES.map((s) => s[0]) }, modules };
}

function makeInputs(): MergeInput[] {
  return Array.from({ length: PEERS }, (_, i) => ({
    adapter: gpt2SmallAdapter(1000 + i),
    weight: 1 + i / PEERS,
    meta: { peerId: `peer-${i}`, samples: 1000, ageMs: 0 },
  }));
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Wall and CPU (user + system) milliseconds of each run; CPU time is the steadier number on a shared machine. */
function timeRuns(runs: number, fn: () => unknown, warmUp = true): { wall: number[]; cpu: number[] } {
  if (warmUp) fn(); // JIT warm-up, not counted
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < runs; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    fn();
    wall.push(performance.now() - t0);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1000);
  }
  return { wall, cpu };
}

interface Case {
  label: string;
  strategy: MergeStrategy;
  params: MergeParams;
  slow: boolean;
}

function cases(): Case[] {
  const list: Case[] = listStrategies().map((strategy) => ({
    label: strategy.name,
    strategy,
    params: resolveParams(strategy, {}),
    slow: false,
  }));
  const ties = listStrategies().find((s) => s.name === 'ties')!;
  list.push({ label: 'ties (space=products)', strategy: ties, params: resolveParams(ties, { space: 'products' }), slow: true });
  return list;
}

function memoryProbe(): void {
  const inputs = makeInputs();
  const ties = listStrategies().find((s) => s.name === 'ties')!;
  const params = resolveParams(ties, { space: 'products' });
  (globalThis as { gc?: () => void }).gc?.();
  const peakBefore = process.resourceUsage().maxRSS;
  const before = process.memoryUsage();
  const merged = ties.merge(inputs, params, { seed: 1 });
  const after = process.memoryUsage();
  const peakAfter = process.resourceUsage().maxRSS;
  process.stdout.write(JSON.stringify({
    rssGrowthBytes: after.rss - before.rss,
    peakRssGrowthBytes: (peakAfter - peakBefore) * 1024,
    arrayBuffersGrowthBytes: after.arrayBuffers - before.arrayBuffers,
    heapUsedGrowthBytes: after.heapUsed - before.heapUsed,
    outputParams: adapterParameterCount(merged),
  }));
}

function parseArgs(argv: string[]): { json?: string; runs: number; probe: boolean } {
  let json: string | undefined;
  let runs = 5;
  let probe = false;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--json') json = argv[i + 1] && !argv[i + 1].startsWith('--') ? argv[++i] : '-';
    else if (argv[i] === '--runs') runs = Math.max(1, Number(argv[++i]) || 5);
    else if (argv[i] === '--memory-probe') probe = true;
  }
  return { json, runs, probe };
}

function main(): void {
  const args = parseArgs(process.argv.slice(2));
  if (args.probe) return memoryProbe();
  const log = args.json === '-' ? (s: string) => process.stderr.write(s + '\n') : (s: string) => console.log(s);

  const loadBefore = loadavg();
  const inputs = makeInputs();
  const params = adapterParameterCount(inputs[0].adapter);
  const bytes = PEERS * params * 4;
  log(`merge benchmark: ${PEERS} adapters × ${params.toLocaleString('en')} parameters (GPT-2 small, r=${RANK}, 4 targets × ${LAYERS} layers) = ${(bytes / 1e6).toFixed(1)} MB of input, node ${process.version}`);

  // Plain copy of the same bytes into preallocated buffers: the floor for anything that reads every input once.
  const sources = inputs.flatMap((input) => [...input.adapter.modules.values()].flatMap((p) => [p.a, p.b]));
  const targets = sources.map((s) => new Float32Array(s.length));
  const copyRuns = timeRuns(Math.max(args.runs, 9), () => {
    for (let i = 0; i < sources.length; i++) targets[i].set(sources[i]);
  });
  const copyMs = median(copyRuns.wall);
  const copyCpuMs = median(copyRuns.cpu);
  log(`memory copy baseline: ${copyMs.toFixed(2)} ms median wall (${copyCpuMs.toFixed(2)} ms CPU), ${(bytes / copyMs / 1e6).toFixed(2)} GB/s`);

  const results: Array<Record<string, unknown>> = [];
  log('');
  log(`${'strategy'.padEnd(26)} ${'wall ms'.padStart(9)} ${'cpu ms'.padStart(9)} ${'GB/s'.padStart(8)} ${'× copy'.padStart(7)}   wall runs (ms)`);
  for (const c of cases()) {
    const runs = c.slow ? Math.min(args.runs, 3) : args.runs;
    const times = timeRuns(runs, () => c.strategy.merge(inputs, c.params, { seed: 1 }), !c.slow);
    const ms = median(times.wall);
    const cpuMs = median(times.cpu);
    results.push({ strategy: c.label, params: c.params, medianMs: ms, medianCpuMs: cpuMs, gbPerS: bytes / ms / 1e6, timesCopy: ms / copyMs, runsMs: times.wall, runsCpuMs: times.cpu });
    log(`${c.label.padEnd(26)} ${ms.toFixed(1).padStart(9)} ${cpuMs.toFixed(1).padStart(9)} ${(bytes / ms / 1e6).toFixed(3).padStart(8)} ${(ms / copyMs).toFixed(1).padStart(7)}   ${times.wall.map((t) => t.toFixed(0)).join(', ')}`);
  }

  const probe = spawnSync(process.execPath, ['--expose-gc', ...process.execArgv, process.argv[1], '--memory-probe'], { encoding: 'utf8' });
  let memory: Record<string, number> | null = null;
  if (probe.status === 0) memory = JSON.parse(probe.stdout);
  log('');
  log(memory
    ? `ties (space=products) extra memory over one merge (child process, after a GC): RSS +${(memory.rssGrowthBytes / 1e6).toFixed(0)} MB, peak RSS +${(memory.peakRssGrowthBytes / 1e6).toFixed(0)} MB, ArrayBuffers +${(memory.arrayBuffersGrowthBytes / 1e6).toFixed(0)} MB, JS heap +${(memory.heapUsedGrowthBytes / 1e6).toFixed(0)} MB`
    : `ties (space=products) memory probe failed: ${probe.stderr.trim().split('\n').pop()}`);

  const find = (label: string) => results.find((r) => r.strategy === label)!.medianMs as number;
  // The same goals on CPU time: on a shared, loaded machine the wall times also count the waits for a core.
  const findCpu = (label: string) => results.find((r) => r.strategy === label)!.medianCpuMs as number;
  const extraMemory = memory ? Math.max(memory.rssGrowthBytes, memory.peakRssGrowthBytes, memory.arrayBuffersGrowthBytes + memory.heapUsedGrowthBytes) : NaN;
  const goals = [
    {
      goal: 'fedavg within 3x of copy',
      measured: `${(find('fedavg') / copyMs).toFixed(1)}x wall, ${(findCpu('fedavg') / copyCpuMs).toFixed(1)}x CPU`,
      met: find('fedavg') <= 3 * copyMs,
      metCpu: findCpu('fedavg') <= 3 * copyCpuMs,
    },
    ...([['exact-average < 1 s', 'exact-average', 1000], ['ties (factors) < 1 s', 'ties', 1000], ['ties (products) < 10 s', 'ties (space=products)', 10000]] as const).map(
      ([goal, label, limit]) => ({
        goal,
        measured: `${find(label).toFixed(0)} ms wall, ${findCpu(label).toFixed(0)} ms CPU`,
        met: find(label) < limit,
        metCpu: findCpu(label) < limit,
      }),
    ),
    {
      goal: 'ties (products) < 1 GB extra',
      measured: memory ? `${(extraMemory / 1e6).toFixed(0)} MB (largest of the growths above)` : 'n/a',
      met: memory ? extraMemory < 1e9 : false,
      metCpu: memory ? extraMemory < 1e9 : false,
    },
  ];
  const loadAfter = loadavg();
  log('');
  log(`load average (1/5/15 min) on ${cpus().length} cores: ${loadBefore.map((x) => x.toFixed(1)).join(' ')} at the start, ${loadAfter.map((x) => x.toFixed(1)).join(' ')} at the end`);
  log('goal met by wall time / by CPU time:');
  for (const g of goals) log(`${g.met ? 'MET   ' : 'MISSED'} / ${g.metCpu ? 'MET   ' : 'MISSED'} ${g.goal}: ${g.measured}`);

  if (args.json) {
    const report = {
      node: process.version,
      cores: cpus().length,
      loadAverage: { start: loadBefore, end: loadAfter },
      peers: PEERS,
      parametersPerAdapter: params,
      inputBytes: bytes,
      copyBaseline: { medianMs: copyMs, medianCpuMs: copyCpuMs, gbPerS: bytes / copyMs / 1e6, runsMs: copyRuns.wall, runsCpuMs: copyRuns.cpu },
      strategies: results,
      tiesProductsMemory: memory,
      goals,
    };
    const text = JSON.stringify(report, null, 2);
    if (args.json === '-') process.stdout.write(text + '\n');
    else {
      writeFileSync(args.json, text + '\n');
      log(`JSON written to ${args.json}`);
    }
  }
}

main();
