import { buildAdapter, tensorOf, validateInputs, weightedSumInto } from '../common.ts';
import type { MergeStrategy } from '../types.ts';

/**
 * variance-corrected: variance-corrected model averaging after Tian, Al-Ars, Kitsak & Hofstee, "Vanishing Variance
 * Problem in Fully Decentralized Neural-Network Systems" (2024). Averaging uncorrelated models shrinks the spread of
 * their weights (the mean of N independent tensors has about 1/N of their variance), which slows gossip learning;
 * the correction puts the spread back.
 *
 * Per tensor (each A and each B of each module, separately):
 *   mix = Σ wᵢ·xᵢ (normalised weights, self included),  μ = mean(mix),  v = population variance of mix,
 *   out = μ + (mix − μ)·√(target / (v + epsilon)).
 * The output therefore has variance target·v/(v + epsilon) ≈ target and the same mean as the mix.
 * `target` (population variances vᵢ of the inputs):
 *   'received' (default): Σ_{i≥1} wᵢvᵢ / Σ_{i≥1} wᵢ over the neighbours (the self variance when there is none),
 *   'self': v₀,  'all': Σ wᵢvᵢ over every input,  'conservative': min(v₀, received) — never inflates beyond either.
 * epsilon guards the division for (near-)constant tensors: a constant mix stays constant instead of being blown up,
 * and a LoRA B that is still all zeros stays zero.
 */
export const varianceCorrected: MergeStrategy = {
  name: 'variance-corrected',
  description: 'weighted mean, then each tensor rescaled around its mean to the target variance',
  reference: 'https://arxiv.org/abs/2404.04616',
  params: [
    { name: 'target', type: 'string', default: 'received', choices: ['received', 'self', 'all', 'conservative'], description: 'whose variance the output gets' },
    { name: 'epsilon', type: 'number', default: 1e-12, min: 0, description: 'added to the mixed variance before dividing' },
  ],
  selfSpecial: true,
  output: 'factors',
  merge(inputs, params) {
    const weights = validateInputs(inputs);
    const target = params.target as string;
    const epsilon = params.epsilon as number;
    return buildAdapter(inputs[0].adapter, (ref, like) => {
      const tensors = inputs.map((input) => tensorOf(input.adapter, ref));
      const out = new Float32Array(like.length);
      weightedSumInto(out, tensors, weights);
      const variances = tensors.map((t) => meanAndVariance(t).variance);
      const goal = targetVariance(target, variances, weights);
      const { mean, variance } = meanAndVariance(out);
      const scale = Math.sqrt(goal / (variance + epsilon));
      if (!Number.isFinite(scale)) return out;
      for (let j = 0; j < out.length; j++) out[j] = mean + (out[j] - mean) * scale;
      return out;
    });
  },
};

export function targetVariance(target: string, variances: readonly number[], weights: ArrayLike<number>): number {
  const self = variances[0];
  let received = 0;
  let receivedWeight = 0;
  for (let i = 1; i < variances.length; i++) {
    received += weights[i] * variances[i];
    receivedWeight += weights[i];
  }
  const receivedMean = receivedWeight > 0 ? received / receivedWeight : self;
  switch (target) {
    case 'self': return self;
    case 'all': {
      let all = 0;
      for (let i = 0; i < variances.length; i++) all += weights[i] * variances[i];
      return all;
    }
    case 'conservative': return Math.min(self, receivedMean);
    default: return receivedMean;
  }
}

/** Two-pass (numerically stable) mean and population variance in float64. */
export function meanAndVariance(x: Float32Array): { mean: number; variance: number } {
  if (x.length === 0) return { mean: 0, variance: 0 };
  let sum = 0;
  for (let j = 0; j < x.length; j++) sum += x[j];
  const mean = sum / x.length;
  let sq = 0;
  for (let j = 0; j < x.length; j++) {
    const d = x[j] - mean;
    sq += d * d;
  }
  return { mean, variance: sq / x.length };
}
