import { describe, expect, it } from 'vitest';
import type { Adapter } from '../model/adapter.ts';
import { MergeParamError } from '../merge/registry.ts';
import { getOuterOptimizer, listOuterOptimizers, resolveOuterParams, UnknownOuterOptimizerError } from './registry.ts';
import { roundFreshness, roundsOld, stalenessDiscount } from './freshness.ts';

/** One module of rank 1, inDim 1, outDim 1: the adapter is the pair (a, b), so each step can be worked out by hand. */
function pair(a: number, b: number): Adapter {
  return {
    baseModelId: 'm',
    config: { r: 1, alpha: 1, targetModules: ['attn.c_attn'] },
    modules: new Map([['transformer.h.0.attn.c_attn', { a: Float32Array.of(a), b: Float32Array.of(b), inDim: 1, outDim: 1 }]]),
  };
}
const valuesOf = (x: Adapter) => {
  const p = x.modules.get('transformer.h.0.attn.c_attn')!;
  return [p.a[0], p.b[0]];
};

describe('outer optimisers', () => {
  it('none returns the merged adapter itself: no step, no buffer', () => {
    const merged = pair(0.6, -1);
    const out = getOuterOptimizer('none').step({ anchor: pair(1, 2), merged, momentum: null, freshness: 1 }, {});
    expect(out.adapter).toBe(merged);
    expect(out.momentum).toBeNull();
  });

  it('sgd steps from the anchor along Δ = anchor − merged: θ − η·Δ', () => {
    const sgd = getOuterOptimizer('sgd');
    const anchor = pair(1, 2);
    const merged = pair(0, 4); // Δ = (1, −2)
    // η = 0.5: (1 − 0.5·1, 2 − 0.5·(−2)) = (0.5, 3)
    expect(valuesOf(sgd.step({ anchor, merged, momentum: null, freshness: 1 }, resolveOuterParams(sgd, { lr: 0.5 })).adapter)).toEqual([0.5, 3]);
    // η = 1 lands on the merged adapter; η = 1.5 goes past it: (1 − 1.5, 2 + 3) = (−0.5, 5)
    expect(valuesOf(sgd.step({ anchor, merged, momentum: null, freshness: 1 }, resolveOuterParams(sgd, { lr: 1 })).adapter)).toEqual([0, 4]);
    expect(valuesOf(sgd.step({ anchor, merged, momentum: null, freshness: 1 }, resolveOuterParams(sgd, { lr: 1.5 })).adapter)).toEqual([-0.5, 5]);
    // Inputs are not touched.
    expect(valuesOf(anchor)).toEqual([1, 2]);
    expect(valuesOf(merged)).toEqual([0, 4]);
  });

  it('nesterov over three rounds: m ← β·m + Δ, θ ← θ − η·(Δ + β·m), starting from zero momentum', () => {
    const nesterov = getOuterOptimizer('nesterov');
    const params = resolveOuterParams(nesterov, { lr: 1, momentum: 0.5 });
    // Round 1: θ = 1, merged = 0.6 → Δ = 0.4; m = 0 + 0.4 = 0.4; θ' = 1 − (0.4 + 0.5·0.4) = 0.4.
    const r1 = nesterov.step({ anchor: pair(1, 1), merged: pair(0.6, 0.6), momentum: null, freshness: 1 }, params);
    expect(valuesOf(r1.momentum!)[0]).toBeCloseTo(0.4, 6);
    expect(valuesOf(r1.adapter)[0]).toBeCloseTo(0.4, 6);
    // Round 2: θ = 0.4, merged = 0.2 → Δ = 0.2; m = 0.5·0.4 + 0.2 = 0.4; θ' = 0.4 − (0.2 + 0.5·0.4) = 0.
    const r2 = nesterov.step({ anchor: r1.adapter, merged: pair(0.2, 0.2), momentum: r1.momentum, freshness: 1 }, params);
    expect(valuesOf(r2.momentum!)[0]).toBeCloseTo(0.4, 6);
    expect(valuesOf(r2.adapter)[0]).toBeCloseTo(0, 6);
    // Round 3: θ = 0, merged = −0.1 → Δ = 0.1; m = 0.5·0.4 + 0.1 = 0.3; θ' = 0 − (0.1 + 0.5·0.3) = −0.25.
    const r3 = nesterov.step({ anchor: r2.adapter, merged: pair(-0.1, -0.1), momentum: r2.momentum, freshness: 1 }, params);
    expect(valuesOf(r3.momentum!)[0]).toBeCloseTo(0.3, 6);
    expect(valuesOf(r3.adapter)[0]).toBeCloseTo(-0.25, 6);
    // The same round 3 at η = 0.5 takes half the step: −0.125.
    const half = nesterov.step({ anchor: r2.adapter, merged: pair(-0.1, -0.1), momentum: r2.momentum, freshness: 1 }, resolveOuterParams(nesterov, { lr: 0.5, momentum: 0.5 }));
    expect(valuesOf(half.adapter)[0]).toBeCloseTo(-0.125, 6);
  });

  it('nesterov keeps the stale share of Δ out of the momentum and applies it once', () => {
    const nesterov = getOuterOptimizer('nesterov');
    const params = resolveOuterParams(nesterov, { lr: 1, momentum: 0.5 });
    // θ = 1, merged = 0.6 (Δ = 0.4), previous m = 0.2, freshness 0.5:
    // m' = 0.5·0.2 + 0.5·0.4 = 0.3; θ' = 1 − (0.4 + 0.5·0.3) = 0.45.
    const stale = nesterov.step({ anchor: pair(1, 1), merged: pair(0.6, 0.6), momentum: pair(0.2, 0.2), freshness: 0.5 }, params);
    expect(valuesOf(stale.momentum!)[0]).toBeCloseTo(0.3, 6);
    expect(valuesOf(stale.adapter)[0]).toBeCloseTo(0.45, 6);
    // All fresh: m' = 0.1 + 0.4 = 0.5; θ' = 1 − (0.4 + 0.25) = 0.35.
    const fresh = nesterov.step({ anchor: pair(1, 1), merged: pair(0.6, 0.6), momentum: pair(0.2, 0.2), freshness: 1 }, params);
    expect(valuesOf(fresh.momentum!)[0]).toBeCloseTo(0.5, 6);
    expect(valuesOf(fresh.adapter)[0]).toBeCloseTo(0.35, 6);
  });

  it('a factor the aggregate leaves at the anchor (a frozen A) gets no momentum and does not move', () => {
    const nesterov = getOuterOptimizer('nesterov');
    const out = nesterov.step({ anchor: pair(0.75, 1), merged: pair(0.75, 0.5), momentum: pair(0, 0.25), freshness: 1 }, resolveOuterParams(nesterov, { lr: 0.7, momentum: 0.9 }));
    expect(valuesOf(out.momentum!)[0]).toBe(0);
    expect(valuesOf(out.adapter)[0]).toBe(0.75);
  });

  it('declares bounded parameters and refuses unknown names, wrong types and values out of range', () => {
    expect(listOuterOptimizers().map((o) => o.name)).toEqual(['none', 'sgd', 'nesterov']);
    const nesterov = getOuterOptimizer('nesterov');
    expect(resolveOuterParams(nesterov, {})).toEqual({ lr: 0.7, momentum: 0.9, stalenessExponent: 0.5 });
    expect(() => getOuterOptimizer('adam')).toThrow(UnknownOuterOptimizerError);
    expect(() => resolveOuterParams(nesterov, { beta: 0.9 })).toThrow(/outer optimiser 'nesterov' has no parameter 'beta'/);
    expect(() => resolveOuterParams(nesterov, { lr: 3 })).toThrow(MergeParamError);
    expect(() => resolveOuterParams(nesterov, { lr: 0 })).toThrow(MergeParamError);
    expect(() => resolveOuterParams(nesterov, { momentum: 1 })).toThrow(MergeParamError);
    expect(() => resolveOuterParams(nesterov, { momentum: '0.5' })).toThrow(MergeParamError);
    expect(() => resolveOuterParams(getOuterOptimizer('none'), { lr: 1 })).toThrow(MergeParamError);
  });
});

describe('freshness: inputs weighted by their age in rounds', () => {
  it('s(τ) = (1 + τ)^(−a), with τ whole rounds of the round that just ended', () => {
    expect(stalenessDiscount(0, 0.5)).toBe(1);
    expect(stalenessDiscount(3, 0.5)).toBe(0.5); // 4^(−1/2)
    expect(stalenessDiscount(1, 1)).toBe(0.5);
    expect(stalenessDiscount(3, 0)).toBe(1);
    expect(roundsOld(999, 1000)).toBe(0);
    expect(roundsOld(2999, 1000)).toBe(2);
    expect(roundsOld(5000, 0)).toBe(0); // round length unknown: nothing counts as stale
  });

  it('f is the weighted mean of s over the inputs, self fresh', () => {
    const inputs = [
      { weight: 1, ageMs: 0 }, // self
      { weight: 1, ageMs: 500 }, // arrived during this round: τ = 0
      { weight: 0.5, ageMs: 3500 }, // three whole rounds old: s = 4^(−a)
    ];
    // a = 0.5: (1 + 1 + 0.5·0.5) / 2.5 = 0.9; a = 1: (1 + 1 + 0.5·0.25) / 2.5 = 0.85; a = 0: 1.
    expect(roundFreshness(inputs, 1000, 0.5)).toBeCloseTo(0.9, 12);
    expect(roundFreshness(inputs, 1000, 1)).toBeCloseTo(0.85, 12);
    expect(roundFreshness(inputs, 1000, 0)).toBe(1);
    expect(roundFreshness([], 1000, 1)).toBe(1);
  });
});
