// The whole `swarm simulate` invocation: starts the relay, the app and the browsers once, runs the baselines and
// the swarm runs (or the sweep) in turn, and writes the report folder after every run (a crash keeps what finished).
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { runLogToJson } from '../../core/swarm/run-log.ts';
import { startAppServer, type AppServer } from '../../bench/app-server.ts';
import { defaultTarget, summarizeRun, type RunSummary } from './metrics.ts';
import { plannedRuns, type SimulateCommand } from './options.ts';
import { ManagedRelay } from './relay.ts';
import { comparisonCurves, comparisonHtml, comparisonMarkdown, runReportHtml, type ComparisonRow } from './report.ts';
import { runSimulation, type SimulationResult } from './run.ts';
import { BrowserFleet } from './tabs.ts';
import { runNodeSimulation } from './node/run.ts';
import { runLockstep } from './node/lockstep.ts';
import { initNodeBackend } from '../tf-node.ts';
import { armStatistics, armSummaries, armSummaryMarkdown, seedsMarkdown } from './seeds.ts';
import type { SimulationSettings } from './options.ts';

/** Vite without hot reload: a reload would restart every simulated peer. */
const SIMULATION_VITE_CONFIG = 'cli/simulate/vite.config.ts';

export class MissingModelError extends Error {
  static override readonly name = 'MissingModelError';
  override readonly name = MissingModelError.name;
}

export interface SimulateOutcome {
  results: SimulationResult[];
  summaries: RunSummary[];
  target: number | null;
  outDir: string | null;
}

export interface SimulateHooks {
  log?: (line: string) => void;
  /** The command line to print in the reports. */
  commandLine?: string;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

export function modelSha256(modelUrl: string): string {
  const file = join('public', modelUrl, 'model.safetensors');
  if (!existsSync(file)) {
    throw new MissingModelError(`${file} is missing: the base model must be under public${modelUrl} (run \`npm run pretrain\`, or pass --model /models/<folder>/)`);
  }
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

function folderName(label: string): string {
  return label.replace(/[^A-Za-z0-9._=-]+/g, '_');
}

function writeOutputs(cmd: SimulateCommand, results: SimulationResult[], commandLine: string): { summaries: RunSummary[]; target: number | null } {
  const first = results.map((r) => summarizeRun(r.runLog, r.settings.targetLoss));
  const target = cmd.base.targetLoss ?? defaultTarget(first);
  const summaries = results.map((r) => summarizeRun(r.runLog, target));
  if (!cmd.outDir) return { summaries, target };
  mkdirSync(cmd.outDir, { recursive: true });
  const rows: ComparisonRow[] = [];
  results.forEach((r, i) => {
    const dir = join(cmd.outDir!, 'runs', folderName(r.settings.label));
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'run-log.json'), runLogToJson(r.runLog));
    writeFileSync(join(dir, 'summary.json'), `${JSON.stringify({ ...summaries[i], stopReason: r.stopReason, manifest: r.manifest }, null, 2)}\n`);
    writeFileSync(join(dir, 'report.html'), runReportHtml(r.runLog, summaries[i]));
    rows.push({ label: folderName(r.settings.label), summary: summaries[i] });
  });
  const title = cmd.sweep ? `Comparison: ${cmd.sweep.key} = ${cmd.sweep.values.join(', ')}` : `Simulation: ${cmd.base.label}`;
  writeFileSync(join(cmd.outDir, 'report.html'), comparisonHtml(title, rows, target, commandLine));
  writeFileSync(join(cmd.outDir, 'comparison.md'), comparisonMarkdown(rows, target));
  writeFileSync(join(cmd.outDir, 'curves-samples.svg'), `${comparisonCurves(rows, 'samples')}\n`);
  writeFileSync(join(cmd.outDir, 'curves-time.svg'), `${comparisonCurves(rows, 'timeS')}\n`);
  writeFileSync(
    join(cmd.outDir, 'summary.json'),
    `${JSON.stringify({ command: commandLine, target, runs: summaries.map((s) => ({ ...s, curve: s.curve })) }, null, 2)}\n`,
  );
  return { summaries, target };
}

/** Every planned run once per seed; with several seeds each label names its seed, and arms are paired by seed. */
export function seededRuns(cmd: SimulateCommand): SimulationSettings[] {
  const runs = plannedRuns(cmd);
  if (cmd.seeds.length <= 1) return runs;
  return cmd.seeds.flatMap((seed) => runs.map((r) => ({ ...r, seed, label: `${r.label}@seed${seed}` })));
}

function armOf(label: string): { arm: string; seed: number | null } {
  const m = /^(.*)@seed(\d+)$/.exec(label);
  return m ? { arm: m[1], seed: Number(m[2]) } : { arm: label, seed: null };
}

function writeSeedStatistics(cmd: SimulateCommand, results: SimulationResult[], summaries: RunSummary[], target: number | null): string | null {
  if (cmd.seeds.length <= 1) return null;
  const rows = results.map((r, i) => ({ ...armOf(r.settings.label), summary: summaries[i] })).map((r) => ({ arm: r.arm, seed: r.seed ?? 0, summary: r.summary }));
  const arms = armSummaries(rows);
  const table = `${seedsMarkdown(armStatistics(rows))}\n## Per arm\n\n${armSummaryMarkdown(arms, target)}`;
  if (cmd.outDir) {
    writeFileSync(join(cmd.outDir, 'seeds.md'), table);
    const file = join(cmd.outDir, 'summary.json');
    writeFileSync(file, `${JSON.stringify({ ...JSON.parse(readFileSync(file, 'utf8')), arms }, null, 2)}\n`);
  }
  return table;
}

async function simulateOnNode(cmd: SimulateCommand, log: (line: string) => void, commandLine: string): Promise<SimulateOutcome> {
  const runs = seededRuns(cmd);
  const sha = modelSha256(cmd.base.modelUrl);
  const results: SimulationResult[] = [];
  // One thread runs its shard here, on this process's tfjs backend; more threads each load their own.
  if (runs.some((r) => r.node.threads === 1 || r.lockstep)) await initNodeBackend('wasm');
  log(`simulate (node engine): ${runs.length} run(s): ${runs.map((r) => r.label).join(', ')}`);
  for (const settings of runs) {
    const env = { log, modelSha256: sha, root: process.cwd(), progressEveryS: cmd.progressEveryS };
    const result = settings.lockstep ? await runLockstep(settings, env) : await runNodeSimulation(settings, env);
    results.push(result);
    const { summaries, target } = writeOutputs(cmd, results, commandLine);
    writeSeedStatistics(cmd, results, summaries, target);
    const s = result.summary;
    log(`[${settings.label}] held-out (all genres): base ${s.baseLoss?.toFixed(4) ?? '–'} → final ${s.finalLoss?.toFixed(4) ?? '–'}; bytes/peer ${Math.round(s.bytesPerPeer)}; merges ${s.merges}`);
  }
  const { summaries, target } = writeOutputs(cmd, results, commandLine);
  const table = writeSeedStatistics(cmd, results, summaries, target);
  if (table) log(`\n${table}`);
  return { results, summaries, target, outDir: cmd.outDir };
}

export async function simulate(cmd: SimulateCommand, hooks: SimulateHooks = {}): Promise<SimulateOutcome> {
  const log = hooks.log ?? ((line: string) => console.log(line));
  const commandLine = hooks.commandLine ?? 'swarm simulate';
  if (cmd.base.engine === 'node') return simulateOnNode(cmd, log, commandLine);
  const runs = seededRuns(cmd);
  const sha = modelSha256(cmd.base.modelUrl);
  let app: AppServer | null = null;
  const relay = new ManagedRelay();
  let fleet: BrowserFleet | null = null;
  const results: SimulationResult[] = [];
  try {
    const appUrl = cmd.appUrl ?? (app = await startAppServer(await freePort(), ['--config', SIMULATION_VITE_CONFIG])).url;
    fleet = await BrowserFleet.launch(Math.max(1, ...runs.filter((r) => !r.lockstep).map((r) => Math.min(r.browsers, r.centralised ? 1 : r.tabs))));
    // The lockstep baselines are one process with the same model code: they run here, on tfjs' WASM backend in Node.
    if (runs.some((r) => r.lockstep)) await initNodeBackend('wasm');
    log(`simulate: ${runs.length} run(s): ${runs.map((r) => r.label).join(', ')}; app ${appUrl}; ${fleet.browsers.length} browser process(es)`);
    for (const settings of runs) {
      if (settings.merge && !relay.running) await relay.start();
      const result = settings.lockstep
        ? await runLockstep(settings, { log, modelSha256: sha, root: process.cwd(), progressEveryS: cmd.progressEveryS })
        : await runSimulation(settings, { appUrl, fleet, relay, modelSha256: sha, log, progressEveryS: cmd.progressEveryS });
      results.push(result);
      const { summaries, target } = writeOutputs(cmd, results, commandLine);
      writeSeedStatistics(cmd, results, summaries, target);
      const s = result.summary;
      log(`[${settings.label}] held-out (all genres): base ${s.baseLoss?.toFixed(4) ?? '–'} → final ${s.finalLoss?.toFixed(4) ?? '–'}; bytes/peer ${Math.round(s.bytesPerPeer)}; merges ${s.merges}`);
      // A relay killed and not restarted by this run is started again for the next one.
      if (!relay.running && runs.indexOf(settings) < runs.length - 1) await relay.restart();
    }
  } finally {
    await fleet?.close();
    await relay.stop();
    await app?.stop();
  }
  const { summaries, target } = writeOutputs(cmd, results, commandLine);
  const table = writeSeedStatistics(cmd, results, summaries, target);
  if (table) log(`\n${table}`);
  return { results, summaries, target, outDir: cmd.outDir };
}
