// The per-arm statistics on hand-computed cases.
import { describe, expect, it } from 'vitest';
import type { RunSummary } from './metrics.ts';
import { armSummaries, gapClosed, meanInterval } from './seeds.ts';

function run(baseline: RunSummary['baseline'], finalLoss: number, extra: Partial<RunSummary> = {}): RunSummary {
  return {
    label: '', source: 'simulation', evaluated: true, strategy: 'fedavg', params: '{}', baseline, partition: 'genre', tabs: 2, byzantineSlots: [],
    stepsPerTab: 10, batchSize: 4, wallS: 1, baseLoss: 2.3, finalLoss, finalOwnLoss: finalLoss - 0.1, finalBySlot: {}, spread: null, curve: [],
    target: null, timeToTargetS: null, samplesToTarget: null, bytesPerPeer: 0, merges: 0, faults: [], ownGenre: { peers: 0, baseLoss: null, finalLoss: null, curve: [] },
    missing: [], ...extra,
  };
}

describe('gap closed', () => {
  it('is (L_local − L_arm)/(L_local − L_central)', () => {
    // local 2.20, central 2.10: an arm at 2.15 closes half the gap, one at 2.20 none, one at 2.08 more than all.
    expect(gapClosed(2.2, 2.15, 2.1)).toBeCloseTo(0.5, 12);
    expect(gapClosed(2.2, 2.2, 2.1)).toBe(0);
    expect(gapClosed(2.2, 2.08, 2.1)).toBeCloseTo(1.2, 12);
    expect(gapClosed(2.2, 2.15, 2.25)).toBeNull();
  });

  it('is paired per seed, with mean, sd and a t interval over the seeds', () => {
    const rows = [
      { arm: 'local-only', seed: 1, summary: run('local', 2.2) },
      { arm: 'local-only', seed: 2, summary: run('local', 2.3) },
      { arm: 'centralised', seed: 1, summary: run('central', 2.0) },
      { arm: 'centralised', seed: 2, summary: run('central', 2.1) },
      { arm: 'fedavg', seed: 1, summary: run('none', 2.15, { bytesPerPeer: 1000, merges: 4 }) },
      { arm: 'fedavg', seed: 2, summary: run('none', 2.2, { bytesPerPeer: 3000, merges: 4 }) },
    ];
    const fedavg = armSummaries(rows).find((a) => a.arm === 'fedavg')!;
    // Seed 1: (2.2 − 2.15)/0.2 = 0.25; seed 2: (2.3 − 2.2)/0.2 = 0.5.
    expect(fedavg.gapClosedPaired.bySeed[1]).toBeCloseTo(0.25, 12);
    expect(fedavg.gapClosedPaired.bySeed[2]).toBeCloseTo(0.5, 12);
    expect(fedavg.gapClosedPaired.mean).toBeCloseTo(0.375, 12);
    // sd of {0.25, 0.5} = 0.1768; half-width = 12.706 × 0.1768 / √2 = 1.588.
    expect(fedavg.gapClosedPaired.sd).toBeCloseTo(0.17678, 4);
    expect(fedavg.gapClosedPaired.ci95[1] - fedavg.gapClosedPaired.mean).toBeCloseTo(1.5883, 3);
    // Of the means: local 2.25, central 2.05, fedavg 2.175 → 0.375.
    expect(fedavg.gapClosedOfMeans).toBeCloseTo(0.375, 12);
    // 2000 bytes per peer over 2 merges each (4 merges of 2 peers).
    expect(fedavg.bytesPerPeer).toBe(2000);
    expect(fedavg.bytesPerPeerPerMerge).toBe(1000);
    expect(fedavg.ownGenre.mean).toBeCloseTo(2.075, 12);
    // The reference of the paired loss differences is the swarm arm itself; the local arm is 0.075 worse on average.
    const local = armSummaries(rows).find((a) => a.arm === 'local-only')!;
    expect(local.vsReference?.arm).toBe('fedavg');
    expect(local.vsReference?.mean).toBeCloseTo(0.075, 12);
    expect(local.gapClosedPaired.mean).toBe(0);
  });

  it('has no interval from one value', () => {
    expect(meanInterval([0.4]).ci95.every(Number.isNaN)).toBe(true);
  });
});
