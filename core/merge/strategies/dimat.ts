import { adapterLike, validateInputs } from '../common.ts';
import { hungarian, rowsDotRows } from '../linalg.ts';
import { moduleNames, type LoraPair } from '../../model/adapter.ts';
import { MergeInputError } from '../errors.ts';
import type { CalibrationBatch, MergeContext, MergeInput, MergeStrategy } from '../types.ts';

/**
 * dimat: DIMAT (Saadati et al. 2024, "DIMAT: Decentralized Iterative Merging-And-Training") for LoRA.
 *
 * ΔW = B·A is unchanged when A's rows and B's columns are permuted together, and when a row of A and the matching
 * column of B both change sign, so the rank units of independently trained adapters need not line up; averaging
 * misaligned units cancels them. Per module, each neighbour's units are aligned to the merging peer's (inputs[0]):
 *   unit k of an adapter is (A[k,:], B[:,k]); its activation is h_k = X·A[k,:]ᵀ over the calibration batch X of
 *   that module (ctx.calibration), or A[k,:] itself when there is none (X = I).
 *   similarity(k, l) = cos(h_k, h'_l)·cos(B[:,k], B'[:,l]) (for X = I this is the cosine between the rank-one terms
 *   b_k·a_kᵀ and b'_l·a'_lᵀ). The assignment maximising the summed similarity is found with the Hungarian method;
 *   a matched unit whose activation cosine is negative (and similarity positive) is sign-flipped, which leaves the
 *   neighbour's ΔW unchanged.
 * Then the aligned adapters are mixed factor by factor with weights from the neighbour graph:
 *   mixing 'metropolis-hastings' (default): w_j = 1 / (1 + max(d_self, d_j)) for each neighbour j, and
 *     w_self = 1 − Σ w_j, with d_self = max(ctx.selfDegree, number of neighbours) and d_j from ctx.neighbourDegrees
 *     (a neighbour whose degree is unknown counts as d_self). Input weights are not used.
 *   mixing 'weights': the normalised input weights.
 * A neighbour with zero mixing weight is not aligned at all.
 */
export const dimat: MergeStrategy = {
  name: 'dimat',
  description: "align neighbours' rank units to ours (Hungarian on unit similarity), then mix with graph weights",
  reference: 'https://arxiv.org/abs/2404.13171',
  params: [
    {
      name: 'mixing',
      type: 'string',
      default: 'metropolis-hastings',
      choices: ['metropolis-hastings', 'weights'],
      description: 'Metropolis–Hastings weights from node degrees, or the given input weights',
    },
  ],
  selfSpecial: true,
  output: 'factors',
  merge(inputs, params, ctx) {
    const inputWeights = validateInputs(inputs);
    const mixing = params.mixing === 'weights' ? Array.from(inputWeights) : metropolisHastingsWeights(inputs, ctx);
    const template = inputs[0].adapter;
    const r = template.config.r;
    const modules = new Map<string, LoraPair>();
    for (const name of moduleNames(template)) {
      const self = template.modules.get(name)!;
      const calibration = ctx.calibration?.get(name);
      if (calibration && calibration.data.length !== calibration.rows * self.inDim) {
        throw new MergeInputError(`calibration for ${name}: ${calibration.data.length} values, expected rows*in = ${calibration.rows}*${self.inDim}`);
      }
      const selfUnits = unitFeatures(self, r, calibration);
      const a = new Float64Array(self.a.length);
      const b = new Float64Array(self.b.length);
      inputs.forEach((input, i) => {
        const w = mixing[i];
        if (w === 0) return;
        const pair = input.adapter.modules.get(name)!;
        const { permutation, signs } = i === 0 ? identityAlignment(r) : alignToUnits(selfUnits, unitFeatures(pair, r, calibration), r);
        for (let k = 0; k < r; k++) {
          const src = permutation[k];
          const f = w * signs[k];
          for (let j = 0; j < self.inDim; j++) a[k * self.inDim + j] += f * pair.a[src * self.inDim + j];
          for (let o = 0; o < self.outDim; o++) b[o * r + k] += f * pair.b[o * r + src];
        }
      });
      modules.set(name, { a: Float32Array.from(a), b: Float32Array.from(b), inDim: self.inDim, outDim: self.outDim });
    }
    return adapterLike(template, modules);
  },
};

export function metropolisHastingsWeights(inputs: readonly MergeInput[], ctx: MergeContext): number[] {
  const neighbours = inputs.length - 1;
  const selfDegree = Math.max(ctx.selfDegree ?? 0, neighbours);
  const weights = new Array<number>(inputs.length).fill(0);
  let others = 0;
  for (let i = 1; i < inputs.length; i++) {
    const d = ctx.neighbourDegrees?.get(inputs[i].meta.peerId) ?? selfDegree;
    if (!Number.isFinite(d) || d < 0) throw new MergeInputError(`neighbour degree of ${inputs[i].meta.peerId} must be a finite number >= 0, got ${d}`);
    weights[i] = 1 / (1 + Math.max(selfDegree, d));
    others += weights[i];
  }
  weights[0] = 1 - others;
  return weights;
}

/** Normalised activation and B-column vectors of each rank unit, unit k in row k (row-major r × length). */
interface UnitFeatures {
  activations: Float64Array;
  activationLength: number;
  outputs: Float64Array;
  outputLength: number;
}

function unitFeatures(pair: LoraPair, r: number, calibration: CalibrationBatch | undefined): UnitFeatures {
  const activationLength = calibration ? calibration.rows : pair.inDim;
  const activations = new Float64Array(r * activationLength);
  const outputs = new Float64Array(r * pair.outDim);
  for (let k = 0; k < r; k++) {
    const row = pair.a.subarray(k * pair.inDim, (k + 1) * pair.inDim);
    const h = activations.subarray(k * activationLength, (k + 1) * activationLength);
    if (calibration) {
      for (let t = 0; t < calibration.rows; t++) {
        let s = 0;
        const off = t * pair.inDim;
        for (let j = 0; j < pair.inDim; j++) s += calibration.data[off + j] * row[j];
        h[t] = s;
      }
    } else {
      h.set(row);
    }
    const col = outputs.subarray(k * pair.outDim, (k + 1) * pair.outDim);
    for (let o = 0; o < pair.outDim; o++) col[o] = pair.b[o * r + k];
    normalise(h);
    normalise(col);
  }
  return { activations, activationLength, outputs, outputLength: pair.outDim };
}

function normalise(x: Float64Array): Float64Array {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * x[i];
  const norm = Math.sqrt(s);
  if (norm > 0) for (let i = 0; i < x.length; i++) x[i] /= norm;
  return x;
}

function identityAlignment(r: number): { permutation: Int32Array; signs: Float64Array } {
  return { permutation: Int32Array.from({ length: r }, (_, k) => k), signs: new Float64Array(r).fill(1) };
}

/**
 * permutation[k] = the neighbour unit matched to our unit k; signs[k] = ±1 flips it. Exported for tests.
 */
export function alignToUnits(ours: UnitFeatures, theirs: UnitFeatures, r: number): { permutation: Int32Array; signs: Float64Array } {
  // All r² cosines of both kinds at once, as register-tiled products of the unit rows.
  const activationCos = new Float64Array(r * r);
  const outputCos = new Float64Array(r * r);
  rowsDotRows(ours.activations, r, theirs.activations, r, ours.activationLength, activationCos);
  rowsDotRows(ours.outputs, r, theirs.outputs, r, ours.outputLength, outputCos);
  const cost = new Float64Array(r * r);
  for (let kl = 0; kl < r * r; kl++) cost[kl] = -activationCos[kl] * outputCos[kl];
  const permutation = hungarian(cost, r);
  const signs = new Float64Array(r);
  for (let k = 0; k < r; k++) {
    const l = permutation[k];
    signs[k] = cost[k * r + l] < 0 && activationCos[k * r + l] < 0 ? -1 : 1;
  }
  return { permutation, signs };
}

/** The alignment DIMAT would apply to `pair`'s units against `self`'s (for tests and diagnostics). */
export function alignUnits(self: LoraPair, pair: LoraPair, r: number, calibration?: CalibrationBatch) {
  return alignToUnits(unitFeatures(self, r, calibration), unitFeatures(pair, r, calibration), r);
}
