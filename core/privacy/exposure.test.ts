import { describe, expect, it } from 'vitest';
import { chanceExposure, exposure, membershipAuc, secretRank } from './exposure.ts';

describe('exposure (The Secret Sharer, Section 4)', () => {
  it('is log2(m + 1) for a secret scored best and 0 for one scored worst', () => {
    const candidates = Array.from({ length: 127 }, (_, i) => 10 + i);
    expect(exposure(1, candidates)).toBeCloseTo(7, 12);
    expect(exposure(1000, candidates)).toBeCloseTo(0, 12);
    expect(secretRank(10.5, candidates)).toBe(2);
    expect(secretRank(10, candidates)).toBe(1.5); // a tie counts half
  });

  it('averages 1/ln 2 bits at chance for large candidate sets', () => {
    expect(chanceExposure(1)).toBeCloseTo(0.5, 12); // ranks 1 and 2: (1 + 0) / 2
    expect(chanceExposure(100_000)).toBeCloseTo(1 / Math.LN2, 3);
  });
});

describe('membership AUC', () => {
  it('is 1 when every member has a lower loss, 0.5 for identical distributions, and refuses empty sets', () => {
    expect(membershipAuc([1, 2], [3, 4])).toBe(1);
    expect(membershipAuc([3, 4], [1, 2])).toBe(0);
    expect(membershipAuc([1, 2, 3], [1, 2, 3])).toBe(0.5);
    expect(() => membershipAuc([], [1])).toThrow(RangeError);
  });
});
