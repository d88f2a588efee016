import { assertFiniteAdapter, buildAdapter, tensorOf, validateInputs, weightedSumInto } from '../common.ts';
import type { MergeStrategy } from '../types.ts';

/**
 * fedavg: A' = Σ wᵢ·Aᵢ and B' = Σ wᵢ·Bᵢ with the weights normalised to sum to one, each factor on its own.
 *
 * This is the common federated baseline, and it is not the average of the adapters' effect: the product of the
 * means is (Σ wᵢBᵢ)(Σ wⱼAⱼ) = Σᵢ Σⱼ wᵢwⱼ BᵢAⱼ, which contains the cross terms BᵢAⱼ (i ≠ j) that no peer trained,
 * while the mean of the products is Σ wᵢ BᵢAᵢ (see exact-average). The two agree only when the factors agree.
 *
 * Inputs are not scanned for non-finite values up front: any NaN/∞ in any input makes some output value
 * non-finite (0·∞ = NaN), so the output check finds it and only then the inputs are scanned to name the culprit.
 */
export const fedavg: MergeStrategy = {
  name: 'fedavg',
  description: 'weighted mean of A and B separately (federated averaging baseline)',
  reference: 'https://arxiv.org/abs/1602.05629',
  params: [],
  selfSpecial: false,
  output: 'factors',
  merge(inputs) {
    const weights = validateInputs(inputs, { checkFinite: false });
    let finite = true;
    const merged = buildAdapter(inputs[0].adapter, (ref, like) => {
      const out = new Float32Array(like.length);
      if (!weightedSumInto(out, inputs.map((input) => tensorOf(input.adapter, ref)), weights)) finite = false;
      return out;
    });
    if (!finite) {
      inputs.forEach((input, i) => assertFiniteAdapter(input, i));
    }
    return merged;
  },
};
