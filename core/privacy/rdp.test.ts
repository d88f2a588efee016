import { describe, expect, it } from 'vitest';
import { DEFAULT_ORDERS, epsilonAfter, epsilonFromRdp, logErfc, noiseMultiplierFor, rdpSubsampledGaussian } from './rdp.ts';

// Reference values published in TensorFlow Privacy's test suite (github.com/tensorflow/privacy):
//   tensorflow_privacy/privacy/analysis/rdp_accountant_test.py        (RDP of the sampled Gaussian, ε conversion)
//   tensorflow_privacy/privacy/analysis/compute_dp_sgd_privacy_test.py (compute_dp_sgd_privacy: ε for DP-SGD runs)
// Those tests use the same improved RDP → (ε, δ) conversion as this accountant.

describe('RDP of the subsampled Gaussian mechanism', () => {
  it('matches rdp_accountant_test: compute_rdp(q = 0.1, σ = 2, steps = 10, order 5) = 0.07737', () => {
    expect(rdpSubsampledGaussian(0.1, 2, 10, [5])[0]).toBeCloseTo(0.07737, 5);
  });

  it('matches rdp_accountant_test: compute_rdp(q = 0.01, σ = 2.5, steps = 50) at integer, fractional and infinite orders', () => {
    const orders = [1.5, 2.5, 5, 50, 100, Infinity];
    const expected = [0.00065, 0.001085, 0.00218075, 0.023846, 167.416307, Infinity];
    const got = rdpSubsampledGaussian(0.01, 2.5, 50, orders);
    for (let i = 0; i < 5; i++) expect(Math.abs(got[i] - expected[i])).toBeLessThan(1e-5);
    expect(got[5]).toBe(Infinity);
  });

  it('is α/(2σ²) without sampling and 0 without data (rdp_accountant_test)', () => {
    expect(rdpSubsampledGaussian(1, 10, 1, [20])[0]).toBeCloseTo(0.1, 12);
    expect(rdpSubsampledGaussian(0, 10, 1, [20])[0]).toBe(0);
  });

  it('agrees at fractional orders with A_α integrated numerically (Mironov, Talwar, Zhang 2019, Section 3.1)', () => {
    // A_α = ∫ μ0(x) · ((1 − q) + q · μ1(x)/μ0(x))^α dx with μ0 = N(0, σ²), μ1 = N(1, σ²), by Simpson's rule.
    const integrated = (q: number, sigma: number, alpha: number) => {
      const lo = -20 * sigma;
      const hi = 20 * sigma + alpha + 1;
      const n = 200_000;
      const h = (hi - lo) / n;
      let sum = 0;
      for (let i = 0; i <= n; i++) {
        const x = lo + i * h;
        const mu0 = Math.exp(-(x * x) / (2 * sigma * sigma)) / (sigma * Math.sqrt(2 * Math.PI));
        const f = mu0 * Math.pow(1 - q + q * Math.exp((2 * x - 1) / (2 * sigma * sigma)), alpha);
        sum += f * (i === 0 || i === n ? 1 : i % 2 === 1 ? 4 : 2);
      }
      return Math.log((sum * h) / 3) / (alpha - 1);
    };
    for (const [q, sigma, alpha] of [[0.01, 2.5, 1.5], [0.1, 2, 3.7], [0.001, 1, 2.5], [0.05, 0.8, 6.3], [0.3, 1.5, 10.9]]) {
      const expected = integrated(q, sigma, alpha);
      expect(Math.abs(rdpSubsampledGaussian(q, sigma, 1, [alpha])[0] - expected) / expected).toBeLessThan(1e-6);
    }
  });

  it('composes by adding over steps', () => {
    const one = rdpSubsampledGaussian(0.05, 1.1, 1, [2, 3.5, 32]);
    const many = rdpSubsampledGaussian(0.05, 1.1, 37, [2, 3.5, 32]);
    many.forEach((v, i) => expect(v).toBeCloseTo(37 * one[i], 12));
  });

  it('rejects a negative noise multiplier, a rate outside [0, 1] and an order ≤ 1', () => {
    expect(() => rdpSubsampledGaussian(0.1, -1, 1, [2])).toThrow(RangeError);
    expect(() => rdpSubsampledGaussian(1.5, 1, 1, [2])).toThrow(RangeError);
    expect(() => rdpSubsampledGaussian(0.1, 1, 1, [1])).toThrow(RangeError);
  });
});

describe('conversion to (ε, δ)', () => {
  it('matches rdp_accountant_test: constant RDP 1.1 over orders 2..32 at δ = 1e-5 gives ε = 1.32783806176 at order 32', () => {
    const orders = Array.from({ length: 31 }, (_, i) => i + 2);
    const { epsilon, order } = epsilonFromRdp(orders, orders.map(() => 1.1), 1e-5);
    expect(order).toBe(32);
    expect(epsilon).toBeCloseTo(1.32783806176, 9);
  });

  it('matches rdp_accountant_test: the Gaussian mechanism with σ = 4.530877117 is (1, 1e-6)-DP', () => {
    const orders = Array.from({ length: 99000 }, (_, i) => 0.001 * (i + 1000)).filter((a) => a > 1);
    const { epsilon } = epsilonFromRdp(orders, rdpSubsampledGaussian(1, 4.530877117, 1, orders), 1e-6);
    expect(epsilon).toBeCloseTo(1, 6);
  });

  it('matches compute_dp_sgd_privacy_test: n = 60000, batch 150, σ = 1.3, 15 epochs, δ = 1e-5 → ε = 0.7242234026109595 (order 19)', () => {
    const r = epsilonAfter({ samplingRate: 150 / 60000, noiseMultiplier: 1.3, steps: (15 * 60000) / 150, delta: 1e-5 });
    expect(r.epsilon).toBeCloseTo(0.7242234026109595, 9);
    expect(r.order).toBe(19);
  });

  it('matches compute_dp_sgd_privacy_test: n = 100000, batch 100, σ = 1.0, 30 epochs, δ = 1e-7 → ε = 1.4154988495444842 (order 13)', () => {
    const r = epsilonAfter({ samplingRate: 100 / 100000, noiseMultiplier: 1.0, steps: (30 * 100000) / 100, delta: 1e-7 });
    expect(r.epsilon).toBeCloseTo(1.4154988495444842, 9);
    expect(r.order).toBe(13);
  });

  it('matches compute_dp_sgd_privacy_test with little noise (σ = 0.1 → ε = 5907982.31 at order 1.25, on its own order list)', () => {
    const orders = [1.25, 1.5, 1.75, 2, 2.25, 2.5, 3, 3.5, 4, 4.5, ...Array.from({ length: 59 }, (_, i) => 5 + i), 128, 256, 512];
    const r = epsilonAfter({ samplingRate: 1024 / 1e8, noiseMultiplier: 0.1, steps: Math.ceil((10 * 1e8) / 1024), delta: 1e-7, orders });
    expect(r.order).toBe(1.25);
    expect(Math.abs(r.epsilon - 5907982.3113978775) / 5907982.3113978775).toBeLessThan(1e-9);
  });

  it('stays within the composition bound of rdp_accountant_test.test_check_composition (ε ≤ 8.509656)', () => {
    const orders = [1.25, 1.5, 1.75, 2, 2.5, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 64, 256];
    const first = rdpSubsampledGaussian(1e-4, 0.4, 40000, orders);
    const second = rdpSubsampledGaussian(0.1, 2, 100, orders);
    const { epsilon } = epsilonFromRdp(orders, first.map((r, i) => r + second[i]), 1e-5);
    expect(epsilon).toBeLessThanOrEqual(8.509656);
    expect(epsilon).toBeGreaterThan(5); // and is not trivially small
  });

  it('is never above the standard conversion RDP(α) − log(δ)/(α − 1)', () => {
    const rdp = rdpSubsampledGaussian(0.02, 0.9, 500, DEFAULT_ORDERS);
    const standard = Math.min(...DEFAULT_ORDERS.map((a, i) => rdp[i] - Math.log(1e-5) / (a - 1)));
    const improved = epsilonFromRdp(DEFAULT_ORDERS, rdp, 1e-5).epsilon;
    expect(improved).toBeLessThan(standard);
    expect(improved).toBeGreaterThan(0.8 * standard);
  });
});

describe('choosing the noise multiplier for a target ε', () => {
  it('finds the smallest σ that meets the budget, by bisection', () => {
    const plan = { targetEpsilon: 8, delta: 1e-5, samplingRate: 0.01, steps: 100 };
    const z = noiseMultiplierFor(plan);
    expect(epsilonAfter({ ...plan, noiseMultiplier: z }).epsilon).toBeLessThanOrEqual(8);
    expect(epsilonAfter({ ...plan, noiseMultiplier: z * 0.999 }).epsilon).toBeGreaterThan(8);
  });

  it('recovers σ = 1.3 from the ε that the first compute_dp_sgd_privacy case reports', () => {
    const z = noiseMultiplierFor({ targetEpsilon: 0.7242234026109595, delta: 1e-5, samplingRate: 150 / 60000, steps: 6000 }, 1000, 1e-6);
    expect(z).toBeCloseTo(1.3, 4);
  });

  it('answers Infinity when no multiplier up to the cap affords the budget', () => {
    expect(noiseMultiplierFor({ targetEpsilon: 1e-4, delta: 1e-5, samplingRate: 1, steps: 1000 }, 10)).toBe(Infinity);
  });
});

describe('log erfc', () => {
  it('agrees with closed values across the series / continued-fraction switch and the tails', () => {
    expect(logErfc(0)).toBeCloseTo(0, 14);
    expect(Math.exp(logErfc(1))).toBeCloseTo(0.157299207050285, 13); // erfc(1)
    expect(Math.exp(logErfc(-1))).toBeCloseTo(1.842700792949715, 13);
    expect(Math.abs(logErfc(2.999999) - logErfc(3.000001))).toBeLessThan(2e-5); // d/dx log erfc(3) ≈ −6.3
    expect(logErfc(3)).toBeCloseTo(Math.log(2.209049699858544e-5), 10);
    expect(logErfc(30)).toBeCloseTo(-900 - 0.5 * Math.log(Math.PI) - Math.log(30) + Math.log1p(-1 / 1800 + 3 / (4 * 810000)), 8);
    expect(logErfc(-30)).toBeCloseTo(Math.log(2), 14);
  });
});
