import { describe, expect, it } from 'vitest';
import { decodeRunManifest, runManifestId, type RunManifest } from '../wire/run-manifest.ts';
import { PrivacyBudget, PrivacyBudgetSpentError } from './budget.ts';
import { noiseMultiplierOf, parsePrivacyConfig, PrivacyConfigError, volunteerRecordsProblem, type PrivacyConfig } from './config.ts';
import { describePrivacySpent, formatDelta, formatEpsilon } from './describe.ts';
import { epsilonAfter } from './rdp.ts';

const GOOD: PrivacyConfig = { targetEpsilon: 8, delta: 1e-5, clipNorm: 0.5, samplingRate: 0.05, maxPublishes: 40 };

describe('privacy configuration', () => {
  it('accepts a budget and chooses the smallest noise multiplier that covers every planned publish', () => {
    const config = parsePrivacyConfig({ ...GOOD });
    const z = noiseMultiplierOf(config);
    const plan = { samplingRate: 0.05, steps: 40, delta: 1e-5 };
    expect(epsilonAfter({ ...plan, noiseMultiplier: z }).epsilon).toBeLessThanOrEqual(8);
    expect(epsilonAfter({ ...plan, noiseMultiplier: z * 0.99 }).epsilon).toBeGreaterThan(8);
  });

  it.each([
    [{ targetEpsilon: 0 }, /ε must be above 0/],
    [{ targetEpsilon: -2 }, /ε must be above 0/],
    [{ delta: 1 }, /δ must be above 0 and below 1/],
    [{ delta: 0 }, /δ must be above 0/],
    [{ clipNorm: 0 }, /clip norm must be above 0/],
    [{ samplingRate: 0 }, /share of records/],
    [{ maxPublishes: 2.5 }, /whole number/],
    [{ targetEpsilon: Number.NaN }, /finite number/],
    [{ noiseMultiplier: 0.3 }, /noise multiplier 0.3 would spend ε = \d+.*raise the noise multiplier/],
    [{ targetEpsilon: 0.001, samplingRate: 1, maxPublishes: 100000 }, /would need noise above 100 times the clip norm/],
    [{ extra: 1 }, /unknown field 'extra'/],
  ])('refuses %o with a reason in words', (change, reason) => {
    expect(() => parsePrivacyConfig({ ...GOOD, ...change })).toThrow(PrivacyConfigError);
    expect(() => parsePrivacyConfig({ ...GOOD, ...change })).toThrow(reason);
  });

  it('accepts a fixed noise multiplier the budget affords', () => {
    expect(parsePrivacyConfig({ ...GOOD, noiseMultiplier: 5 }).noiseMultiplier).toBe(5);
  });

  it('refuses δ ≥ 1/n for a volunteer with n records, in words', () => {
    expect(volunteerRecordsProblem(GOOD, 1000)).toBeNull();
    expect(volunteerRecordsProblem(GOOD, 99_999)).toBeNull();
    expect(volunteerRecordsProblem(GOOD, 100_000)).toMatch(/δ = 1e-5 is not below 1\/100000 .*one record to be published as it is/);
    expect(volunteerRecordsProblem(GOOD, 0)).toMatch(/no complete record/);
  });
});

describe('the run manifest carries the privacy object', () => {
  const run: RunManifest = {
    formatVersion: 1,
    runId: 'brown-lora-1',
    baseModel: { id: 'swarm/gpt2-tiny', url: '/models/gpt2-tiny/', sha256: 'ab'.repeat(32) },
    lora: { r: 8, alpha: 16, targetModules: ['attn.c_attn'] },
    strategy: { name: 'fedavg', params: {} },
    localSteps: 20,
    schedule: { learningRate: 0.001 },
    data: { partition: 'genre' },
    codec: 'fp16',
  };

  it('is optional (absent = off, the id unchanged) and round-trips when present', () => {
    const off = decodeRunManifest(run);
    expect(off.ok && off.value.privacy).toBeUndefined();
    const on = decodeRunManifest({ ...run, privacy: GOOD });
    expect(on.ok && on.value.privacy).toEqual(GOOD);
    expect(runManifestId({ ...run, privacy: GOOD })).not.toBe(runManifestId(run));
  });

  it('refuses a bad privacy object with the reason', () => {
    const bad = decodeRunManifest({ ...run, privacy: { ...GOOD, targetEpsilon: 0 } });
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.detail).toMatch(/run\.privacy\.targetEpsilon is 0: ε must be above 0/);
  });
});

describe('privacy ledger', () => {
  it('spends ε publish by publish, stops at the budget, and survives a checkpoint', () => {
    const budget = new PrivacyBudget(parsePrivacyConfig({ ...GOOD }));
    let last = 0;
    while (budget.canPublish()) {
      budget.recordPublish();
      expect(budget.epsilonSpent).toBeGreaterThan(last);
      last = budget.epsilonSpent;
    }
    expect(budget.publishes).toBe(GOOD.maxPublishes);
    expect(budget.epsilonSpent).toBeLessThanOrEqual(GOOD.targetEpsilon * (1 + 1e-9));
    expect(budget.epsilonSpent).toBeGreaterThan(GOOD.targetEpsilon * 0.98);
    expect(() => budget.recordPublish()).toThrow(PrivacyBudgetSpentError);
    expect(budget.status().exhausted).toBe(true);
    const restored = PrivacyBudget.fromJSON(JSON.parse(JSON.stringify(budget)));
    expect(restored.publishes).toBe(GOOD.maxPublishes);
    expect(restored.epsilonSpent).toBe(budget.epsilonSpent);
    expect(restored.canPublish()).toBe(false);
  });

  it('refuses a checkpoint that is not a ledger', () => {
    expect(() => PrivacyBudget.fromJSON({ version: 2 })).toThrow(/version 2/);
    expect(() => PrivacyBudget.fromJSON({ version: 1, config: GOOD, publishes: -1 })).toThrow(/whole number/);
    expect(() => PrivacyBudget.fromJSON({ version: 1, config: { ...GOOD, delta: 2 }, publishes: 0 })).toThrow(/δ must be/);
    expect(() => PrivacyBudget.fromJSON('{"version":1}')).toThrow(PrivacyConfigError);
  });
});

describe('describing the privacy spent to a volunteer', () => {
  it('writes ε spent, the budget and δ the way the page shows them', () => {
    expect(describePrivacySpent({ epsilonSpent: 2.0837, targetEpsilon: 8, delta: 1e-5, exhausted: false })).toBe('your files: ε = 2.1 of 8 at δ = 1e-5');
    expect(describePrivacySpent({ epsilonSpent: 0.349, targetEpsilon: 1, delta: 2.5e-7, exhausted: false })).toBe('your files: ε = 0.35 of 1 at δ = 2.5e-7');
    expect(describePrivacySpent({ epsilonSpent: 7.9996, targetEpsilon: 8, delta: 1e-5, exhausted: true })).toBe(
      'your files: ε = 8 of 8 at δ = 1e-5 (budget spent: your updates are no longer shared)',
    );
    expect(describePrivacySpent(null)).toBe('your files: this run does not use differential privacy');
    expect(formatEpsilon(0)).toBe('0');
    expect(formatEpsilon(12.4)).toBe('12');
    expect(formatDelta(0.01)).toBe('0.01');
  });
});
