import { adapterLike, buildAdapter, countForDensity, deriveSeed, keepTopMagnitudes, validateInputs } from '../common.ts';
import { randomizedSvd } from '../linalg.ts';
import { loraScale, moduleNames, type LoraPair } from '../../model/adapter.ts';
import type { MergeContext, MergeInput, MergeParams, MergeStrategy } from '../types.ts';
import { addToBase, BASE_PARAM, combine, LAMBDA_PARAM, taskVectors, type Base } from './task-vectors.ts';

/**
 * ties: TIES-Merging (Yadav et al. 2023, "Resolving Interference When Merging Models"), per tensor:
 *   1. trim: each task vector τᵢ keeps its k = round(density·size) entries of largest magnitude. Equal magnitudes
 *      at the threshold are kept in increasing index order until exactly k are kept; zeros are never "kept".
 *   2. elect: per entry, the sign of Σ wᵢ·τ̂ᵢ (weighted, normalised weights).
 *   3. disjoint mean: Σ wᵢ·τ̂ᵢ / Σ wᵢ over the inputs whose trimmed value is non-zero with the elected sign.
 *      A zero sign sum elects nothing and the entry is 0.
 *   4. out = base + lambda·merged.
 * (Task vectors, base 'self' | 'zero' and the consensus rule are described in task-vectors.ts.)
 *
 * space 'factors': steps 1–4 on each A and each B separately (PEFT's "ties" on adapters).
 * space 'products': steps 1–4 on the dense ΔWᵢ = (alpha/r)·BᵢAᵢ of each module, then the merged ΔW is
 *   re-factorised to rank r by randomised SVD (seeded Gaussian sketch, `oversample` extra columns,
 *   `powerIterations` rounds), with the singular values split evenly between B and A. Modules are processed one at
 *   a time through N + 2 reusable out×in buffers sized for the largest module, so the extra memory is bounded by
 *   one module, not the adapter. Only ΔW is meaningful in this output.
 */
export const ties: MergeStrategy = {
  name: 'ties',
  description: 'TIES-Merging: trim to top-k magnitudes, elect signs, average agreeing entries (factors or products)',
  reference: 'https://arxiv.org/abs/2306.01708',
  params: [
    { name: 'density', type: 'number', default: 0.2, min: 0, max: 1, description: 'fraction of entries each task vector keeps' },
    BASE_PARAM,
    LAMBDA_PARAM,
    { name: 'space', type: 'string', default: 'factors', choices: ['factors', 'products'], description: 'merge the A/B factors or the products B·A' },
    { name: 'oversample', type: 'number', default: 8, min: 0, integer: true, description: "products space: randomised SVD's extra sketch columns" },
    { name: 'powerIterations', type: 'number', default: 1, min: 0, integer: true, description: "products space: randomised SVD's power iterations" },
  ],
  selfSpecial: true,
  output: (params) => (params.space === 'products' ? 'product' : 'factors'),
  merge(inputs, params, ctx) {
    const weights = validateInputs(inputs);
    if (params.space === 'products') return tiesProducts(inputs, weights, params, ctx);
    const base = params.base as Base;
    return buildAdapter(inputs[0].adapter, (ref, like) => {
      const taus = taskVectors(inputs, ref, base);
      const keep = countForDensity(like.length, params.density as number);
      for (const tau of taus) keepTopMagnitudes(tau, keep);
      const merged = new Float32Array(like.length);
      combine(taus, weights, 'ties', merged);
      return addToBase(inputs, ref, base, params.lambda as number, merged);
    });
  },
};

function tiesProducts(inputs: readonly MergeInput[], weights: Float64Array, params: MergeParams, ctx: MergeContext) {
  const template = inputs[0].adapter;
  const scale = loraScale(template.config);
  const r = template.config.r;
  const base = params.base as Base;
  const lambda = params.lambda as number;
  const names = moduleNames(template);
  let largest = 0;
  for (const name of names) {
    const p = template.modules.get(name)!;
    largest = Math.max(largest, p.inDim * p.outDim);
  }
  const taus = inputs.map(() => new Float32Array(largest));
  const selfDense = new Float32Array(base === 'self' ? largest : 0);
  const merged = new Float32Array(largest);
  const modules = new Map<string, LoraPair>();
  for (const name of names) {
    const { inDim, outDim } = template.modules.get(name)!;
    const size = inDim * outDim;
    const views = taus.map((t) => t.subarray(0, size));
    const selfView = selfDense.subarray(0, base === 'self' ? size : 0);
    if (base === 'self') denseProduct(template.modules.get(name)!, r, scale, selfView, null);
    inputs.forEach((input, i) => {
      if (base === 'self' && i === 0) views[0].fill(0);
      else denseProduct(input.adapter.modules.get(name)!, r, scale, views[i], base === 'self' ? selfView : null);
    });
    const keep = countForDensity(size, params.density as number);
    for (const v of views) keepTopMagnitudes(v, keep);
    const out = merged.subarray(0, size);
    combine(views, weights, 'ties', out);
    // out ← (base + lambda·merged) / scale: the factors carry ΔW / (alpha/r).
    for (let j = 0; j < size; j++) out[j] = ((base === 'self' ? selfView[j] : 0) + lambda * out[j]) / scale;
    modules.set(name, refactorise(out, outDim, inDim, r, {
      oversample: params.oversample as number,
      powerIterations: params.powerIterations as number,
      seed: deriveSeed(ctx.seed ?? 0, name),
    }));
  }
  return adapterLike(template, modules);
}

/** out[o][j] = scale·(B·A)[o][j] − (minus ? minus[o][j] : 0), row by row in a float64 accumulator, 8 rank units per pass. */
export function denseProduct(pair: LoraPair, r: number, scale: number, out: Float32Array, minus: Float32Array | null): void {
  const { a, b, inDim, outDim } = pair;
  const acc = new Float64Array(inDim);
  for (let o = 0; o < outDim; o++) {
    const row = o * inDim;
    const br = o * r;
    acc.fill(0);
    let k = 0;
    for (; k + 8 <= r; k += 8) {
      const c0 = b[br + k], c1 = b[br + k + 1], c2 = b[br + k + 2], c3 = b[br + k + 3];
      const c4 = b[br + k + 4], c5 = b[br + k + 5], c6 = b[br + k + 6], c7 = b[br + k + 7];
      const a0 = k * inDim, a1 = a0 + inDim, a2 = a1 + inDim, a3 = a2 + inDim, a4 = a3 + inDim, a5 = a4 + inDim, a6 = a5 + inDim, a7 = a6 + inDim;
      for (let j = 0; j < inDim; j++) {
        acc[j] += c0 * a[a0 + j] + c1 * a[a1 + j] + c2 * a[a2 + j] + c3 * a[a3 + j] + c4 * a[a4 + j] + c5 * a[a5 + j] + c6 * a[a6 + j] + c7 * a[a7 + j];
      }
    }
    for (; k < r; k++) {
      const c = b[br + k];
      const a0 = k * inDim;
      for (let j = 0; j < inDim; j++) acc[j] += c * a[a0 + j];
    }
    if (minus) for (let j = 0; j < inDim; j++) out[row + j] = scale * acc[j] - minus[row + j];
    else for (let j = 0; j < inDim; j++) out[row + j] = scale * acc[j];
  }
}

/** Balanced rank-r factors of a dense out×in matrix: B = U·√S, A = √S·Vᵀ. */
export function refactorise(
  dense: Float32Array,
  outDim: number,
  inDim: number,
  r: number,
  options: { oversample: number; powerIterations: number; seed: number },
): LoraPair {
  const { u, s, v } = randomizedSvd(dense, outDim, inDim, r, options);
  const a = new Float32Array(r * inDim);
  const b = new Float32Array(outDim * r);
  for (let c = 0; c < s.length; c++) {
    const root = Math.sqrt(s[c]);
    for (let o = 0; o < outDim; o++) b[o * r + c] = u[c * outDim + o] * root;
    for (let j = 0; j < inDim; j++) a[c * inDim + j] = v[c * inDim + j] * root;
  }
  return { a, b, inDim, outDim };
}
