/**
 * How much a neighbour's adapter counts, by its age. A peer never waits for anyone, so the adapters it merges are
 * of different ages; an old one describes where its owner was, not where it is, and counts less.
 *
 * Decay: weight(age) = selfWeight-relative factor 2^(-age / halfLifeMs) for age < dropAfterMs, and 0 (dropped)
 * from dropAfterMs on. With the defaults an adapter counts fully when fresh, half after 60 s, a quarter after
 * 2 min, and is dropped after 5 min (a tab that stopped is then forgotten). Negative ages (clock skew between
 * tabs) count as fresh.
 */
export interface StalenessPolicy {
  /** Age at which a neighbour's weight has halved. */
  halfLifeMs: number;
  /** Age from which a neighbour's adapter is no longer merged and is forgotten. */
  dropAfterMs: number;
}

export const DEFAULT_STALENESS: StalenessPolicy = { halfLifeMs: 60_000, dropAfterMs: 300_000 };

export class StalenessPolicyError extends Error {
  static override readonly name = 'StalenessPolicyError';
  override readonly name = StalenessPolicyError.name;
}

export function checkStalenessPolicy(policy: StalenessPolicy): StalenessPolicy {
  if (!(policy.halfLifeMs > 0) || !Number.isFinite(policy.halfLifeMs)) {
    throw new StalenessPolicyError(`staleness half-life must be a positive number of ms, got ${policy.halfLifeMs}`);
  }
  if (!(policy.dropAfterMs > 0) || !Number.isFinite(policy.dropAfterMs)) {
    throw new StalenessPolicyError(`staleness drop-after must be a positive number of ms, got ${policy.dropAfterMs}`);
  }
  return policy;
}

/** In [0, 1]: 1 when fresh, halving every halfLifeMs, 0 from dropAfterMs on. */
export function stalenessWeight(ageMs: number, policy: StalenessPolicy = DEFAULT_STALENESS): number {
  if (Number.isNaN(ageMs) || ageMs >= policy.dropAfterMs) return 0;
  if (ageMs <= 0) return 1;
  return Math.pow(2, -ageMs / policy.halfLifeMs);
}
