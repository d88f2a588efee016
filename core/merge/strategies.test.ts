/** Each strategy against small examples worked out by hand (or by a naive reference written here). */
import { describe, expect, it } from 'vitest';
import type { Adapter } from '../model/adapter.ts';
import { MergeParamError, UnknownStrategyError } from './errors.ts';
import { getStrategy, listStrategies, mergeWith, resolveParams } from './registry.ts';
import { alignUnits } from './strategies/dimat.ts';
import { PeerUpdateHistory } from './strategies/similarity.ts';
import { asInput, maxAbsDiff, naiveProduct, randomAdapter } from './testing.ts';

const MODULE = 'transformer.h.0.attn.c_attn';

/** One module with r = 1, A = a (length in), B = b (length out). */
function vectorAdapter(a: number[], b: number[] = [1]): Adapter {
  return {
    baseModelId: 'test/vector',
    config: { r: 1, alpha: 1, targetModules: ['attn.c_attn'] },
    modules: new Map([[MODULE, { a: Float32Array.from(a), b: Float32Array.from(b), inDim: a.length, outDim: b.length }]]),
  };
}
const aOf = (adapter: Adapter) => Array.from(adapter.modules.get(MODULE)!.a);

describe('registry', () => {
  it('fills defaults and refuses unknown names, wrong types, out-of-range values and bad choices', () => {
    const ties = getStrategy('ties');
    expect(resolveParams(ties, { density: 0.5 })).toMatchObject({ density: 0.5, lambda: 1, space: 'factors', base: 'self' });
    expect(() => resolveParams(ties, { densty: 0.5 })).toThrow(MergeParamError);
    expect(() => resolveParams(ties, { density: '0.5' })).toThrow(MergeParamError);
    expect(() => resolveParams(ties, { density: 1.5 })).toThrow(MergeParamError);
    expect(() => resolveParams(ties, { density: NaN })).toThrow(MergeParamError);
    expect(() => resolveParams(ties, { space: 'weights' })).toThrow(MergeParamError);
    expect(() => resolveParams(getStrategy('multi-krum'), { f: 1.5 })).toThrow(MergeParamError);
    expect(() => getStrategy('avg')).toThrow(UnknownStrategyError);
  });

  it('every strategy declares a description, a reference URL and defaults that pass its own checks', () => {
    const names = listStrategies().map((s) => s.name);
    expect(new Set(names).size).toBe(names.length);
    for (const s of listStrategies()) {
      expect(s.description.length).toBeGreaterThan(10);
      expect(s.reference).toMatch(/^https:\/\//);
      const defaults = Object.fromEntries(s.params.map((p) => [p.name, p.default]));
      expect(resolveParams(s, defaults)).toEqual(defaults);
    }
  });
});

describe('ties', () => {
  // density 0.6 keeps 3 of 5 entries. weights 1, 2, 1 → 0.25, 0.5, 0.25.
  //   x1 = [3, -1, 0,  2, 6]   → trimmed [ 3,  0, 0,  0? ...]: top-3 |6|,|3|,|2| → [3, 0, 0, 2, 6]
  //   x2 = [-2, 4, 0, 0.5, 5]  → top-3 |5|,|4|,|-2|   → [-2, 4, 0, 0, 5]
  //   x3 = [1, -3, 0, -4, 0.1] → top-3 |-4|,|-3|,|1| → [1, -3, 0, -4, 0]
  // entry 0: 0.75 - 1 + 0.25 = 0 → no sign elected → 0
  // entry 1: 2 - 0.75 = 1.25 > 0 → only x2 agrees → 4
  // entry 2: all zero → 0
  // entry 3: 0.5 - 1 = -0.5 < 0 → only x3 agrees → -4
  // entry 4: 1.5 + 2.5 = 4 > 0 → x1 and x2 agree → (0.25·6 + 0.5·5) / 0.75 = 16/3
  const inputs = () => [
    asInput(vectorAdapter([3, -1, 0, 2, 6], [2]), 'p1', 1),
    asInput(vectorAdapter([-2, 4, 0, 0.5, 5], [2]), 'p2', 2),
    asInput(vectorAdapter([1, -3, 0, -4, 0.1], [2]), 'p3', 1),
  ];

  it('elects signs with the weights, resolves a zero sign sum to 0, and averages only agreeing entries', () => {
    const merged = mergeWith('ties', inputs(), { density: 0.6, base: 'zero' });
    expect(maxAbsDiff(aOf(merged), [0, 4, 0, -4, 16 / 3])).toBeLessThan(1e-6);
    expect(Array.from(merged.modules.get(MODULE)!.b)).toEqual([2]);
    const scaled = mergeWith('ties', inputs(), { density: 0.6, base: 'zero', lambda: 0.5 });
    expect(maxAbsDiff(aOf(scaled), [0, 2, 0, -2, 8 / 3])).toBeLessThan(1e-6);
  });

  it("with base 'self' merges the deltas from the first input and adds them to it", () => {
    // τ2 = x2 - x1 = [-5, 5, 0, -1.5, -1], τ3 = x3 - x1 = [-2, -2, 0, -6, -5.9]; density 1 keeps all.
    // weights 0.25, 0.5, 0.25 (τ1 = 0 never votes)
    // e0: -2.5 - 0.5 < 0: both agree → (0.5·-5 + 0.25·-2)/0.75 = -4
    // e1: 2.5 - 0.5 > 0: τ2 → 5 ; e2: 0 ; e3: both negative → (0.5·-1.5 + 0.25·-6)/0.75 = -3
    // e4: both negative → (0.5·-1 + 0.25·-5.9)/0.75 = -2.6333…
    const merged = mergeWith('ties', inputs(), { density: 1, base: 'self' });
    const x1 = [3, -1, 0, 2, 6];
    const delta = [-4, 5, 0, -3, (-0.5 - 1.475) / 0.75];
    expect(maxAbsDiff(aOf(merged), x1.map((v, i) => v + delta[i]))).toBeLessThan(1e-5);
  });

  it('in product space equals TIES applied to the dense ΔW (naive reference) when the rank suffices', () => {
    // inDim 2 ≤ r = 3, so every out×2 matrix has rank ≤ r and the re-factorisation is exact.
    const modules = [{ name: MODULE, inDim: 2, outDim: 5 }];
    const adapters = [1, 2, 3].map((seed) => randomAdapter(seed, { r: 3, modules }));
    const weights = [1, 3, 2];
    const density = 0.5;
    const merged = mergeWith('ties', adapters.map((a, i) => asInput(a, `p${i}`, weights[i])), { space: 'products', base: 'zero', density, lambda: 0.8 });
    const dense = adapters.map((a) => naiveProduct(a, MODULE));
    const size = dense[0].length;
    const keep = Math.round(density * size);
    const trimmed = dense.map((d) => {
      const order = Array.from(d.keys()).sort((i, j) => Math.abs(d[j]) - Math.abs(d[i]) || i - j);
      const t = new Float64Array(size);
      for (const i of order.slice(0, keep)) t[i] = d[i];
      return t;
    });
    const w = weights.map((x) => x / 6);
    const expected = new Float64Array(size);
    for (let j = 0; j < size; j++) {
      const sum = trimmed.reduce((s, t, i) => s + w[i] * t[j], 0);
      let num = 0, den = 0;
      trimmed.forEach((t, i) => {
        if (t[j] !== 0 && Math.sign(t[j]) === Math.sign(sum)) { num += w[i] * t[j]; den += w[i]; }
      });
      expected[j] = den > 0 ? 0.8 * (num / den) : 0;
    }
    expect(maxAbsDiff(naiveProduct(merged, MODULE), expected)).toBeLessThan(1e-5);
  });
});

describe('exact-average', () => {
  const weightedMeanOfProducts = (adapters: Adapter[], weights: number[], module: string) => {
    const total = weights.reduce((s, w) => s + w, 0);
    const mean = new Float64Array(naiveProduct(adapters[0], module).length);
    adapters.forEach((a, i) => naiveProduct(a, module).forEach((v, j) => (mean[j] += (weights[i] / total) * v)));
    return mean;
  };

  it('equals the dense weighted mean of products when the inputs share A (rank r)', () => {
    const shared = randomAdapter(1, { r: 3 });
    const adapters = [2, 3, 4].map((seed) => {
      const other = randomAdapter(seed, { r: 3 });
      for (const [name, p] of other.modules) p.a.set(shared.modules.get(name)!.a);
      return other;
    });
    const weights = [1, 2.5, 0.5];
    const merged = mergeWith('exact-average', adapters.map((a, i) => asInput(a, `p${i}`, weights[i])));
    for (const name of shared.modules.keys()) {
      expect(maxAbsDiff(naiveProduct(merged, name), weightedMeanOfProducts(adapters, weights, name))).toBeLessThan(1e-5);
    }
    // fedavg's product of means differs: it has the cross terms B_i A_j.
    const independent = [5, 6].map((seed) => randomAdapter(seed, { r: 3 }));
    const fed = mergeWith('fedavg', independent.map((a, i) => asInput(a, `p${i}`)));
    expect(maxAbsDiff(naiveProduct(fed, MODULE), weightedMeanOfProducts(independent, [1, 1], MODULE))).toBeGreaterThan(1e-2);
  });

  it('equals the dense weighted mean of products for unrelated adapters when min(in, out) ≤ r', () => {
    const modules = [{ name: MODULE, inDim: 3, outDim: 7 }, { name: 'transformer.h.0.mlp.c_proj', inDim: 8, outDim: 2 }];
    const adapters = [1, 2, 3, 4].map((seed) => randomAdapter(seed, { r: 3, modules }));
    const weights = [0.1, 1, 2, 0.7];
    const merged = mergeWith('exact-average', adapters.map((a, i) => asInput(a, `p${i}`, weights[i])));
    for (const { name } of modules) {
      expect(maxAbsDiff(naiveProduct(merged, name), weightedMeanOfProducts(adapters, weights, name))).toBeLessThan(1e-5);
    }
  });

  it('keeps the best rank-r approximation when the mean has higher rank (Eckart–Young error)', () => {
    // Two rank-1 adapters with orthogonal factors: mean = ½(b1 a1ᵀ + b2 a2ᵀ) has singular values ½|b1||a1|, ½|b2||a2|.
    const x = vectorAdapter([3, 0, 0, 0], [2, 0]);
    const y = vectorAdapter([0, 1, 0, 0], [0, 1]);
    const merged = mergeWith('exact-average', [asInput(x, 'x'), asInput(y, 'y')]);
    // best rank-1 approximation keeps the larger term ½·(2·3) and drops ½·(1·1)
    expect(maxAbsDiff(naiveProduct(merged, MODULE), [3, 0, 0, 0, 0, 0, 0, 0])).toBeLessThan(1e-6);
  });
});

describe('variance-corrected', () => {
  const naiveVariance = (x: ArrayLike<number>) => {
    const mean = Array.from(x).reduce((s, v) => s + v, 0) / x.length;
    return { mean, variance: Array.from(x).reduce((s, v) => s + (v - mean) ** 2, 0) / x.length };
  };

  it('gives every tensor the target variance and keeps the mixed mean', () => {
    const adapters = [randomAdapter(1, { scale: 0.5 }), randomAdapter(2, { scale: 1 }), randomAdapter(3, { scale: 2 })];
    const weights = [2, 1, 1];
    for (const target of ['received', 'self', 'all', 'conservative'] as const) {
      const merged = mergeWith('variance-corrected', adapters.map((a, i) => asInput(a, `p${i}`, weights[i])), { target });
      for (const [name, pair] of merged.modules) {
        for (const kind of ['a', 'b'] as const) {
          const tensors = adapters.map((a) => a.modules.get(name)![kind]);
          const vars = tensors.map((t) => naiveVariance(t).variance);
          const received = (vars[1] * 1 + vars[2] * 1) / 2;
          const expectedTarget = {
            received,
            self: vars[0],
            all: (2 * vars[0] + vars[1] + vars[2]) / 4,
            conservative: Math.min(vars[0], received),
          }[target];
          const mix = tensors[0].map((_, j) => (2 * tensors[0][j] + tensors[1][j] + tensors[2][j]) / 4);
          const out = naiveVariance(pair[kind]);
          expect(Math.abs(out.variance - expectedTarget) / expectedTarget).toBeLessThan(1e-5);
          expect(Math.abs(out.mean - naiveVariance(mix).mean)).toBeLessThan(1e-6);
        }
      }
    }
  });
});

describe('dimat', () => {
  const r = 4;
  const permuteUnits = (adapter: Adapter, sigma: number[], flip: number[] = []) => {
    // neighbour unit l = our unit sigma[l] (times -1 for units in flip)
    const modules = new Map<string, import('../model/adapter.ts').LoraPair>();
    for (const [name, p] of adapter.modules) {
      const a = new Float32Array(p.a.length), b = new Float32Array(p.b.length);
      for (let l = 0; l < r; l++) {
        const s = flip.includes(l) ? -1 : 1;
        for (let j = 0; j < p.inDim; j++) a[l * p.inDim + j] = s * p.a[sigma[l] * p.inDim + j];
        for (let o = 0; o < p.outDim; o++) b[o * r + l] = s * p.b[o * r + sigma[l]];
      }
      modules.set(name, { a, b, inDim: p.inDim, outDim: p.outDim });
    }
    return { ...adapter, modules };
  };

  it('recovers a known permutation of rank units exactly, with and without calibration data', () => {
    const self = randomAdapter(1, { r });
    const sigma = [2, 0, 3, 1];
    const inverse = [1, 3, 0, 2]; // our unit k is their unit l with sigma[l] = k
    const neighbour = permuteUnits(self, sigma);
    for (const [name, p] of self.modules) {
      expect(Array.from(alignUnits(p, neighbour.modules.get(name)!, r).permutation)).toEqual(inverse);
      const rows = 5;
      const data = Float32Array.from({ length: rows * p.inDim }, (_, i) => Math.sin(i + 1));
      expect(Array.from(alignUnits(p, neighbour.modules.get(name)!, r, { rows, data }).permutation)).toEqual(inverse);
    }
  });

  it('merging an adapter with a unit-permuted, sign-flipped copy of itself returns it (fedavg does not)', () => {
    const self = randomAdapter(2, { r });
    const neighbour = permuteUnits(self, [3, 2, 0, 1], [1]);
    const inputs = [asInput(self, 'self'), asInput(neighbour, 'n1')];
    const merged = mergeWith('dimat', inputs);
    for (const [name, p] of self.modules) {
      expect(maxAbsDiff(merged.modules.get(name)!.a, p.a)).toBeLessThan(1e-6);
      expect(maxAbsDiff(merged.modules.get(name)!.b, p.b)).toBeLessThan(1e-6);
    }
    const naive = mergeWith('fedavg', inputs);
    expect(maxAbsDiff(naive.modules.get(MODULE)!.a, self.modules.get(MODULE)!.a)).toBeGreaterThan(0.1);
  });

  it('mixes with Metropolis–Hastings weights from the degrees', () => {
    // self degree 2, neighbour degrees 3 and 1: w1 = 1/(1+3) = 0.25, w2 = 1/(1+2) = 1/3, w_self = 1 - 0.25 - 1/3
    const self = vectorAdapter([1, 0, 0]), n1 = vectorAdapter([1, 0, 0]), n2 = vectorAdapter([1, 0, 0]);
    n1.modules.get(MODULE)!.a.set([2, 0, 0]); // same direction: aligned as unit 0, no flip
    n2.modules.get(MODULE)!.a.set([5, 0, 0]);
    const merged = mergeWith('dimat', [asInput(self, 's'), asInput(n1, 'n1'), asInput(n2, 'n2')], {}, {
      neighbourDegrees: new Map([['n1', 3], ['n2', 1]]),
    });
    const wSelf = 1 - 0.25 - 1 / 3;
    expect(aOf(merged)[0]).toBeCloseTo(wSelf * 1 + 0.25 * 2 + (1 / 3) * 5, 6);
  });
});

describe('robust rules on textbook cases', () => {
  const scalars = (values: number[], weights?: number[]) => values.map((v, i) => asInput(vectorAdapter([v], [1]), `p${i}`, weights?.[i] ?? 1));

  it('median: middle value, mean of the two middle values, weighted median', () => {
    expect(aOf(mergeWith('median', scalars([4, 100, 1, 3, 2])))).toEqual([3]);
    expect(aOf(mergeWith('median', scalars([10, 1, 3, 2])))).toEqual([2.5]);
    expect(aOf(mergeWith('median', scalars([1, 2, 3], [1, 1, 3])))).toEqual([3]);
  });

  it('trimmed-mean drops max(1, ⌊beta·n⌋) values from each end once n ≥ 3', () => {
    expect(aOf(mergeWith('trimmed-mean', scalars([100, 1, 4, 2, 3]), { beta: 0.2 }))).toEqual([3]);
    // One attacker of five, at the default beta (⌊0.1·5⌋ = 0): still trimmed, (2 + 3 + 4) / 3.
    expect(aOf(mergeWith('trimmed-mean', scalars([100, 1, 4, 2, 3]), { beta: 0 }))).toEqual([3]);
    expect(aOf(mergeWith('trimmed-mean', scalars([1e30, 1, 4, 2, 3])))).toEqual([3]);
    expect(aOf(mergeWith('trimmed-mean', scalars([1, 100, 2])))).toEqual([2]);
    expect(aOf(mergeWith('trimmed-mean', scalars([1, 100])))[0]).toBeCloseTo(50.5, 6);
    expect(aOf(mergeWith('trimmed-mean', scalars([-1e6, 1, 4, 2, 3, 80, 1e6]), { beta: 0.3 }))[0]).toBeCloseTo((2 + 3 + 4) / 3, 6);
    expect(aOf(mergeWith('trimmed-mean', scalars([-50, 1, 4, 2, 3, 80], [1, 1, 1, 3, 1, 1]), { beta: 0.2 }))[0]).toBeCloseTo((1 + 4 + 6 + 3) / 6, 6);
  });

  it('multi-krum: scores are sums of squared distances to the n − f − 2 nearest; outliers are left out', () => {
    // values 0, 1, 2, 10, 11 with f = 1 → 2 nearest: scores 1+4=5, 1+1=2, 1+4=5, 1+64=65, 1+81=82
    const inputs = scalars([10, 0, 11, 2, 1]);
    const paper = { f: 1, anchor: 'none' };
    expect(aOf(mergeWith('multi-krum', inputs, { ...paper, keep: 1 }))).toEqual([1]); // Krum
    expect(aOf(mergeWith('multi-krum', inputs, { ...paper, keep: 3 }))[0]).toBeCloseTo(1, 6); // 0, 1, 2
    expect(aOf(mergeWith('multi-krum', inputs, paper))[0]).toBeCloseTo((0 + 1 + 2 + 10) / 4, 6); // keep n − f = 4
  });

  it('multi-krum anchored on self: self always kept, alone when there are too few inputs to outvote an attacker', () => {
    // Self (10) is the worst-scoring input, yet joins the Krum pick (1) and the 3 best (0, 1, 2).
    const inputs = scalars([10, 0, 11, 2, 1]);
    expect(aOf(mergeWith('multi-krum', inputs, { f: 1, keep: 1 }))[0]).toBeCloseTo((10 + 1) / 2, 6);
    expect(aOf(mergeWith('multi-krum', inputs, { f: 1, keep: 3 }))[0]).toBeCloseTo((10 + 0 + 1 + 2) / 4, 6);
    // n = 4 < 2f + 3 = 5: an attacker at 1000 beside self and two honest peers cannot be told apart → self alone.
    expect(aOf(mergeWith('multi-krum', scalars([3, 1000, 2, 4]), { f: 1 }))).toEqual([3]);
    // With f = 0 nothing is excluded and the anchored rule is the weighted mean.
    expect(aOf(mergeWith('multi-krum', scalars([3, 1000, 2, 4]), { f: 0 }))[0]).toBeCloseTo((3 + 1000 + 2 + 4) / 4, 4);
  });

  it('similarity-weighting gives colluding (identical) neighbours zero weight', () => {
    const self = vectorAdapter([0, 0, 0]);
    const honest1 = vectorAdapter([1, 0, 0]), honest2 = vectorAdapter([0, 1, 0]);
    const sybils = [0, 1, 2].map(() => vectorAdapter([0, 0, 5]));
    const inputs = [self, honest1, honest2, ...sybils].map((a, i) => asInput(a, `p${i}`));
    // honest: α = 1 → logit(0.99) + 0.5 > 1 → weight 1; sybils: max similarity 1 → α = 0
    expect(maxAbsDiff(aOf(mergeWith('similarity-weighting', inputs)), [1 / 3, 1 / 3, 0])).toBeLessThan(1e-6);
  });

  it('similarity-weighting uses the accumulated history of each peer', () => {
    const self = vectorAdapter([0, 0, 0, 0]);
    const round1 = [self, vectorAdapter([0, 0, 0, 10]), vectorAdapter([0, 0, 0, 10]), vectorAdapter([0, 0, 0, 0])].map((a, i) => asInput(a, `p${i}`));
    const history = new PeerUpdateHistory();
    history.record(round1);
    // now p1 and p2 look unrelated (e1, e2) but their histories are nearly parallel (e1 + 10e4, e2 + 10e4): cos = 100/101
    const round2 = [self, vectorAdapter([1, 0, 0, 0]), vectorAdapter([0, 1, 0, 0]), vectorAdapter([0, 0, 1, 0])].map((a, i) => asInput(a, `p${i}`));
    expect(maxAbsDiff(aOf(mergeWith('similarity-weighting', round2)), [0.25, 0.25, 0.25, 0])).toBeLessThan(1e-6);
    // with history: α(p1) = α(p2) = 1/101 → logit < 0 → 0; p3 keeps weight 1 → (self + p3) / 2
    expect(maxAbsDiff(aOf(mergeWith('similarity-weighting', round2, {}, { peerHistory: history })), [0, 0, 0.5, 0])).toBeLessThan(1e-6);
  });
});

describe('dare and breadcrumbs', () => {
  it('dare keeps about density of the entries, rescales survivors by 1/density, and is reproducible by seed', () => {
    const values = Array.from({ length: 10000 }, (_, i) => ((i % 17) - 8) / 8 + 0.01);
    const input = () => [asInput(vectorAdapter(values), 'only')];
    const params = { density: 0.3, base: 'zero' };
    const out = aOf(mergeWith('dare', input(), params, { seed: 5 }));
    let kept = 0;
    out.forEach((v, j) => {
      if (v !== 0) {
        kept++;
        expect(v).toBeCloseTo(values[j] / 0.3, 5);
      }
    });
    expect(kept).toBeGreaterThan(2850); // 3000 ± 3σ, σ = √(10000·0.3·0.7) ≈ 46
    expect(kept).toBeLessThan(3150);
    expect(aOf(mergeWith('dare', input(), params, { seed: 5 }))).toEqual(out);
    expect(aOf(mergeWith('dare', input(), params, { seed: 6 }))).not.toEqual(out);
  });

  it('breadcrumbs drops the gamma largest and everything below the next density fraction', () => {
    const x = [5, -4, 3, -2, 1, 0.5, -0.1, 7, 0.2, 6];
    // gamma 0.1 drops 7; density 0.5 keeps the next five magnitudes: 6, 5, -4, 3, -2
    const out = aOf(mergeWith('breadcrumbs', [asInput(vectorAdapter(x), 'only')], { gamma: 0.1, density: 0.5, base: 'zero' }));
    expect(out).toEqual([5, -4, 3, -2, 0, 0, 0, 0, 0, 6]);
  });
});

describe('overflow-safe evaluation (overflow.ts)', () => {
  const FLOAT32_MAX = 3.4028234663852886e38;
  // The largest values the int8 codec accepts: ±127 × (FLOAT32_MAX / 127).
  const largestLegalScale = (() => {
    const bits = new Uint32Array(Float32Array.of(FLOAT32_MAX / 127).buffer);
    while (new Float32Array(bits.buffer)[0] * 127 > FLOAT32_MAX) bits[0]--;
    return new Float32Array(bits.buffer)[0];
  })();
  const int8Max = Math.fround(127 * largestLegalScale);

  it('dare on legal int8 input: every entry is 0 or the (saturated) rescaled value, never Infinity', () => {
    const values = Array.from({ length: 64 }, (_, j) => (j % 2 ? int8Max : -int8Max));
    const inputs = [asInput(vectorAdapter(new Array(64).fill(0)), 'self'), asInput(vectorAdapter(values), 'attacker')];
    const merged = aOf(mergeWith('dare', inputs, { density: 0.5 }));
    // self 0, attacker τ = ±FLOAT32_MAX kept with probability 1/2 and doubled, weight 1/2: ±FLOAT32_MAX or 0.
    expect(merged.every(Number.isFinite)).toBe(true);
    const kept = merged.filter((v) => v !== 0);
    expect(kept.length).toBeGreaterThan(10);
    expect(kept.length).toBeLessThan(54);
    for (let j = 0; j < 64; j++) if (merged[j] !== 0) expect(merged[j]).toBe(j % 2 ? int8Max : -int8Max);
  });

  it('ties with task vectors that overflow float32 (x − self = ±6.8e38) merges the scaled inputs', () => {
    const inputs = [asInput(vectorAdapter([-int8Max, 1]), 'self'), asInput(vectorAdapter([int8Max, 1]), 'p1'), asInput(vectorAdapter([int8Max, 1]), 'p2')];
    // τ = (2·max, 0) twice; TIES keeps the elected positive entry: self + (2/3)·2·max/... saturates at FLOAT32_MAX
    // (weights 1/3 each, disjoint mean over the two agreeing inputs = 2·max, lambda 1 → −max + 2·max = max).
    const merged = aOf(mergeWith('ties', inputs, { density: 1 }));
    expect(merged[0]).toBe(int8Max);
    expect(merged[1]).toBe(1);
  });

  it('a merge of ordinary inputs is not rescaled (bit-identical to the unwrapped strategy)', () => {
    const inputs = [1, 2, 3].map((s) => asInput(randomAdapter(s), `p${s}`));
    const wrapped = mergeWith('fedavg', inputs);
    const plain = listStrategies().find((s) => s.name === 'fedavg')!;
    expect(maxAbsDiff(wrapped.modules.get('transformer.h.0.attn.c_attn')!.a, plain.merge(inputs, {}, {}).modules.get('transformer.h.0.attn.c_attn')!.a)).toBe(0);
  });
});
