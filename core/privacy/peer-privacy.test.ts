import { describe, expect, it } from 'vitest';
import { randomAdapter } from '../merge/testing.ts';
import { cloneAdapter } from '../model/adapter.ts';
import { adapterDifference, updateNorm } from './mechanism.ts';
import { NoiseSource } from './noise-source.ts';
import { PeerPrivacy, splitIntoRecords } from './peer-privacy.ts';
import type { PrivacyConfig } from './config.ts';

const CONFIG: PrivacyConfig = { targetEpsilon: 8, delta: 1e-5, clipNorm: 0.05, samplingRate: 0.2, maxPublishes: 3 };

function seeded(seed: number) {
  return { sampling: NoiseSource.fromTestSeed(seed), noise: NoiseSource.fromTestSeed(seed + 1) };
}

describe('a peer\'s differential privacy', () => {
  it('samples each record with probability q per round, one record per source, and never a partial record', () => {
    const privacy = new PeerPrivacy(CONFIG, 10, seeded(1));
    const text = Uint8Array.from({ length: 10_005 }, (_, i) => i % 251);
    privacy.addFile(text);
    expect(privacy.recordCount).toBe(1000);
    const counts: number[] = [];
    for (let round = 0; round < 20; round++) {
      privacy.startRound();
      counts.push(privacy.sampled);
      const sources = privacy.sampledSources(0.5);
      expect(sources).toHaveLength(privacy.sampled);
      for (const s of sources) {
        expect(s.tokens.length).toBe(10);
        const index = Number(s.name.slice('record:'.length));
        expect(Array.from(s.tokens)).toEqual(Array.from(text.subarray(10 * index, 10 * index + 10)));
      }
      expect(sources.reduce((w, s) => w + s.weight, 0)).toBeCloseTo(0.5, 12);
    }
    // 20 rounds × 1000 records at q = 0.2: mean 4000, sd √(20000·0.2·0.8) ≈ 57; ±5 sd.
    const total = counts.reduce((a, b) => a + b, 0);
    expect(total).toBeGreaterThan(4000 - 5 * 57);
    expect(total).toBeLessThan(4000 + 5 * 57);
    expect(new Set(counts).size).toBeGreaterThan(1);
  });

  it('releases anchor + update clipped to C + noise, counts each release, and samples nothing once spent', () => {
    const privacy = new PeerPrivacy(CONFIG, 10, seeded(5));
    privacy.addFile(new Uint8Array(1000));
    const anchor = randomAdapter(3, { r: 2, modules: [{ name: 'm', inDim: 8, outDim: 8 }] });
    const current = cloneAdapter(anchor);
    for (const p of current.modules.values()) p.a.fill(5);
    for (let n = 1; n <= 3; n++) {
      privacy.startRound();
      const { published, clip } = privacy.release(current, anchor);
      expect(clip.norm).toBeGreaterThan(CONFIG.clipNorm);
      expect(updateNorm(adapterDifference(published, anchor))).toBeGreaterThan(0);
      expect(privacy.status().publishes).toBe(n);
    }
    expect(privacy.canPublish()).toBe(false);
    expect(privacy.status().exhausted).toBe(true);
    expect(() => privacy.release(current, anchor)).toThrow(/over the budget of 8/);
    privacy.startRound();
    expect(privacy.sampled).toBe(0);
  });

  it('restores the largest spend of its own setting, never a lower one, and ignores another setting', () => {
    const privacy = new PeerPrivacy(CONFIG, 10, seeded(9));
    expect(privacy.restoreLedger([{ version: 1, config: { ...CONFIG, targetEpsilon: 4 }, publishes: 3 }])).toBe(false);
    expect(privacy.status().publishes).toBe(0);
    expect(privacy.restoreLedger([{ version: 1, config: CONFIG, publishes: 1 }, { version: 1, config: { ...CONFIG }, publishes: 2 }])).toBe(true);
    expect(privacy.status().publishes).toBe(2);
    privacy.restoreLedger([{ version: 1, config: CONFIG, publishes: 1 }]);
    expect(privacy.status().publishes).toBe(2);
  });

  it('refuses files whose records δ cannot cover, in words', () => {
    const privacy = new PeerPrivacy({ ...CONFIG, delta: 0.01 }, 10, seeded(2));
    expect(privacy.fileProblem(new Uint8Array(500))).toBeNull();
    privacy.addFile(new Uint8Array(500));
    expect(privacy.fileProblem(new Uint8Array(500))).toMatch(/δ = 0\.01 is not below 1\/100 \(your files make 100 records\)/);
    expect(splitIntoRecords(new Uint8Array(25), 10)).toHaveLength(2);
  });
});
