/**
 * How much of a round's aggregate is fresh, for the momentum of an outer optimiser.
 *
 * Momentum amplifies whatever enters it: a pseudo-gradient added to the buffer is applied again, scaled by β, β²,
 * … in every later step. Liu et al. ("Asynchronous Local-SGD Training for Language Modeling", 2024,
 * arXiv:2401.09135, §4) identify this as what breaks Nesterov outer steps under asynchrony, where stale
 * pseudo-gradients arrive, and fix it with a delayed Nesterov update: stale contributions are applied as plain
 * gradient steps and enter the momentum only in a delayed, averaged form.
 *
 * A peer here takes its own outer step every round, so there is no server queue to delay; the equivalent used
 * is to split the aggregate by age. A neighbour adapter received τ whole rounds ago (τ = ⌊age / round length⌋,
 * the round being the one that just ended on this peer's clock) counts as fresh by the polynomial staleness
 * function of FedAsync (Xie, Koyejo & Gupta 2019, "Asynchronous Federated Optimization", arXiv:1903.03934):
 * s(τ) = (1 + τ)^(−a). The round's freshness is the merge-weighted mean of s over its inputs (the peer's own
 * adapter is always fresh): f = Σ wᵢ·s(τᵢ) / Σ wᵢ. The optimiser adds only f·Δ to its momentum and applies the
 * stale (1 − f)·Δ once, without momentum. With every input fresh (f = 1) the step is plain Nesterov.
 */

/** s(τ) = (1 + τ)^(−a) for an input τ whole rounds old; 1 when fresh, and for a = 0 (staleness ignored). */
export function stalenessDiscount(roundsOld: number, exponent: number): number {
  if (!(roundsOld > 0)) return 1;
  return Math.pow(1 + roundsOld, -exponent);
}

/** Whole rounds an input of this age is old, given the length of the round that just ended (0 when unknown). */
export function roundsOld(ageMs: number, roundMs: number): number {
  if (!(roundMs > 0) || !(ageMs > 0)) return 0;
  return Math.floor(ageMs / roundMs);
}

/**
 * f = Σ wᵢ·s(τᵢ) / Σ wᵢ over the round's merge inputs (self included, with age 0), in [0, 1]; 1 when the
 * weights sum to zero or less (nothing to discount).
 */
export function roundFreshness(inputs: ReadonlyArray<{ weight: number; ageMs: number }>, roundMs: number, exponent: number): number {
  let total = 0;
  let fresh = 0;
  for (const { weight, ageMs } of inputs) {
    if (!(weight > 0)) continue;
    total += weight;
    fresh += weight * stalenessDiscount(roundsOld(ageMs, roundMs), exponent);
  }
  return total > 0 ? Math.min(1, fresh / total) : 1;
}
