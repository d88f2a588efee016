// `npm run study:learning`: a declared grid of learning runs on the node engine (arms × partitions × peer counts ×
// seeds), with each arm's learning rate first tuned on the validation split (never on the reported held-out split),
// written to a report folder (README.md with the command, table.md, results.json). Every finished run is saved at
// once; a rerun with the same folder (or --from a results file) skips the runs it already holds.
//
// An arm is a baseline (local, central, sync-avg, sync-dp) or a swarm run: a merge strategy plus any further
// `swarm simulate` options (the outer optimiser's, for instance), e.g. {"name": "fedavg+nesterov", "strategy":
// "fedavg", "args": ["--outer", "nesterov"]}.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { initNodeBackend } from '../tf-node.ts';
import { modelSha256 } from './command.ts';
import { firstAtTarget, type RunSummary } from './metrics.ts';
import { parseSimulateArgs, type SimulationSettings } from './options.ts';
import { runLockstep } from './node/lockstep.ts';
import { runNodeSimulation } from './node/run.ts';
import { armStatistics, armSummaries, armSummaryMarkdown, seedsMarkdown, type SeededSummary } from './seeds.ts';

export class StudyGridError extends Error {
  static override readonly name = 'StudyGridError';
  override readonly name = StudyGridError.name;
}

export interface StudyArm {
  name: string;
  baseline?: 'local' | 'central' | 'sync-avg' | 'sync-dp';
  /** Merge strategy of a swarm arm (the swarm's default when neither this nor baseline is given). */
  strategy?: string;
  /** Further `swarm simulate` options of this arm. */
  args?: string[];
}

export interface StudyGrid {
  name: string;
  arms: StudyArm[];
  partitions: string[];
  peers: number[];
  seeds: number[];
  /** `swarm simulate` options every run shares (steps, H, batch, schedule, evaluation, …). */
  common: string[];
  /** Learning rates tried per arm on the validation split with these seeds; the best mean final loss wins. */
  tune: { lrs: number[]; seeds: number[] } | null;
}

/** The grid of issue 13 at reduced size: 8 peers, genre partition, 3 seeds, 60 steps of 4×64, H = 5. */
export const DEFAULT_GRID: StudyGrid = {
  name: 'learning-8-genre',
  arms: [
    { name: 'local-only', baseline: 'local' },
    { name: 'centralised', baseline: 'central' },
    { name: 'sync-avg', baseline: 'sync-avg', strategy: 'fedavg' },
    { name: 'sync-dp', baseline: 'sync-dp' },
    { name: 'fedavg', strategy: 'fedavg' },
  ],
  partitions: ['genre'],
  peers: [8],
  seeds: [1, 2, 3],
  common: ['--threads', '1', '--steps', '60', '--h', '5', '--batch', '4', '--seq', '64', '--schedule', 'constant', '--eval', '20', '--eval-batches', '2'],
  tune: { lrs: [0.003, 0.01], seeds: [101] },
};

export interface StudyResult {
  key: string;
  phase: 'tune' | 'report';
  arm: string;
  partition: string;
  peers: number;
  seed: number;
  lr: number;
  summary: RunSummary;
  /** Real seconds the run took on this machine, and the 1-minute load average when it ended. */
  realS: number;
  load1: number;
}

export interface PlannedRun {
  key: string;
  phase: 'tune' | 'report';
  arm: StudyArm;
  partition: string;
  peers: number;
  seed: number;
  lr: number;
}

function resultKey(phase: string, arm: string, partition: string, peers: number, seed: number, lr: number): string {
  return `${phase}|${arm}|${partition}|${peers}|seed${seed}|lr${lr}`;
}

/** The settings of one run: the common options, the arm's, its partition, peer count, seed and learning rate. */
export function runSettings(grid: StudyGrid, run: PlannedRun): SimulationSettings {
  const argv = [
    '--engine', 'node', ...grid.common, '--tabs', String(run.peers), '--partition', run.partition, '--seed', String(run.seed), '--lr', String(run.lr),
    ...(run.arm.strategy ? ['--strategy', run.arm.strategy] : []), ...(run.arm.args ?? []),
    ...(run.phase === 'tune' ? ['--eval-split', 'validation'] : []),
  ];
  const cmd = parseSimulateArgs(argv);
  if (cmd === 'help') throw new StudyGridError('unexpected --help in the grid options');
  const s: SimulationSettings = { ...cmd.base, label: run.arm.name };
  switch (run.arm.baseline) {
    case 'local':
      return { ...s, merge: false };
    case 'central':
      return { ...s, merge: false, centralised: true };
    case 'sync-avg':
    case 'sync-dp':
      return { ...s, merge: false, lockstep: run.arm.baseline };
    default:
      return s;
  }
}

/** The tuning runs: every arm × partition × peer count × candidate learning rate × tuning seed. */
export function tuningRuns(grid: StudyGrid): PlannedRun[] {
  if (!grid.tune) return [];
  const { lrs, seeds } = grid.tune;
  return grid.partitions.flatMap((partition) =>
    grid.peers.flatMap((peers) =>
      grid.arms.flatMap((arm) =>
        lrs.flatMap((lr) => seeds.map((seed) => ({ key: resultKey('tune', arm.name, partition, peers, seed, lr), phase: 'tune' as const, arm, partition, peers, seed, lr }))),
      ),
    ),
  );
}

/** The learning rate each arm reached its lowest mean final validation loss with (the grid's lr without tuning). */
export function tunedLr(grid: StudyGrid, results: StudyResult[], arm: string, partition: string, peers: number, fallback: number): number {
  if (!grid.tune) return fallback;
  let best: { lr: number; loss: number } | null = null;
  for (const lr of grid.tune.lrs) {
    const losses = results.filter((r) => r.phase === 'tune' && r.arm === arm && r.partition === partition && r.peers === peers && r.lr === lr && r.summary.finalLoss !== null);
    if (losses.length < grid.tune.seeds.length) return Number.NaN;
    const loss = losses.reduce((n, r) => n + r.summary.finalLoss!, 0) / losses.length;
    if (!best || loss < best.loss) best = { lr, loss };
  }
  return best?.lr ?? fallback;
}

export function reportRuns(grid: StudyGrid, results: StudyResult[], defaultLr: number): PlannedRun[] {
  return grid.partitions.flatMap((partition) =>
    grid.peers.flatMap((peers) =>
      grid.seeds.flatMap((seed) =>
        grid.arms.map((arm) => {
          const lr = tunedLr(grid, results, arm.name, partition, peers, defaultLr);
          return { key: resultKey('report', arm.name, partition, peers, seed, lr), phase: 'report' as const, arm, partition, peers, seed, lr };
        }),
      ),
    ),
  );
}

/** The tables of the report: per partition and peer count, the tuned rates, the per-arm summary and paired losses. */
export function studyTables(grid: StudyGrid, results: StudyResult[]): string {
  const out: string[] = [];
  for (const partition of grid.partitions) {
    for (const peers of grid.peers) {
      out.push(`## ${peers} peers, ${partition} partition\n`);
      if (grid.tune) {
        out.push(`Learning rate per arm, tuned on the validation split (final validation loss, mean over seeds ${grid.tune.seeds.join(', ')}):\n`);
        out.push(`| arm | ${grid.tune.lrs.map((lr) => `lr ${lr}`).join(' | ')} | chosen |`);
        out.push(`|---|${grid.tune.lrs.map(() => '---:').join('|')}|---:|`);
        for (const arm of grid.arms) {
          const cells = grid.tune.lrs.map((lr) => {
            const list = results.filter((r) => r.phase === 'tune' && r.arm === arm.name && r.partition === partition && r.peers === peers && r.lr === lr && r.summary.finalLoss !== null);
            return list.length ? (list.reduce((n, r) => n + r.summary.finalLoss!, 0) / list.length).toFixed(4) : '–';
          });
          out.push(`| ${arm.name} | ${cells.join(' | ')} | ${tunedLr(grid, results, arm.name, partition, peers, Number.NaN)} |`);
        }
        out.push('');
      }
      const reported = results.filter((r) => r.phase === 'report' && r.partition === partition && r.peers === peers);
      if (reported.length === 0) continue;
      const local = reported.filter((r) => r.summary.baseline === 'local' && r.summary.finalLoss !== null);
      const target = local.length ? local.reduce((n, r) => n + r.summary.finalLoss!, 0) / local.length : null;
      const rows: SeededSummary[] = grid.arms.flatMap((arm) =>
        reported.filter((r) => r.arm === arm.name).map((r) => ({ arm: r.arm, seed: r.seed, summary: withTarget(r.summary, target) })),
      );
      out.push(`Held-out (reported split), ${rows.length} runs. Target: the local-only arm's mean final loss.\n`);
      out.push(armSummaryMarkdown(armSummaries(rows), target));
      out.push(seedsMarkdown(armStatistics(rows)));
    }
  }
  return `${out.join('\n')}\n`;
}

function withTarget(s: RunSummary, target: number | null): RunSummary {
  const reached = target === null ? null : firstAtTarget(s.curve, target);
  return { ...s, target, samplesToTarget: reached?.samples ?? null, timeToTargetS: reached?.timeS ?? null };
}

function readResults(file: string): StudyResult[] {
  if (!existsSync(file)) return [];
  const parsed = JSON.parse(readFileSync(file, 'utf8')) as { results?: StudyResult[] };
  if (!Array.isArray(parsed.results)) throw new StudyGridError(`${file} holds no results list`);
  return parsed.results;
}

function checkGrid(grid: StudyGrid): StudyGrid {
  if (!grid.name || !/^[A-Za-z0-9._-]+$/.test(grid.name)) throw new StudyGridError(`grid name '${grid.name}' must be letters, digits, . _ -`);
  for (const key of ['arms', 'partitions', 'peers', 'seeds'] as const) {
    if (!Array.isArray(grid[key]) || grid[key].length === 0) throw new StudyGridError(`grid.${key} must be a non-empty list`);
  }
  if (new Set(grid.arms.map((a) => a.name)).size !== grid.arms.length) throw new StudyGridError('two arms share a name');
  return grid;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      grid: { type: 'string' },
      out: { type: 'string' },
      from: { type: 'string', multiple: true, default: [] },
      seeds: { type: 'string' },
      'dry-run': { type: 'boolean', default: false },
      'skip-tune': { type: 'boolean', default: false },
      'tables-only': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(`usage: npm run study:learning -- [--grid grid.json] [--out docs/reports/<name>] [--from results.json ...] [--seeds a,b] [--skip-tune] [--tables-only] [--dry-run]

Runs the grid (default: ${DEFAULT_GRID.name}, declared in cli/simulate/study.ts; a JSON file of the same shape
replaces it) on the node engine: first each arm at each candidate learning rate on the validation split, then every
arm with its chosen rate on the reported held-out split. Writes README.md, table.md and results.json to the folder
after every run; runs already in results.json (or in --from) are skipped. --skip-tune runs the report phase at the
common options' learning rate (a later run with tuning reuses those runs where the tuned rate is the same).
--seeds runs only some of the grid's seeds (parts of a grid in parallel processes, each with its own --out);
--from (repeatable) joins their results.json files into this folder's; --tables-only only joins and rewrites
the tables, training nothing.`);
    return;
  }
  const declared = checkGrid(values.grid ? (JSON.parse(readFileSync(values.grid, 'utf8')) as StudyGrid) : DEFAULT_GRID);
  // --seeds 1,2: only these of the grid's seeds (to run parts of a grid in parallel processes; --from joins them).
  const onlySeeds = values.seeds?.split(',').map(Number);
  if (onlySeeds && !onlySeeds.every((x) => declared.seeds.includes(x))) throw new StudyGridError(`--seeds ${values.seeds}: the grid's seeds are ${declared.seeds.join(',')}`);
  // --skip-tune: the report phase at the common learning rate; a later run with tuning reuses every report run whose
  // arm's tuned rate turns out to be that rate (the key holds the rate).
  const seeded = onlySeeds ? { ...declared, seeds: onlySeeds } : declared;
  const grid = values['skip-tune'] ? { ...seeded, tune: null } : seeded;
  const outDir = values.out ?? join('docs', 'reports', grid.name);
  const resultsFile = join(outDir, 'results.json');
  const results: StudyResult[] = [];
  const done = new Set<string>();
  for (const file of [resultsFile, ...values.from.filter((f) => f !== resultsFile)]) {
    for (const r of readResults(file)) {
      if (done.has(r.key)) continue;
      done.add(r.key);
      results.push(r);
    }
  }
  const defaultLr = parseSimulateArgs(['--engine', 'node', ...grid.common]) as { base: SimulationSettings };
  const commandLine = `npm run study:learning --${values.grid ? ` --grid ${values.grid}` : ''}${values.out ? ` --out ${values.out}` : ''}${values.seeds ? ` --seeds ${values.seeds}` : ''}${values['skip-tune'] ? ' --skip-tune' : ''}`;
  mkdirSync(outDir, { recursive: true });
  const started = { at: new Date().toISOString(), load: loadavg().map((l) => l.toFixed(2)).join(', ') };
  const write = () => {
    writeFileSync(resultsFile, `${JSON.stringify({ grid, command: commandLine, results }, null, 2)}\n`);
    const tables = studyTables(grid, results);
    writeFileSync(join(outDir, 'table.md'), tables);
    // What the numbers mean is written by hand in notes.md; the README carries it under the tables.
    const notesFile = join(outDir, 'notes.md');
    const notes = existsSync(notesFile) ? readFileSync(notesFile, 'utf8') : '';
    writeFileSync(join(outDir, 'README.md'), `${readme(grid, commandLine, started, results, tables)}${notes ? `\n${notes}` : ''}`);
  };
  if (values['tables-only']) {
    // Joins parts (--from) and rewrites the tables from the results at hand; trains nothing.
    write();
    return;
  }
  const sha = modelSha256(defaultLr.base.modelUrl);
  await initNodeBackend('wasm');
  for (const phase of ['tune', 'report'] as const) {
    const planned = phase === 'tune' ? tuningRuns(grid) : reportRuns(grid, results, defaultLr.base.lr);
    const todo = planned.filter((r) => !done.has(r.key));
    console.log(`${phase}: ${planned.length} runs, ${planned.length - todo.length} already done`);
    if (values['dry-run']) {
      for (const r of todo) console.log(`  ${r.key}`);
      continue;
    }
    for (const run of todo) {
      if (!Number.isFinite(run.lr)) throw new StudyGridError(`${run.key}: its learning rate is not tuned yet`);
      const s = runSettings(grid, run);
      const env = { log: (line: string) => console.log(line), modelSha256: sha, root: process.cwd(), progressEveryS: 60 };
      const t0 = Date.now();
      const result = s.lockstep ? await runLockstep(s, env) : await runNodeSimulation(s, env);
      results.push({ key: run.key, phase, arm: run.arm.name, partition: run.partition, peers: run.peers, seed: run.seed, lr: run.lr, summary: result.summary, realS: (Date.now() - t0) / 1000, load1: loadavg()[0] });
      done.add(run.key);
      write();
      console.log(`${run.key}: final ${result.summary.finalLoss?.toFixed(4) ?? '–'} in ${((Date.now() - t0) / 1000).toFixed(0)} s (load ${loadavg()[0].toFixed(2)})`);
    }
  }
  if (!values['dry-run']) write();
}

function readme(grid: StudyGrid, commandLine: string, started: { at: string; load: string }, results: StudyResult[], tables: string): string {
  const real = results.reduce((n, r) => n + r.realS, 0);
  const loads = results.map((r) => r.load1);
  return `# Study: ${grid.name}

Made by \`${commandLine}\` (cli/simulate/study.ts) on the node engine with the default base model. Last started
${started.at} (load average then ${started.load}); ${results.length} runs, ${(real / 60).toFixed(1)} min of real time in
all, 1-minute load average at the end of each run ${loads.length ? `${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)}` : '–'}
on ${cpus().length} cores shared with other work. Times to target are virtual (the node engine's clock), not real.

Grid: arms ${grid.arms.map((a) => `\`${a.name}\``).join(', ')}; partitions ${grid.partitions.join(', ')}; peers ${grid.peers.join(', ')};
seeds ${grid.seeds.join(', ')}; common options \`${grid.common.join(' ')}\`${grid.tune ? `; learning rate tuned per arm over ${grid.tune.lrs.join(', ')} on the validation split (seeds ${grid.tune.seeds.join(', ')}), never on the reported held-out split` : ''}.

${tables}`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((error) => {
    console.error(error instanceof Error ? `${error.name}: ${error.message}` : error);
    process.exit(1);
  });
}
