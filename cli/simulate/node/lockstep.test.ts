// The lockstep baselines train exactly as the swarm's peers do: without merges they reproduce the node engine's
// local-only peers evaluation for evaluation (same model recipe, same batches, their own optimiser states), and a
// synchronous merge of identical peers leaves each peer as it was.
import { beforeAll, describe, expect, it } from 'vitest';
import { useTestBackend } from '../../../core/test-backend.ts';
import { maxAbsDiff, naiveProduct, randomAdapter } from '../../../core/merge/testing.ts';
import type { RunLogData } from '../../../core/swarm/run-log.ts';
import { modelSha256 } from '../command.ts';
import { SIM_EVENTS, type HeldOutDetail } from '../metrics.ts';
import { parseSimulateArgs, type LockstepArm, type SimulationSettings } from '../options.ts';
import { runNodeSimulation } from './run.ts';
import { mergeRound, runLockstep } from './lockstep.ts';

function settings(extra: string[]): SimulationSettings {
  const cmd = parseSimulateArgs(['--engine', 'node', '--steps', '4', '--batch', '2', '--seq', '32', '--eval', '2', '--eval-batches', '1', '--threads', '1', '--seed', '3', ...extra]);
  if (cmd === 'help') throw new Error('help');
  return cmd.base;
}

const env = (s: SimulationSettings) => ({ log: () => undefined, modelSha256: modelSha256(s.modelUrl), root: process.cwd(), progressEveryS: 3600 });

/** Every evaluation of a run: slot, step and the loss on each genre, in (slot, step) order. */
function evaluations(log: RunLogData): Array<Pick<HeldOutDetail, 'slot' | 'step' | 'byGenre'>> {
  return log.records
    .filter((r) => r.type === 'event' && r.name === SIM_EVENTS.heldOut)
    .map((r) => JSON.parse((r as { detail: string }).detail) as HeldOutDetail)
    .map(({ slot, step, byGenre }) => ({ slot, step, byGenre }))
    .sort((a, b) => a.slot - b.slot || a.step - b.step);
}

async function local(tabs: number): Promise<ReturnType<typeof evaluations>> {
  const s = { ...settings(['--tabs', String(tabs)]), merge: false };
  return evaluations((await runNodeSimulation(s, env(s))).runLog);
}

async function lockstep(arm: LockstepArm, tabs: number, h: number): Promise<ReturnType<typeof evaluations>> {
  const s = { ...settings(['--tabs', String(tabs), '--h', String(h)]), merge: false, lockstep: arm };
  return evaluations((await runLockstep(s, env(s))).runLog);
}

beforeAll(async () => {
  await useTestBackend();
});

describe('lockstep baselines', () => {
  it('with one peer, sync-avg and sync-dp are local training, evaluation for evaluation', async () => {
    const reference = await local(1);
    expect(reference.map((e) => e.step)).toEqual([0, 2, 4]);
    // Training moved the loss: the comparison is not between two untrained models.
    expect(reference[2].byGenre.fiction).not.toBe(reference[0].byGenre.fiction);
    expect(await lockstep('sync-avg', 1, 2)).toEqual(reference);
    expect(await lockstep('sync-dp', 1, 2)).toEqual(reference);
  }, 300_000);

  it('sync-avg without a merge keeps each peer on its own batches and optimiser state', async () => {
    const reference = await local(2);
    expect(reference.filter((e) => e.step === 4).map((e) => e.byGenre.fiction)[0]).not.toBe(reference.filter((e) => e.step === 4).map((e) => e.byGenre.fiction)[1]);
    // H = 10 > 4 steps: no merge happens, so each slot must match the engine's local-only peer of that slot.
    expect(await lockstep('sync-avg', 2, 10)).toEqual(reference);
  }, 300_000);

  it('a synchronous merge of identical peers gives every peer the adapter it had', () => {
    const adapter = randomAdapter(9, { r: 2 });
    for (const strategy of ['fedavg', 'exact-average']) {
      const merged = mergeRound([adapter, adapter, adapter], ['peerAAAAAA', 'peerBBBBBB', 'peerCCCCCC'], strategy, {}, { samples: 8, seed: 1 });
      expect(merged).toHaveLength(3);
      for (const result of merged) {
        // Compared as products B·A: exact-average may return other factors of the same product.
        for (const name of adapter.modules.keys()) expect(maxAbsDiff(naiveProduct(result, name), naiveProduct(adapter, name))).toBeLessThan(1e-5);
      }
    }
  });
});
