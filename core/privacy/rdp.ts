/**
 * Rényi-DP accountant for the Poisson-subsampled Gaussian mechanism.
 *
 * Mechanism: each record is included independently with probability q, the (clipped) query is computed on the
 * sample and Gaussian noise with standard deviation z·Δ is added, where Δ is the query's sensitivity and z the
 * noise multiplier. Its RDP at order α (Mironov 2017, "Rényi Differential Privacy"; Mironov, Talwar, Zhang 2019,
 * "Rényi Differential Privacy of the Sampled Gaussian Mechanism", Sections 3.3 and 3.4) is log(A_α)/(α − 1), with
 *   integer α:    A_α = Σ_{k=0..α} C(α,k) (1−q)^{α−k} q^k exp((k² − k) / (2z²))
 *   fractional α: the two-sided series of the same paper, with erfc tails, summed until its terms fall below e^−30.
 * RDP composes by addition over steps. The conversion to (ε, δ) is the improved one of Balle, Barthe, Gaboardi,
 * Hsu, Sato 2020 ("Hypothesis testing interpretations and Rényi differential privacy", Theorem 21):
 *   ε = min_α  RDP(α) + log((α − 1)/α) − (log δ + log α)/(α − 1),
 * which is never larger than the standard RDP(α) − log(δ)/(α − 1) of Mironov 2017, Proposition 3.
 * The orders are those of TF-Privacy and Opacus (1.1 … 10.9, 12 … 63), so results compare with theirs.
 */

export const DEFAULT_ORDERS: readonly number[] = Object.freeze([
  ...Array.from({ length: 99 }, (_, i) => 1 + (i + 1) / 10),
  ...Array.from({ length: 52 }, (_, i) => 12 + i),
]);

/** log(e^a + e^b) without overflow. */
export function logAdd(a: number, b: number): number {
  if (a === -Infinity) return b;
  if (b === -Infinity) return a;
  const hi = Math.max(a, b);
  return hi + Math.log1p(Math.exp(Math.min(a, b) - hi));
}

/** log(e^a − e^b) for a ≥ b. */
export function logSub(a: number, b: number): number {
  if (b === -Infinity) return a;
  if (b > a) throw new RangeError(`logSub: ${b} > ${a}, the difference would be negative`);
  if (a === b) return -Infinity;
  return a + Math.log(-Math.expm1(b - a));
}

const LOG_SQRT_PI = 0.5 * Math.log(Math.PI);

/**
 * log(erfc(x)) to about 1e-14 relative accuracy for all finite x, without underflow for large x:
 * the positive series erf(x) = 2/√π · e^{−x²} · Σ 2ⁿ x^{2n+1} / (1·3·…·(2n+1)) for |x| < 3, the continued fraction
 * erfc(x) = e^{−x²}/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …)))) above, and erfc(−x) = 2 − erfc(x).
 */
export function logErfc(x: number): number {
  if (Number.isNaN(x)) return NaN;
  if (x >= 3) {
    // Continued fraction evaluated from the tail; 80 levels converge to double precision for x ≥ 3.
    let tail = x;
    for (let k = 80; k >= 1; k--) tail = x + k / 2 / tail;
    return -x * x - LOG_SQRT_PI - Math.log(tail);
  }
  if (x <= -3) return Math.log(2 - Math.exp(logErfc(-x)));
  const erf = erfSeries(x);
  return Math.log1p(-erf);
}

function erfSeries(x: number): number {
  const x2 = x * x;
  let term = x;
  let sum = x;
  for (let n = 1; n < 200; n++) {
    term *= (2 * x2) / (2 * n + 1);
    sum += term;
    if (Math.abs(term) < 1e-17 * Math.abs(sum)) break;
  }
  return (2 / Math.sqrt(Math.PI)) * Math.exp(-x2) * sum;
}

/** log A_α for integer α ≥ 2 (exact binomial expansion). */
function logAInteger(q: number, z: number, alpha: number): number {
  const logQ = Math.log(q);
  const log1mQ = Math.log1p(-q);
  let logBinom = 0;
  let logA = -Infinity;
  for (let k = 0; k <= alpha; k++) {
    if (k > 0) logBinom += Math.log(alpha - k + 1) - Math.log(k);
    const term = logBinom + k * logQ + (alpha - k) * log1mQ + (k * k - k) / (2 * z * z);
    logA = logAdd(logA, term);
  }
  return logA;
}

/** log A_α for fractional α > 1: Mironov, Talwar, Zhang 2019, Section 3.3, split at z0 = z² log(1/q − 1) + 1/2. */
function logAFractional(q: number, z: number, alpha: number): number {
  let logA0 = -Infinity;
  let logA1 = -Infinity;
  const z0 = z * z * Math.log(1 / q - 1) + 0.5;
  const logQ = Math.log(q);
  const log1mQ = Math.log1p(-q);
  const sqrt2z = Math.SQRT2 * z;
  let logAbsBinom = 0; // log |C(α, i)|
  let binomSign = 1;
  for (let i = 0; ; i++) {
    if (i > 0) {
      const factor = (alpha - i + 1) / i;
      if (factor === 0) break;
      logAbsBinom += Math.log(Math.abs(factor));
      if (factor < 0) binomSign = -binomSign;
    }
    const j = alpha - i;
    const logT0 = logAbsBinom + i * logQ + j * log1mQ;
    const logT1 = logAbsBinom + j * logQ + i * log1mQ;
    const logE0 = Math.log(0.5) + logErfc((i - z0) / sqrt2z);
    const logE1 = Math.log(0.5) + logErfc((z0 - j) / sqrt2z);
    const logS0 = logT0 + (i * i - i) / (2 * z * z) + logE0;
    const logS1 = logT1 + (j * j - j) / (2 * z * z) + logE1;
    if (binomSign > 0) {
      logA0 = logAdd(logA0, logS0);
      logA1 = logAdd(logA1, logS1);
    } else {
      logA0 = logSub(logA0, logS0);
      logA1 = logSub(logA1, logS1);
    }
    if (Math.max(logS0, logS1) < -30 || i > 100_000) break;
  }
  return logAdd(logA0, logA1);
}

function checkMechanism(q: number, z: number): void {
  if (!(q >= 0 && q <= 1)) throw new RangeError(`sampling rate must be in [0, 1], got ${q}`);
  if (!(z >= 0) || !Number.isFinite(z)) throw new RangeError(`noise multiplier must be a finite number ≥ 0, got ${z}`);
}

/** RDP of one step of the subsampled Gaussian mechanism at one order α > 1 (∞ allowed: returns ∞ unless q = 0). */
export function rdpOneStep(q: number, z: number, alpha: number): number {
  checkMechanism(q, z);
  if (!(alpha > 1)) throw new RangeError(`RDP order must be > 1, got ${alpha}`);
  if (q === 0) return 0;
  if (z === 0) return Infinity;
  if (q === 1) return alpha / (2 * z * z);
  if (alpha === Infinity) return Infinity;
  const logA = Number.isInteger(alpha) ? logAInteger(q, z, alpha) : logAFractional(q, z, alpha);
  return logA / (alpha - 1);
}

/** RDP of `steps` compositions of the mechanism, one value per order. */
export function rdpSubsampledGaussian(q: number, z: number, steps: number, orders: readonly number[] = DEFAULT_ORDERS): number[] {
  if (!Number.isInteger(steps) || steps < 0) throw new RangeError(`steps must be a non-negative integer, got ${steps}`);
  return orders.map((alpha) => (steps === 0 ? 0 : steps * rdpOneStep(q, z, alpha)));
}

export interface EpsilonResult {
  epsilon: number;
  /** The order that gave the smallest ε. */
  order: number;
}

/** (ε, δ) from RDP values by the conversion of Balle et al. 2020 (see the file comment), minimised over orders. */
export function epsilonFromRdp(orders: readonly number[], rdp: readonly number[], delta: number): EpsilonResult {
  if (orders.length !== rdp.length || orders.length === 0) throw new RangeError('epsilonFromRdp: orders and RDP values must be non-empty and of equal length');
  if (!(delta > 0 && delta < 1)) throw new RangeError(`δ must be in (0, 1), got ${delta}`);
  let best: EpsilonResult = { epsilon: Infinity, order: orders[0] };
  for (let i = 0; i < orders.length; i++) {
    const alpha = orders[i];
    const r = rdp[i];
    if (!(r >= 0)) throw new RangeError(`RDP values must be ≥ 0, got ${r} at order ${alpha}`);
    let epsilon: number;
    if (delta * delta + Math.expm1(-r) > 0) {
      // The KL bound δ ≤ √(1 − e^{−RDP}) already gives ε = 0 here.
      epsilon = 0;
    } else if (alpha > 1.01) {
      // Not numerically stable as α → 1, where it is never the minimum anyway.
      epsilon = r + Math.log1p(-1 / alpha) - Math.log(delta * alpha) / (alpha - 1);
    } else {
      epsilon = Infinity;
    }
    if (epsilon < best.epsilon) best = { epsilon, order: alpha };
  }
  return { epsilon: Math.max(0, best.epsilon), order: best.order };
}

export interface MechanismSchedule {
  /** Poisson sampling rate q of each step. */
  samplingRate: number;
  /** Noise standard deviation divided by the query's sensitivity. */
  noiseMultiplier: number;
  steps: number;
  delta: number;
  orders?: readonly number[];
}

/** ε spent after `steps` steps of the subsampled Gaussian mechanism at the given δ. */
export function epsilonAfter(s: MechanismSchedule): EpsilonResult {
  const orders = s.orders ?? DEFAULT_ORDERS;
  return epsilonFromRdp(orders, rdpSubsampledGaussian(s.samplingRate, s.noiseMultiplier, s.steps, orders), s.delta);
}

/**
 * The smallest noise multiplier (to `tolerance`, relative) whose ε after `steps` steps is at most targetEpsilon, by
 * bisection (ε falls as the multiplier grows). Returns Infinity when even `maxNoiseMultiplier` cannot meet the target.
 */
export function noiseMultiplierFor(
  target: { targetEpsilon: number; delta: number; samplingRate: number; steps: number; orders?: readonly number[] },
  maxNoiseMultiplier = 1000,
  tolerance = 1e-4,
): number {
  if (!(target.targetEpsilon > 0)) throw new RangeError(`target ε must be > 0, got ${target.targetEpsilon}`);
  const eps = (z: number) => epsilonAfter({ ...target, noiseMultiplier: z }).epsilon;
  if (target.steps === 0 || target.samplingRate === 0) return 0;
  let hi = 0.5;
  while (eps(hi) > target.targetEpsilon) {
    if (hi >= maxNoiseMultiplier) return Infinity;
    hi = Math.min(maxNoiseMultiplier, hi * 2);
  }
  let lo = 0;
  while (hi - lo > tolerance * hi) {
    const mid = (lo + hi) / 2;
    if (eps(mid) > target.targetEpsilon) lo = mid;
    else hi = mid;
  }
  return hi;
}
