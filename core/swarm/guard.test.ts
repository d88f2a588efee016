// Hand-computed cases of the update guard (centred clipping around the peer's own adapter) and of the bounds
// check on a merged adapter, plus the attacks of issue 12 replayed at unit level.
import { describe, expect, it } from 'vitest';
import type { Adapter } from '../model/adapter.ts';
import { listStrategies, mergeWith, outputKind, resolveParams } from '../merge/registry.ts';
import { asInput, naiveProduct, randomAdapter } from '../merge/testing.ts';
import { factorDistance, checkMergedAdapter, UpdateGuard, type GuardOutcome } from './guard.ts';

const MODULE = 'transformer.h.0.attn.c_attn';

/** A rank-1 adapter of one 2→2 module: values = [A0, A1, B0, B1]. */
function vec(values: number[], r = 1): Adapter {
  const a = new Float32Array(values.slice(0, 2 * r));
  const b = new Float32Array(values.slice(2 * r));
  return { baseModelId: 'test/guard', config: { r, alpha: 2, targetModules: ['attn.c_attn'] }, modules: new Map([[MODULE, { a, b, inDim: 2, outDim: 2 }]]) };
}

const values = (adapter: Adapter) => [...adapter.modules.get(MODULE)!.a, ...adapter.modules.get(MODULE)!.b];

function only<K extends GuardOutcome['kind']>(outcome: GuardOutcome, kind: K): Extract<GuardOutcome, { kind: K }> {
  expect(outcome.kind).toBe(kind);
  return outcome as Extract<GuardOutcome, { kind: K }>;
}

describe('UpdateGuard', () => {
  it('clips a neighbour farther than τ onto the sphere of radius τ around self, keeps a nearer one as is', () => {
    const guard = new UpdateGuard({ fixedTau: 2.5 });
    const self = vec([0, 0, 0, 0]);
    const far = vec([3, 4, 0, 0]); // distance 5
    const near = vec([1, 0, 0, 0]); // distance 1
    const [clipped, accepted] = guard.guard(self, [far, near]);
    const c = only(clipped, 'clipped');
    expect(c.distance).toBe(5);
    expect(c.scale).toBe(0.5);
    expect(values(c.adapter)).toEqual([1.5, 2, 0, 0]);
    expect(values(far)).toEqual([3, 4, 0, 0]); // input untouched
    const a = only(accepted, 'accepted');
    expect(a.distance).toBe(1);
    expect(a.adapter).toBe(near);
  });

  it('clips around self, not around zero: self (10,10,0,0), neighbour (10,10,6,8) at distance 10, τ 5 → (10,10,3,4)', () => {
    const guard = new UpdateGuard({ fixedTau: 5 });
    const c = only(guard.guard(vec([10, 10, 0, 0]), [vec([10, 10, 6, 8])])[0], 'clipped');
    expect(values(c.adapter)).toEqual([10, 10, 3, 4]);
  });

  it('uses 2·‖self‖ in the first rounds, then 2 × the median of recent distances measured before the round', () => {
    const guard = new UpdateGuard();
    const self = vec([3, 4, 0, 0]); // norm 5 → warm-up τ = 10
    expect(guard.tau(self)).toBe(10);
    // Distances 1, 2, 3, 4 (along B0): all within 10, accepted.
    const round1 = guard.guard(self, [1, 2, 3, 4].map((d) => vec([3, 4, d, 0])));
    expect(round1.map((o) => o.kind)).toEqual(['accepted', 'accepted', 'accepted', 'accepted']);
    expect(guard.recentDistances).toEqual([1, 2, 3, 4]);
    // Median 2.5 → τ = 5. An input at distance 10 is halved; a flood of far inputs in this round does not raise τ.
    expect(guard.tau(self)).toBe(5);
    const round2 = guard.guard(self, [vec([3, 4, 10, 0]), vec([3, 4, 0, 40]), vec([3, 4, 0, 40])]);
    expect(only(round2[0], 'clipped').scale).toBe(0.5);
    expect(values(only(round2[0], 'clipped').adapter)).toEqual([3, 4, 5, 0]);
    expect(only(round2[1], 'clipped').scale).toBe(5 / 40);
    // History is now 1, 2, 3, 4, 10, 40, 40: median 4 → τ 8. Three far inputs of seven moved it from 5 to 8 only.
    expect(guard.tau(self)).toBe(8);
  });

  it('refuses non-finite values, values beyond max(64, 100·max|self|), and another schema; refusals stay out of τ', () => {
    const guard = new UpdateGuard({ minHistory: 1 });
    const self = vec([0.5, -0.25, 0.1, 0]); // bound max(64, 50) = 64
    const outcomes = guard.guard(self, [
      vec([NaN, 0, 0, 0]),
      vec([1e30, 0, 0, 0]),
      vec([65504, 0, 0, 0]),
      vec([0.5, -0.25, 0.1, 64.5]),
      vec([0, 0, 0, 0, 0, 0], 2),
      vec([0.5, -0.25, 0.1, 1]),
    ]);
    const reasons = outcomes.map((o) => (o.kind === 'refused' ? o.reason : o.kind));
    expect(reasons).toEqual(['non-finite', 'out-of-bounds', 'out-of-bounds', 'out-of-bounds', 'schema-mismatch', 'accepted']);
    expect(only(outcomes[1], 'refused').detail).toMatch(/1\.000e\+30 exceeds the bound 64\.00/);
    expect(guard.recentDistances).toEqual([1]);
  });

  it('1e30 adapter (issue 12): with the guard, one fedavg merge leaves self unchanged; without it self becomes ~2e29', () => {
    const self = vec([0.1, 0.2, 0.3, 0.4]);
    const honest = [vec([0.2, 0.2, 0.3, 0.4]), vec([0.1, 0.1, 0.3, 0.4])];
    const attacker = vec([1e30, 1e30, 1e30, 1e30]);
    const unguarded = mergeWith('fedavg', [self, ...honest, attacker].map((a, i) => asInput(a, `p${i}`)));
    expect(values(unguarded)[0]).toBeGreaterThan(1e29);
    const outcomes = new UpdateGuard().guard(self, [...honest, attacker]);
    const kept = outcomes.flatMap((o) => (o.kind === 'refused' ? [] : [o.adapter]));
    expect(outcomes[2]).toMatchObject({ kind: 'refused', reason: 'out-of-bounds' });
    const merged = mergeWith('fedavg', [self, ...kept].map((a, i) => asInput(a, `p${i}`)));
    expect(values(merged).map((v) => +v.toFixed(6))).toEqual([0.133333, 0.166667, 0.3, 0.4]);
    expect(checkMergedAdapter(self, merged)).toEqual({ ok: true });
    expect(checkMergedAdapter(self, unguarded)).toMatchObject({ ok: false, reason: 'out-of-bounds' });
  });

  it('drift (issue 12): an aligned push every round moves fedavg (self + 5 inputs) by Σ τ/6 ≤ 6.67 over 20 rounds instead of 33.3', () => {
    // Four honest neighbours at distance exactly 1 from self, in coordinates 1..3 only; one attacker at self + 10·e0.
    // Along e0 the honest inputs add nothing, so self's e0 coordinate moves only by the attacker's (clipped) push.
    const run = (guarded: boolean) => {
      const guard = new UpdateGuard();
      let self = vec([0, 0.3, -0.2, 0.4]);
      let seed = 7;
      const random = () => ((seed = (seed * 16807) % 2147483647) / 2147483647) * 2 - 1;
      let pushBound = 0;
      for (let round = 0; round < 20; round++) {
        const s = values(self);
        const honest = Array.from({ length: 4 }, () => {
          const d = [random(), random(), random()];
          const n = Math.hypot(...d);
          return vec([s[0], s[1] + d[0] / n, s[2] + d[1] / n, s[3] + d[2] / n]);
        });
        const attacker = vec([s[0] + 10, s[1], s[2], s[3]]);
        let inputs = [...honest, attacker];
        if (guarded) {
          pushBound += Math.min(10, guard.tau(self)) / 6;
          inputs = guard.guard(self, inputs).map((o) => (o.kind === 'refused' ? self : o.adapter));
        }
        self = mergeWith('fedavg', [self, ...inputs].map((a, i) => asInput(a, `p${i}`)));
      }
      return { drift: values(self)[0], pushBound };
    };
    const plain = run(false);
    expect(plain.drift).toBeCloseTo(200 / 6, 3);
    const guarded = run(true);
    console.log(`drift over 20 rounds: ${plain.drift.toFixed(2)} without the guard, ${guarded.drift.toFixed(2)} with it (bound Σ τ/6 = ${guarded.pushBound.toFixed(2)})`);
    // Float32 rounding of the accumulation only.
    expect(Math.abs(guarded.drift - guarded.pushBound)).toBeLessThan(1e-4);
    // τ is 2 × the median distance, which the four honest inputs at distance ~1 hold near 1: at most 2 per round.
    expect(guarded.drift).toBeLessThanOrEqual(20 * 2 / 6 + 1e-4);
    expect(guarded.drift).toBeLessThan(plain.drift / 4);
  });
});

describe('checkMergedAdapter', () => {
  const self = vec([3, 4, 0, 0]); // norm 5, max|x| 4 → bounds: norm ≤ 20, max|x| ≤ 400

  it('accepts a finite merge within 4 × the own norm and the absolute bound', () => {
    expect(checkMergedAdapter(self, vec([10, 10, 5, 5]))).toEqual({ ok: true });
  });

  it('refuses NaN, a norm beyond 4 × own, a value beyond the bound, and another schema, each with a reason', () => {
    expect(checkMergedAdapter(self, vec([NaN, 0, 0, 0]))).toMatchObject({ ok: false, reason: 'non-finite' });
    const tooLong = checkMergedAdapter(self, vec([12, 12, 12, 0]));
    expect(tooLong).toMatchObject({ ok: false, reason: 'out-of-bounds' });
    expect(tooLong.ok ? '' : tooLong.detail).toMatch(/norm 20\.78 exceeds 4 × max\(own norm 5\.000, 1\)/);
    expect(checkMergedAdapter(self, vec([401, 0, 0, 0]), { maxNormRatio: 1000 })).toMatchObject({ ok: false, reason: 'out-of-bounds' });
    expect(checkMergedAdapter(self, vec([3, 4, 0, 0, 0, 0], 2))).toMatchObject({ ok: false, reason: 'schema-mismatch' });
  });

  it('lets a near-zero adapter grow to norm 4 (the floor of 1 under the ratio)', () => {
    const tiny = vec([0.01, 0, 0, 0]);
    expect(checkMergedAdapter(tiny, vec([2, 2, 2, 0]))).toEqual({ ok: true });
    expect(checkMergedAdapter(tiny, vec([3, 3, 0, 0]))).toMatchObject({ ok: false, reason: 'out-of-bounds' });
  });

  it('factorDistance is the Euclidean distance over all factors', () => {
    expect(factorDistance(vec([1, 1, 1, 1]), vec([2, 3, 3, 5]))).toBe(5);
  });
});

describe('the guard in front of every strategy (issue 12: 8 of 11 strategies poisoned by 1 attacker of 5)', () => {
  const shapes = [{ name: 'transformer.h.0.attn.c_attn', inDim: 6, outDim: 9 }, { name: 'transformer.h.0.mlp.c_fc', inDim: 6, outDim: 12 }];
  const scaled = (a: Adapter, f: number, shift = 0): Adapter => ({
    ...a,
    modules: new Map([...a.modules].map(([n, p]) => [n, { ...p, a: p.a.map((v, j) => v * f + shift * Math.sin(j)), b: p.b.map((v, j) => v * f + shift * Math.cos(j)) }])),
  });
  const self = randomAdapter(1, { modules: shapes, scale: 0.1 });
  // Honest neighbours: self plus a small perturbation of their own.
  const honest = [2, 3, 4].map((seed) => {
    const noise = randomAdapter(seed, { modules: shapes, scale: 0.01 });
    return { ...self, modules: new Map([...self.modules].map(([n, p]) => [n, { ...p, a: p.a.map((v, j) => v + noise.modules.get(n)!.a[j]), b: p.b.map((v, j) => v + noise.modules.get(n)!.b[j]) }])) };
  });
  const attacks: Array<[string, Adapter]> = [['100× scaled', scaled(self, 100)], ['1e30', scaled(self, 0, 1e30)], ['65504', scaled(self, 0, 65504)]];

  for (const strategy of listStrategies()) {
    it.each(attacks)(`${strategy.name}: a %s attacker is clipped or refused and the merge stays bounded`, (_label, attacker) => {
      const guard = new UpdateGuard();
      for (let round = 0; round < 2; round++) guard.guard(self, honest); // recent honest distances
      const tau = guard.tau(self);
      const outcomes = guard.guard(self, [...honest, attacker]);
      expect(outcomes[3].kind).not.toBe('accepted');
      const inputs = [self, ...outcomes.map((o) => (o.kind === 'refused' ? null : o.adapter)).filter((a): a is Adapter => a !== null)];
      const merged = strategy.merge(inputs.map((a, i) => asInput(a, `p${i}`)), resolveParams(strategy, {}), { seed: 3 });
      expect(checkMergedAdapter(self, merged)).toEqual({ ok: true });
      if (outputKind(strategy, resolveParams(strategy, {})) === 'factors') {
        // Every input lies within τ of self; no strategy moves self by more than a few τ from them.
        expect(factorDistance(self, merged)).toBeLessThan(4 * tau);
      } else {
        // A product-space result is a re-factorisation: compare ΔW = (α/r)·B·A with the guarded inputs'.
        const productDistance = (x: Adapter) => Math.hypot(...shapes.flatMap(({ name }) => {
          const px = naiveProduct(x, name), ps = naiveProduct(self, name);
          return Array.from(px, (v, j) => v - ps[j]);
        }));
        const farthest = Math.max(...inputs.map(productDistance));
        expect(productDistance(merged)).toBeLessThanOrEqual(farthest * 1.01);
      }
    });
  }
});
