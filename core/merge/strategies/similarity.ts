import { adapterParameterCount } from '../../model/adapter.ts';
import { buildAdapter, tensorOf, tensorRefs, validateInputs, weightedSumInto } from '../common.ts';
import { MergeInputError } from '../errors.ts';
import type { MergeInput, MergeStrategy, PeerHistoryView } from '../types.ts';

/**
 * similarity-weighting: down-weights neighbours that push in the same direction as each other, in the spirit of
 * FoolsGold (Fung, Yoon & Beschastnikh 2020) and SybilWall: Sybils controlled by one attacker send near-identical
 * updates, while honest peers trained on different data disagree.
 *
 * The update of neighbour j is uⱼ = θⱼ − θ_self (all factors, flattened in canonical order); its history is
 * Hⱼ = ctx.peerHistory.accumulated(j) + uⱼ (only uⱼ when there is no history). Over the neighbours:
 *   cs_ij = cos(Hᵢ, Hⱼ) (0 when either is zero), vᵢ = max_{j≠i} cs_ij;
 *   pardoning: cs_ij ← cs_ij·vᵢ/vⱼ when vᵢ < vⱼ (honest peers that merely resemble a Sybil are not punished);
 *   αᵢ = clip(1 − max_{j≠i} cs_ij, 0, 1), α ← α / max α, α = 1 → 0.99,
 *   αᵢ ← clip(kappa·(ln(αᵢ/(1−αᵢ)) + 0.5), 0, 1).
 * The merged adapter is the weighted mean of all inputs with weights w_self and wⱼ·αⱼ (renormalised; the merging
 * peer itself is trusted). If every weight ends at zero the peer keeps its own adapter.
 *
 * The strategy itself is pure: it reads the history but never writes it. The caller owns a PeerUpdateHistory and
 * calls `record(inputs)` after each merge, so replaying a merge with the same history gives the same result.
 */
export const similarityWeighting: MergeStrategy = {
  name: 'similarity-weighting',
  description: 'FoolsGold-style: down-weight neighbours whose accumulated updates are too similar to each other',
  reference: 'https://arxiv.org/abs/1808.04866',
  params: [{ name: 'kappa', type: 'number', default: 1, min: 0, description: 'confidence of the logit re-weighting' }],
  selfSpecial: true,
  output: 'factors',
  merge(inputs, params, ctx) {
    const weights = validateInputs(inputs);
    const trust = foolsGoldTrust(inputs, params.kappa as number, ctx.peerHistory);
    const final = new Float64Array(inputs.length);
    let total = 0;
    for (let i = 0; i < inputs.length; i++) {
      final[i] = weights[i] * (i === 0 ? 1 : trust[i]);
      total += final[i];
    }
    if (!(total > 0)) {
      final.fill(0);
      final[0] = 1;
      total = 1;
    }
    for (let i = 0; i < final.length; i++) final[i] /= total;
    return buildAdapter(inputs[0].adapter, (ref, like) => {
      const out = new Float32Array(like.length);
      weightedSumInto(out, inputs.map((input) => tensorOf(input.adapter, ref)), final);
      return out;
    });
  },
};

/** Flattened θⱼ − θ_self in canonical tensor order. */
export function flatUpdate(input: MergeInput, self: MergeInput): Float32Array {
  const out = new Float32Array(adapterParameterCount(self.adapter));
  let off = 0;
  for (const ref of tensorRefs(self.adapter)) {
    const x = tensorOf(input.adapter, ref), s = tensorOf(self.adapter, ref);
    for (let j = 0; j < x.length; j++) out[off + j] = x[j] - s[j];
    off += x.length;
  }
  return out;
}

/** Trust αⱼ in [0, 1] of every input (index 0, the merging peer, gets 1). */
export function foolsGoldTrust(inputs: readonly MergeInput[], kappa: number, history?: PeerHistoryView): Float64Array {
  const n = inputs.length;
  const trust = new Float64Array(n).fill(1);
  if (n <= 2) return trust;
  const histories = inputs.slice(1).map((input) => {
    const h = flatUpdate(input, inputs[0]);
    const past = history?.accumulated(input.meta.peerId);
    if (past) {
      if (past.length !== h.length) throw new MergeInputError(`history of ${input.meta.peerId} has ${past.length} values, adapter has ${h.length}`);
      for (let j = 0; j < h.length; j++) h[j] += past[j];
    }
    return h;
  });
  const m = histories.length;
  const norms = histories.map((h) => Math.sqrt(dot(h, h)));
  const cs = new Float64Array(m * m);
  for (let i = 0; i < m; i++) {
    for (let j = i + 1; j < m; j++) {
      const c = norms[i] > 0 && norms[j] > 0 ? dot(histories[i], histories[j]) / (norms[i] * norms[j]) : 0;
      cs[i * m + j] = c;
      cs[j * m + i] = c;
    }
  }
  const maxSim = new Float64Array(m).fill(-Infinity);
  for (let i = 0; i < m; i++) for (let j = 0; j < m; j++) if (j !== i) maxSim[i] = Math.max(maxSim[i], cs[i * m + j]);
  const pardoned = cs.slice();
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < m; j++) {
      if (j !== i && maxSim[i] < maxSim[j] && maxSim[j] > 0) pardoned[i * m + j] = cs[i * m + j] * (maxSim[i] / maxSim[j]);
    }
  }
  const alpha = new Float64Array(m);
  for (let i = 0; i < m; i++) {
    let worst = -Infinity;
    for (let j = 0; j < m; j++) if (j !== i) worst = Math.max(worst, pardoned[i * m + j]);
    alpha[i] = Math.min(1, Math.max(0, 1 - worst));
  }
  const top = Math.max(...alpha);
  for (let i = 0; i < m; i++) {
    let a = top > 0 ? alpha[i] / top : 0;
    if (a >= 1) a = 0.99;
    const logit = a > 0 ? kappa * (Math.log(a / (1 - a)) + 0.5) : 0;
    trust[i + 1] = Math.min(1, Math.max(0, logit));
  }
  return trust;
}

function dot(x: Float32Array, y: Float32Array): number {
  let s = 0;
  for (let j = 0; j < x.length; j++) s += x[j] * y[j];
  return s;
}

/**
 * Accumulated updates per peer for similarity-weighting, owned by the merging peer across rounds.
 * Memory: one float32 vector of the adapter's size per peer ever recorded (forget() drops one).
 */
export class PeerUpdateHistory implements PeerHistoryView {
  private readonly sums = new Map<string, Float32Array>();

  accumulated(peerId: string): Float32Array | undefined {
    return this.sums.get(peerId);
  }

  /** Adds this round's update θⱼ − θ_self of every neighbour (inputs[1..]) to its history. */
  record(inputs: readonly MergeInput[]): void {
    for (const input of inputs.slice(1)) {
      const update = flatUpdate(input, inputs[0]);
      const sum = this.sums.get(input.meta.peerId);
      if (!sum || sum.length !== update.length) {
        this.sums.set(input.meta.peerId, update);
        continue;
      }
      for (let j = 0; j < sum.length; j++) sum[j] += update[j];
    }
  }

  forget(peerId: string): void {
    this.sums.delete(peerId);
  }

  get peers(): string[] {
    return [...this.sums.keys()].sort();
  }
}
