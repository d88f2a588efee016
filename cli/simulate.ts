// `swarm simulate`: multi-tab swarm simulations with faults, baselines and sweeps (see cli/simulate/options.ts
// for every option, or run with --help).
import { HELP, parseSimulateArgs, SimulateArgumentError } from './simulate/options.ts';
import { MissingModelError, simulate } from './simulate/command.ts';
import { comparisonMarkdown } from './simulate/report.ts';
import { NoChromiumError } from './simulate/tabs.ts';
import { SimulationTabError } from './simulate/run.ts';
import { AssetsMissingError, ensurePreparedAssets } from './prepare-assets.ts';

export async function main(argv: string[]): Promise<number> {
  let cmd;
  try {
    cmd = parseSimulateArgs(argv);
  } catch (error) {
    if (error instanceof SimulateArgumentError) {
      console.error(`swarm simulate: ${error.message}`);
      return 2;
    }
    throw error;
  }
  if (cmd === 'help') {
    console.log(HELP);
    return 0;
  }
  try {
    ensurePreparedAssets();
  } catch (error) {
    if (!(error instanceof AssetsMissingError)) throw error;
    console.error(`swarm simulate: ${error.message}`);
    return 1;
  }
  try {
    const outcome = await simulate(cmd, { commandLine: `npm run simulate -- ${argv.join(' ')}` });
    console.log(`\n${comparisonMarkdown(outcome.summaries.map((s) => ({ label: s.label, summary: s })), outcome.target)}`);
    if (outcome.outDir) console.log(`report: ${outcome.outDir}/report.html (run logs under ${outcome.outDir}/runs/)`);
    return 0;
  } catch (error) {
    if (error instanceof MissingModelError || error instanceof NoChromiumError || error instanceof SimulationTabError) {
      console.error(`swarm simulate: ${error.message}`);
      return 1;
    }
    throw error;
  }
}
