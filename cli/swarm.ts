#!/usr/bin/env tsx
// The `swarm` command: one entry point, one module per subcommand (loaded only when used).
export {};

interface Subcommand {
  summary: string;
  load: () => Promise<{ main(argv: string[]): Promise<number | void> }>;
}

const SUBCOMMANDS: Record<string, Subcommand> = {
  start: { summary: 'start the relay and the app on the embedded defaults', load: () => import('./start.ts') },
  relay: { summary: 'run a bootstrap relay (circuit relay v2 + WebSockets)', load: () => import('./relay.ts') },
  peer: { summary: 'a headless peer in Node: joins a run next to browser tabs, trains, gossips, merges, checkpoints', load: () => import('./peer.ts') },
  merge: { summary: 'merge HF PEFT LoRA adapters on disk with any registered strategy', load: () => import('./merge.ts') },
  finetune: { summary: 'LoRA fine-tune the base model on one genre, alone; prints held-out loss before and after', load: () => import('./finetune.ts') },
  simulate: { summary: 'run a swarm of real browser tabs with faults, baselines and sweeps; writes a report', load: () => import('./simulate.ts') },
  report: { summary: 'compare run logs (a live run\'s dashboard export, simulations) in one table and report', load: () => import('./report.ts') },
  pretrain: { summary: 'train the default base model from scratch (reproducible)', load: () => import('./pretrain.ts') },
  'prepare-assets': {
    summary: 'prepare the Brown corpus and the tfjs .wasm files under public/ (build time, not committed)',
    load: () => import('./prepare-assets.ts'),
  },
};

function usage(): string {
  const width = Math.max(...Object.keys(SUBCOMMANDS).map((k) => k.length));
  return [
    'usage: swarm <command> [options]   (swarm <command> --help for its options)',
    '',
    ...Object.entries(SUBCOMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
  ].join('\n');
}

const [command, ...rest] = process.argv.slice(2);
if (!command || command === '--help' || command === '-h') {
  console.log(usage());
  process.exit(command ? 0 : 1);
}
const sub = SUBCOMMANDS[command];
if (!sub) {
  console.error(`swarm: unknown command '${command}'\n\n${usage()}`);
  process.exit(2);
}
const mod = await sub.load();
const code = await mod.main(rest);
process.exitCode = typeof code === 'number' ? code : 0;
