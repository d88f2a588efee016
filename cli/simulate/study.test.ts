// The study runner's planning: which runs a grid makes, which learning rate tuning picks, and how resumed results
// are skipped.
import { describe, expect, it } from 'vitest';
import type { RunSummary } from './metrics.ts';
import { DEFAULT_GRID, reportRuns, runSettings, tunedLr, tuningRuns, type StudyGrid, type StudyResult } from './study.ts';

const grid: StudyGrid = { ...DEFAULT_GRID, seeds: [1, 2], tune: { lrs: [0.003, 0.01], seeds: [101, 102] } };

function tuned(arm: string, lr: number, seed: number, finalLoss: number): StudyResult {
  return { key: `tune|${arm}|genre|8|seed${seed}|lr${lr}`, phase: 'tune', arm, partition: 'genre', peers: 8, seed, lr, summary: { finalLoss } as RunSummary, realS: 1, load1: 1 };
}

describe('study grid', () => {
  it('tunes every arm at every rate and seed on the validation split', () => {
    const runs = tuningRuns(grid);
    expect(runs).toHaveLength(grid.arms.length * 2 * 2);
    const s = runSettings(grid, runs[0]);
    expect(s.evalSplit).toBe('validation');
    expect(runSettings(grid, { ...runs[0], phase: 'report' }).evalSplit).toBe('heldout');
  });

  it('picks the rate with the lowest mean final validation loss, and none before every tuning seed ran', () => {
    const results = [tuned('fedavg', 0.003, 101, 2.2), tuned('fedavg', 0.003, 102, 2.1), tuned('fedavg', 0.01, 101, 2.1), tuned('fedavg', 0.01, 102, 2.16)];
    // Means: 0.003 → 2.15, 0.01 → 2.13.
    expect(tunedLr(grid, results, 'fedavg', 'genre', 8, 0.003)).toBe(0.01);
    expect(tunedLr(grid, results.slice(0, 3), 'fedavg', 'genre', 8, 0.003)).toBeNaN();
    expect(tunedLr({ ...grid, tune: null }, [], 'fedavg', 'genre', 8, 0.003)).toBe(0.003);
  });

  it('maps arms to baselines and swarm runs with the run seed and rate', () => {
    const runs = reportRuns({ ...grid, tune: null }, [], 0.003);
    expect(runs).toHaveLength(grid.arms.length * 2);
    const byArm = Object.fromEntries(runs.filter((r) => r.seed === 2).map((r) => [r.arm.name, runSettings(grid, r)]));
    expect(byArm['local-only']).toMatchObject({ merge: false, centralised: false, lockstep: null, seed: 2, tabs: 8, lr: 0.003 });
    expect(byArm.centralised).toMatchObject({ merge: false, centralised: true });
    expect(byArm['sync-avg']).toMatchObject({ lockstep: 'sync-avg', strategy: 'fedavg' });
    expect(byArm['sync-dp']).toMatchObject({ lockstep: 'sync-dp' });
    expect(byArm.fedavg).toMatchObject({ merge: true, lockstep: null, strategy: 'fedavg', localSteps: 5, steps: 60 });
    expect(new Set(runs.map((r) => r.key)).size).toBe(runs.length);
  });
});
