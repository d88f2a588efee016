// Merged against local-only, as a preset of `swarm simulate`: 4 real tabs against the real relay, one fiction
// genre each, train N local steps with the default strategy (merging); the local-only baseline trains the same N
// steps from the same seeds with merging off. The learning rate is held at its peak after warm-up by default, as
// in the first hours of the default run (its decay spans 2000 steps). Used by e2e/merge-benefit.spec.ts, and as a
// longer command:
//   npx tsx e2e/peer-acceptance.ts [--steps 60] [--h 5] [--batch 4] [--seq 64] [--schedule constant|cosine] [--model /models/x/] [--url http://…]
import { parseArgs } from 'node:util';
import { parseSimulateArgs, type SimulateCommand } from '../cli/simulate/options.ts';
import { simulate } from '../cli/simulate/command.ts';

export interface AcceptanceOptions {
  steps: number;
  h: number;
  batch: number;
  seq: number;
  schedule: 'constant' | 'cosine';
  model: string;
  out: string;
  url?: string;
  evalBatches: number;
}

export interface TabComparison {
  genre: string;
  merges: number;
  base: { own: number; allGenres: number };
  localOnly: { own: number; allGenres: number };
  merged: { own: number; allGenres: number };
}

export interface AcceptanceResult {
  tabs: TabComparison[];
  localOnlyMean: number;
  mergedMean: number;
  strategy: string;
  table: string;
}

export const ACCEPTANCE_DEFAULTS: AcceptanceOptions = {
  steps: 60, h: 5, batch: 4, seq: 64, schedule: 'constant', model: '/models/swarm-brown-byte-gpt2/', out: 'reports/acceptance', evalBatches: 4,
};

export async function compareMergedWithLocalOnly(o: AcceptanceOptions, log?: (line: string) => void): Promise<AcceptanceResult> {
  const args = [
    '--tabs', '4', '--steps', String(o.steps), '--h', String(o.h), '--batch', String(o.batch), '--seq', String(o.seq), '--model', o.model,
    '--eval', String(o.steps), '--eval-batches', String(o.evalBatches), '--baselines', 'local', '--schedule', o.schedule, '--out', o.out,
    ...(o.url ? ['--url', o.url] : []),
  ];
  const { results } = await simulate(parseSimulateArgs(args) as SimulateCommand, { log, commandLine: `compareMergedWithLocalOnly ${args.join(' ')}` });
  const local = results.find((r) => !r.settings.merge)!;
  const merged = results.find((r) => r.settings.merge)!;
  const tabs: TabComparison[] = merged.tabs.map((m) => {
    const mp = m.probe!;
    const lp = local.tabs.find((t) => t.slot === m.slot)!.probe!;
    return {
      genre: mp.genres[0] ?? '?',
      merges: mp.merges,
      base: { own: mp.baseHeldOut!.own, allGenres: mp.baseHeldOut!.allGenres },
      localOnly: { own: lp.heldOut!.own, allGenres: lp.heldOut!.allGenres },
      merged: { own: mp.heldOut!.own, allGenres: mp.heldOut!.allGenres },
    };
  });
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const localOnlyMean = mean(tabs.map((t) => t.localOnly.allGenres));
  const mergedMean = mean(tabs.map((t) => t.merged.allGenres));
  const strategy = merged.manifest.strategy.name;
  const table = [
    `${o.steps} local steps per tab, H = ${o.h}, batch ${o.batch}×${o.seq}, ${o.schedule} learning rate, strategy ${strategy}; held-out nats/byte`,
    'genre            | own: base  local  merged | all 4 genres: base  local  merged | merges',
    ...tabs.map(
      (t) =>
        `${t.genre.padEnd(16)} | ${t.base.own.toFixed(3)}  ${t.localOnly.own.toFixed(3)}  ${t.merged.own.toFixed(3)} | ` +
        `${t.base.allGenres.toFixed(3)}  ${t.localOnly.allGenres.toFixed(3)}  ${t.merged.allGenres.toFixed(3)} | ${t.merges}`,
    ),
    `mean over tabs of the all-genre held-out loss: local-only ${localOnlyMean.toFixed(4)}, merged ${mergedMean.toFixed(4)} ` +
      `(${mergedMean < localOnlyMean ? 'merged is better' : 'merged is NOT better'})`,
  ].join('\n');
  return { tabs, localOnlyMean, mergedMean, strategy, table };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      steps: { type: 'string', default: String(ACCEPTANCE_DEFAULTS.steps) },
      h: { type: 'string', default: String(ACCEPTANCE_DEFAULTS.h) },
      batch: { type: 'string', default: String(ACCEPTANCE_DEFAULTS.batch) },
      seq: { type: 'string', default: String(ACCEPTANCE_DEFAULTS.seq) },
      schedule: { type: 'string', default: ACCEPTANCE_DEFAULTS.schedule },
      model: { type: 'string', default: ACCEPTANCE_DEFAULTS.model },
      url: { type: 'string' },
      out: { type: 'string', default: ACCEPTANCE_DEFAULTS.out },
    },
  });
  const schedule = values.schedule === 'cosine' ? 'cosine' : 'constant';
  const result = await compareMergedWithLocalOnly({
    ...ACCEPTANCE_DEFAULTS, steps: Number(values.steps), h: Number(values.h), batch: Number(values.batch), seq: Number(values.seq),
    schedule, model: values.model!, out: values.out!, url: values.url,
  }, (line) => console.log(line));
  console.log(`\n${result.table}\nreport: ${values.out}/report.html`);
}
