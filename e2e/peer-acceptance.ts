// The acceptance comparison, too long for CI, as a preset of `swarm simulate`: 4 real tabs, one fiction genre
// each, train N local steps with the default strategy (merging); the local-only baseline trains the same N steps
// from the same seeds with merging off. Prints each tab's held-out loss on its own genre and the mean over all four
// genres, for base, local-only and merged.
// Usage: npx tsx e2e/peer-acceptance.ts [--steps 60] [--h 5] [--batch 4] [--seq 64] [--model /models/x/] [--url http://…]
import { parseArgs } from 'node:util';
import { parseSimulateArgs, type SimulateCommand } from '../cli/simulate/options.ts';
import { simulate } from '../cli/simulate/command.ts';

const { values } = parseArgs({
  options: {
    steps: { type: 'string', default: '60' },
    h: { type: 'string', default: '5' },
    batch: { type: 'string', default: '4' },
    seq: { type: 'string', default: '64' },
    model: { type: 'string', default: '/models/swarm-brown-byte-gpt2/' },
    url: { type: 'string' },
    out: { type: 'string', default: 'reports/acceptance' },
  },
});

const args = [
  '--tabs', '4', '--steps', values.steps!, '--h', values.h!, '--batch', values.batch!, '--seq', values.seq!, '--model', values.model!,
  '--eval', values.steps === '0' ? '10' : values.steps!, '--eval-batches', '4', '--baselines', 'local', '--out', values.out!,
  ...(values.url ? ['--url', values.url] : []),
];
const cmd = parseSimulateArgs(args) as SimulateCommand;
const { results } = await simulate(cmd, { commandLine: `npx tsx e2e/peer-acceptance.ts ${process.argv.slice(2).join(' ')}` });
const local = results.find((r) => !r.settings.merge)!;
const merged = results.find((r) => r.settings.merge)!;
console.log(`\n${values.steps} local steps per tab, H = ${values.h}, batch ${values.batch}×${values.seq}, strategy ${merged.manifest.strategy.name}; held-out nats/byte`);
console.log('genre            | own: base  local  merged | all 4 genres: base  local  merged | merges');
let localMean = 0;
let mergedMean = 0;
for (const m of merged.tabs) {
  const l = local.tabs.find((t) => t.slot === m.slot)!;
  const mp = m.probe!;
  const lp = l.probe!;
  localMean += lp.heldOut!.allGenres / merged.tabs.length;
  mergedMean += mp.heldOut!.allGenres / merged.tabs.length;
  console.log(
    `${(mp.genres[0] ?? '?').padEnd(16)} | ${mp.baseHeldOut!.own.toFixed(3)}  ${lp.heldOut!.own.toFixed(3)}  ${mp.heldOut!.own.toFixed(3)} | ` +
      `${mp.baseHeldOut!.allGenres.toFixed(3)}  ${lp.heldOut!.allGenres.toFixed(3)}  ${mp.heldOut!.allGenres.toFixed(3)} | ${mp.merges}`,
  );
}
console.log(`mean over tabs of the all-genre held-out loss: local-only ${localMean.toFixed(4)}, merged ${mergedMean.toFixed(4)} (${mergedMean < localMean ? 'merged is better' : 'merged is NOT better'})`);
console.log(`report: ${values.out}/report.html`);
