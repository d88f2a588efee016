// `npm run simulate:byzantine`: the Byzantine matrix. Every merge strategy × every attack mode × 1 and 2 attackers
// among 8 peers × several seeds, each against the clean run of the same strategy and seed, on the node engine (the
// real PeerEngine with its update guard). For each cell it reports the honest peers' final held-out loss against the
// clean run, and whether any honest peer halted, held a non-finite value or went silent.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { listStrategies } from '../../core/merge/registry.ts';
import type { RunLogData } from '../../core/swarm/run-log.ts';
import { initNodeBackend } from '../tf-node.ts';
import { modelSha256 } from './command.ts';
import { BYZANTINE_MODES, BYZANTINE_DESCRIPTIONS, type ByzantineMode } from '../../core/swarm/byzantine.ts';
import { runNodeSimulation } from './node/run.ts';
import { parseSimulateArgs, strategyParams, type SimulationSettings } from './options.ts';
import { sampleSd } from './seeds.ts';

const HELP = `usage: npm run simulate:byzantine -- [options]

  --strategies <a,b>   strategies (default: every registered one)
  --modes <a,b>        attack modes (default: ${BYZANTINE_MODES.join(', ')})
  --attackers <a,b>    attackers among the peers (default 1,2)
  --seeds <a,b>        seeds (default 1,2,3)
  --peers <n>          peers (default 8)
  --steps <n> --h <n>  local steps per peer and steps between merges (default 12 and 3)
  --batch <n> --seq <n>  batch and sequence length (default 2 and 32)
  --out <dir>          report folder (default docs/reports/byzantine-matrix)
  --from <a.json,...>  only render the report from cells.json files of earlier (e.g. parallel) runs
  -- <simulate options>  anything after -- goes to every run (e.g. --codec fp32)
`;

export interface CellOutcome {
  strategy: string;
  mode: ByzantineMode | 'clean';
  attackers: number;
  seed: number;
  honestFinal: number | null;
  baseLoss: number | null;
  /** Honest peers that did not finish their steps, reported a non-finite loss, or stopped reporting. */
  halted: number;
  nonFinite: number;
  silent: number;
  /** Honest newcomers that started from an attacker's adapter. */
  adoptedPoison: number;
  /** Neighbour adapters the honest peers' guards refused (summed over their last reports). */
  guardRefused: number;
  wallS: number;
}

/** What the run log says about each honest peer's end: finished, finite, still reporting. */
export function honestHealth(log: RunLogData, steps: number): { halted: number; nonFinite: number; silent: number; adoptedPoison: number } {
  const byzantine = new Set(String(log.meta['sim.byzantineSlots'] ?? '').split(',').filter((x) => x !== '').map(Number));
  const slotOf = new Map<string, number>();
  let endMs = 0;
  const last = new Map<string, { atMs: number; step: number; heldOut: number | null; train: number | null }>();
  for (const r of log.records) {
    endMs = Math.max(endMs, r.atMs);
    if (r.type === 'event' && r.name === 'tab-peer' && r.peerId) slotOf.set(r.peerId, (JSON.parse(r.detail) as { slot: number }).slot);
    if (r.type === 'report') last.set(r.report.peerId, { atMs: r.atMs, step: r.report.step, heldOut: r.report.heldOutLoss, train: r.report.trainLoss });
  }
  let halted = 0;
  let nonFinite = 0;
  let silent = 0;
  const adoptedPoison = log.records.filter((r) => r.type === 'event' && r.name === 'adopted' && (JSON.parse(r.detail) as { fromByzantine: boolean }).fromByzantine).length;
  for (const [peerId, slot] of slotOf) {
    if (byzantine.has(slot)) continue;
    const l = last.get(peerId);
    if (!l) {
      silent++;
      continue;
    }
    if (l.step < steps) halted++;
    if (l.heldOut === null || !Number.isFinite(l.heldOut) || l.train === null || !Number.isFinite(l.train)) nonFinite++;
    if (endMs - l.atMs > 5_000) silent++;
  }
  return { halted, nonFinite, silent, adoptedPoison };
}

function fmt(x: number | null, digits = 4): string {
  return x === null || !Number.isFinite(x) ? '–' : x.toFixed(digits);
}

export function matrixMarkdown(cells: CellOutcome[], strategies: string[], modes: readonly string[], attackerCounts: number[]): string {
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const lines: string[] = [];
  lines.push('Damage = (honest loss under attack − clean loss) / (base loss − clean loss), mean over seeds: 0% = no harm, 100% = all');
  lines.push('of the clean run\'s learning lost, > 100% = worse than not training. Δ% = the same gap as a share of the clean loss.');
  lines.push('"ok" = on every seed no honest peer halted, held a non-finite loss or went silent.');
  lines.push('');
  for (const attackers of attackerCounts) {
    lines.push(`### ${attackers} attacker(s)`, '');
    lines.push(`| strategy | clean loss | ${modes.map((m) => m).join(' | ')} |`);
    lines.push(`|---|---:|${modes.map(() => '---:').join('|')}|`);
    for (const strategy of strategies) {
      const clean = cells.filter((c) => c.strategy === strategy && c.mode === 'clean');
      const cleanBySeed = new Map(clean.map((c) => [c.seed, c]));
      const row = [`${strategy}`, `${fmt(mean(clean.map((c) => c.honestFinal ?? Number.NaN)))} ± ${fmt(sampleSd(clean.map((c) => c.honestFinal ?? Number.NaN)))}`];
      for (const mode of modes) {
        const cs = cells.filter((c) => c.strategy === strategy && c.mode === mode && c.attackers === attackers);
        if (cs.length === 0) {
          row.push('–');
          continue;
        }
        const damages: number[] = [];
        const deltas: number[] = [];
        for (const c of cs) {
          const ref = cleanBySeed.get(c.seed);
          if (!ref || ref.honestFinal === null || c.honestFinal === null || ref.baseLoss === null) continue;
          deltas.push((c.honestFinal - ref.honestFinal) / ref.honestFinal);
          damages.push((c.honestFinal - ref.honestFinal) / (ref.baseLoss - ref.honestFinal));
        }
        const healthy = cs.every((c) => c.halted === 0 && c.nonFinite === 0 && c.silent === 0);
        const adopted = cs.reduce((n, c) => n + c.adoptedPoison, 0);
        row.push(
          damages.length
            ? `${(mean(damages) * 100).toFixed(0)}% (Δ ${(mean(deltas) * 100).toFixed(2)}%)${healthy ? '' : ' **HALT/NaN/SILENT**'}${adopted ? ` **adopted poison ×${adopted}**` : ''}`
            : 'n/a',
        );
      }
      lines.push(`| ${row.join(' | ')} |`);
    }
    lines.push('');
  }
  lines.push('Attack modes:', '');
  for (const m of modes) lines.push(`- \`${m}\`: ${BYZANTINE_DESCRIPTIONS[m as ByzantineMode] ?? ''}`);
  return `${lines.join('\n')}\n`;
}

export async function main(argv: string[]): Promise<number> {
  const dash = argv.indexOf('--');
  const own = dash < 0 ? argv : argv.slice(0, dash);
  const passThrough = dash < 0 ? [] : argv.slice(dash + 1);
  const { values: v } = parseArgs({
    args: own,
    options: {
      strategies: { type: 'string' },
      modes: { type: 'string', default: BYZANTINE_MODES.join(',') },
      attackers: { type: 'string', default: '1,2' },
      seeds: { type: 'string', default: '1,2,3' },
      peers: { type: 'string', default: '8' },
      steps: { type: 'string', default: '12' },
      h: { type: 'string', default: '3' },
      batch: { type: 'string', default: '2' },
      seq: { type: 'string', default: '32' },
      out: { type: 'string', default: 'docs/reports/byzantine-matrix' },
      from: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (v.help) {
    console.log(HELP);
    return 0;
  }
  if (v.from) {
    const parts = v.from.split(',').map((f) => JSON.parse(readFileSync(f, 'utf8')) as { command: string; cells: CellOutcome[] });
    const cells = parts.flatMap((p) => p.cells);
    const strategies = [...new Set(cells.map((c) => c.strategy))];
    const modes = [...new Set(cells.map((c) => c.mode).filter((m) => m !== 'clean'))];
    const attackerCounts = [...new Set(cells.map((c) => c.attackers).filter((a) => a > 0))].sort();
    mkdirSync(v.out, { recursive: true });
    writeFileSync(join(v.out, 'cells.json'), `${JSON.stringify({ commands: parts.map((p) => p.command), cells }, null, 2)}\n`);
    const table = matrixMarkdown(cells, strategies, modes, attackerCounts);
    writeFileSync(join(v.out, 'matrix.md'), `# Byzantine matrix\n\nCommands:\n${parts.map((p) => `- \`${p.command}\``).join('\n')}\n\n${table}`);
    console.log(table);
    return 0;
  }
  const strategies = v.strategies ? v.strategies.split(',') : listStrategies().map((s) => s.name);
  const modes = v.modes.split(',') as ByzantineMode[];
  for (const m of modes) if (!(BYZANTINE_MODES as readonly string[]).includes(m)) throw new Error(`unknown mode ${m}`);
  const attackerCounts = v.attackers.split(',').map(Number);
  const seeds = v.seeds.split(',').map(Number);
  const steps = Number(v.steps);
  await initNodeBackend('wasm');
  const base = (strategy: string, seed: number, byzantine: string | null): SimulationSettings => {
    const args = ['--engine', 'node', '--threads', '1', '--tabs', v.peers, '--steps', v.steps, '--h', v.h, '--batch', v.batch, '--seq', v.seq, '--eval', v.steps, '--eval-batches', '1', '--seed', String(seed), ...passThrough];
    if (byzantine) args.push('--byzantine', byzantine);
    const cmd = parseSimulateArgs(args);
    if (cmd === 'help') throw new Error('help');
    return { ...cmd.base, strategy, params: strategyParams(strategy, {}, {}), label: `${strategy}-${byzantine ?? 'clean'}-s${seed}` };
  };
  const sha = modelSha256(base(strategies[0], seeds[0], null).modelUrl);
  mkdirSync(v.out, { recursive: true });
  const cells: CellOutcome[] = [];
  const started = Date.now();
  const plan: Array<{ strategy: string; mode: ByzantineMode | 'clean'; attackers: number; seed: number }> = [];
  for (const strategy of strategies) {
    for (const seed of seeds) {
      plan.push({ strategy, mode: 'clean', attackers: 0, seed });
      for (const attackers of attackerCounts) for (const mode of modes) plan.push({ strategy, mode, attackers, seed });
    }
  }
  for (const [i, p] of plan.entries()) {
    const s = base(p.strategy, p.seed, p.mode === 'clean' ? null : `${p.mode}:tabs=${p.attackers}`);
    const t0 = Date.now();
    const result = await runNodeSimulation(s, { log: () => undefined, modelSha256: sha, root: process.cwd(), progressEveryS: 3600 });
    const health = honestHealth(result.runLog, steps);
    const lastReports = new Map<string, number>();
    for (const r of result.runLog.records) if (r.type === 'report') lastReports.set(r.report.peerId, r.report.rejections['out-of-bounds'] ?? 0);
    const refused = [...lastReports.values()].reduce((a, b) => a + b, 0);
    cells.push({
      ...p,
      honestFinal: result.summary.finalLoss,
      baseLoss: result.summary.baseLoss,
      ...health,
      guardRefused: refused,
      wallS: (Date.now() - t0) / 1000,
    });
    console.log(
      `[${i + 1}/${plan.length}] ${p.strategy} ${p.mode}${p.attackers ? ` x${p.attackers}` : ''} seed ${p.seed}: honest ${fmt(result.summary.finalLoss)}` +
        ` (base ${fmt(result.summary.baseLoss)}); halted ${health.halted}, non-finite ${health.nonFinite}, silent ${health.silent}, adopted poison ${health.adoptedPoison};` +
        ` ${((Date.now() - t0) / 1000).toFixed(0)} s`,
    );
    writeFileSync(join(v.out, 'cells.json'), `${JSON.stringify({ command: `npm run simulate:byzantine -- ${argv.join(' ')}`, cells }, null, 2)}\n`);
  }
  const table = matrixMarkdown(cells, strategies, modes, attackerCounts);
  writeFileSync(join(v.out, 'matrix.md'), `# Byzantine matrix\n\nCommand: \`npm run simulate:byzantine -- ${argv.join(' ')}\` (${((Date.now() - started) / 60000).toFixed(0)} min)\n\n${table}`);
  console.log(table);
  return 0;
}

if (import.meta.url === `file://${process.argv[1]}`) process.exitCode = await main(process.argv.slice(2));
