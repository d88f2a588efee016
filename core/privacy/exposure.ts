/**
 * Measures of what a published adapter gives away about the text it was trained on (pure functions; the scores
 * come from core/privacy/scoring.ts).
 *
 * Exposure (Carlini et al. 2019, "The Secret Sharer", Section 4): plant a random secret s drawn from a space R; the
 * exposure of s is log2 |R| − log2 rank(s), where rank is s's position when every candidate of R is ordered by the
 * model's log-perplexity (lowest first). Here R is estimated by m random candidates plus s itself (Section 4.2's
 * sampling estimate), so exposure runs from 0 to log2(m + 1); a model that knows nothing of s ranks it uniformly,
 * which gives E[exposure] ≈ 1/ln 2 ≈ 1.44 bits (chance level).
 */

/** Rank of the true secret among candidates by log-perplexity (1 = lowest); ties count half. */
export function secretRank(trueScore: number, candidateScores: readonly number[]): number {
  let below = 0;
  let tied = 0;
  for (const s of candidateScores) {
    if (s < trueScore) below++;
    else if (s === trueScore) tied++;
  }
  return 1 + below + tied / 2;
}

/** Exposure in bits of a secret ranked among m candidates (R estimated by the m candidates plus the secret). */
export function exposure(trueScore: number, candidateScores: readonly number[]): number {
  return Math.log2(candidateScores.length + 1) - Math.log2(secretRank(trueScore, candidateScores));
}

/** Expected exposure of a secret the model knows nothing about: its rank is uniform on 1..m+1. */
export function chanceExposure(candidates: number): number {
  const n = candidates + 1;
  let sum = 0;
  for (let rank = 1; rank <= n; rank++) sum += Math.log2(n) - Math.log2(rank);
  return sum / n;
}

/**
 * Membership inference by loss threshold (Yeom et al. 2018): the area under the ROC curve of "lower loss ⇒ trained
 * on it", i.e. the probability that a random member record has a lower loss than a random non-member (ties half).
 * 0.5 is chance; 1 means every trained record is recognisable.
 */
export function membershipAuc(memberLosses: readonly number[], nonMemberLosses: readonly number[]): number {
  if (memberLosses.length === 0 || nonMemberLosses.length === 0) throw new RangeError('membershipAuc needs members and non-members');
  let wins = 0;
  for (const m of memberLosses) for (const n of nonMemberLosses) wins += m < n ? 1 : m === n ? 0.5 : 0;
  return wins / (memberLosses.length * nonMemberLosses.length);
}

export function mean(xs: readonly number[]): number {
  return xs.reduce((s, x) => s + x, 0) / xs.length;
}
