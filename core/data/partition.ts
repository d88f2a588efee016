/**
 * Partitioners: which share of which genre each peer trains on. A peer is identified by its slot (0-based);
 * everything is seeded, so two runs with the same config give every slot the same data.
 */
import { createRng, deriveSeed, sampleGamma } from '../util/random.ts';

export type PartitionConfig =
  /** Slot i trains on genres[i mod genres.length] only (the non-IID default). */
  | { kind: 'genre'; genres: string[] }
  /** Every slot samples all genres in proportion to their size. */
  | { kind: 'iid'; genres: string[] }
  /** Slot i samples genres with proportions drawn from Dirichlet(alpha); small alpha = skewed. */
  | { kind: 'dirichlet'; genres: string[]; alpha: number };

export class PartitionError extends Error {
  static override readonly name = 'PartitionError';
  override readonly name = PartitionError.name;
}

/** Mixture weights over genres (summing to 1) for one slot. `sizes` gives each genre's training bytes. */
export function assignMixture(
  config: PartitionConfig,
  slot: number,
  seed: number,
  sizes: Record<string, number>,
): Record<string, number> {
  if (!Number.isInteger(slot) || slot < 0) throw new PartitionError(`partition slot must be a non-negative integer, got ${slot}`);
  if (config.genres.length === 0) throw new PartitionError('partition needs at least one genre');
  for (const g of config.genres) {
    if (!(sizes[g] > 0)) throw new PartitionError(`partition genre '${g}' has no training data`);
  }
  switch (config.kind) {
    case 'genre':
      return { [config.genres[slot % config.genres.length]]: 1 };
    case 'iid': {
      const total = config.genres.reduce((s, g) => s + sizes[g], 0);
      return Object.fromEntries(config.genres.map((g) => [g, sizes[g] / total]));
    }
    case 'dirichlet': {
      if (!(config.alpha > 0)) throw new PartitionError(`Dirichlet alpha must be > 0, got ${config.alpha}`);
      const rng = createRng(deriveSeed(seed, `dirichlet/${slot}`));
      const draws = config.genres.map(() => sampleGamma(config.alpha, rng));
      const sum = draws.reduce((a, b) => a + b, 0);
      return Object.fromEntries(config.genres.map((g, i) => [g, draws[i] / sum]));
    }
    default:
      throw new PartitionError(`unknown partition kind '${(config as { kind: string }).kind}'`);
  }
}

/** A loss on a genre mixture: the mixture-weighted mean of per-genre losses. */
export function mixtureLoss(byGenre: Record<string, number>, mixture: Record<string, number>): number {
  const total = Object.values(mixture).reduce((a, b) => a + b, 0);
  return Object.entries(mixture).reduce((sum, [genre, w]) => sum + (w / total) * byGenre[genre], 0);
}
