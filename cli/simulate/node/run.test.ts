// The node engine is deterministic: the same seed and options give the same run log, whether its peers run in this
// thread or spread over worker threads; and the log really depends on the seed.
import { beforeAll, describe, expect, it } from 'vitest';
import { useTestBackend } from '../../../core/test-backend.ts';
import { runLogToJson } from '../../../core/swarm/run-log.ts';
import { modelSha256 } from '../command.ts';
import { parseSimulateArgs, type SimulationSettings } from '../options.ts';
import { runNodeSimulation } from './run.ts';

function settings(extra: string[]): SimulationSettings {
  const cmd = parseSimulateArgs(['--engine', 'node', '--tabs', '3', '--steps', '4', '--h', '2', '--batch', '2', '--seq', '32', '--eval', '2', '--eval-batches', '1', ...extra]);
  if (cmd === 'help') throw new Error('help');
  return cmd.base;
}

async function runLog(extra: string[]): Promise<{ json: string; merges: number }> {
  const s = settings(extra);
  const result = await runNodeSimulation(s, { log: () => undefined, modelSha256: modelSha256(s.modelUrl), root: process.cwd(), progressEveryS: 3600 });
  return { json: runLogToJson(result.runLog), merges: result.summary.merges };
}

beforeAll(async () => {
  await useTestBackend();
});

describe('swarm simulate --engine node', () => {
  it('gives an identical run log for the same seed, in one thread or two, and another for another seed', async () => {
    const first = await runLog(['--seed', '5', '--threads', '1']);
    const again = await runLog(['--seed', '5', '--threads', '1']);
    const threaded = await runLog(['--seed', '5', '--threads', '2']);
    const otherSeed = await runLog(['--seed', '6', '--threads', '1']);
    // The runs merged (3 peers, H = 2, 4 steps: each peer merges at steps 2 and 4), so the logs hold real swarm work.
    expect(first.merges).toBeGreaterThanOrEqual(4);
    expect(again.json).toBe(first.json);
    expect(threaded.json).toBe(first.json);
    expect(otherSeed.json).not.toBe(first.json);
  }, 300_000);
});
