import { buildAdapter, tensorOf, tensorRefs, validateInputs, weightedSumInto } from '../common.ts';
import { SELF_INDEX, type MergeInput, type MergeStrategy } from '../types.ts';

/**
 * multi-krum: Multi-Krum (Blanchard et al. 2017, "Machine Learning with Adversaries: Byzantine Tolerant Gradient
 * Descent"). Each input i gets the score Σ of its squared Euclidean distances (over all factors, flattened) to its
 * n − f − 2 nearest other inputs (clamped to [1, n − 1]); the `keep` inputs with the lowest scores (default n − f;
 * keep = 1 is Krum) are averaged with their weights renormalised (plainly if those weights are all zero).
 * Equal scores are ordered by peer id, then by the inputs' content, never by position.
 *
 * Decentralised twist (`anchor`, default 'self'): the merging peer knows its own adapter (input 0) is honest, so it
 * always joins the kept set, and when n < 2f + 3, where the paper's guarantee does not hold and distances cannot
 * single out f attackers (with n = 2 both scores are equal), the result is the peer's own adapter alone. Without
 * this, a peer whose only fresh neighbour is the attacker adopts it half the time. `anchor: 'none'` is the paper's
 * rule over all inputs, blind to which one is self.
 */
export const multiKrum: MergeStrategy = {
  name: 'multi-krum',
  description: 'average the inputs closest to their nearest neighbours, excluding up to f outliers',
  reference: 'https://papers.nips.cc/paper/6617-machine-learning-with-adversaries-byzantine-tolerant-gradient-descent',
  params: [
    { name: 'f', type: 'number', default: 1, min: 0, integer: true, description: 'number of Byzantine inputs tolerated' },
    { name: 'keep', type: 'number', default: 0, min: 0, integer: true, description: 'inputs averaged (0: n - f; 1: Krum)' },
    { name: 'anchor', type: 'string', default: 'self', choices: ['self', 'none'], description: "'self': own adapter always kept, alone when n < 2f + 3; 'none': the paper's rule" },
  ],
  selfSpecial: true,
  output: 'factors',
  merge(inputs, params) {
    const weights = validateInputs(inputs);
    const n = inputs.length;
    const f = params.f as number;
    const keep = (params.keep as number) || n - f;
    const selected = params.anchor === 'self' ? anchoredSelection(inputs, f, keep) : krumSelection(inputs, f, keep);
    let total = 0;
    for (const i of selected) total += weights[i];
    const w = selected.map((i) => (total > 0 ? weights[i] / total : 1 / selected.length));
    return buildAdapter(inputs[0].adapter, (ref, like) => {
      const out = new Float32Array(like.length);
      weightedSumInto(out, selected.map((i) => tensorOf(inputs[i].adapter, ref)), w);
      return out;
    });
  },
};

/** Multi-Krum's selection with the merging peer (input 0) trusted: see the strategy's doc. */
export function anchoredSelection(inputs: readonly MergeInput[], f: number, keep: number): number[] {
  if (inputs.length < 2 * f + 3) return [SELF_INDEX];
  const selected = krumSelection(inputs, f, keep);
  return selected.includes(SELF_INDEX) ? selected : [SELF_INDEX, ...selected];
}

/** Indices of the inputs Multi-Krum keeps, best score first. */
export function krumSelection(inputs: readonly MergeInput[], f: number, keep: number): number[] {
  const n = inputs.length;
  const distances = pairwiseSquaredDistances(inputs);
  const neighbours = Math.min(n - 1, Math.max(1, n - f - 2));
  const scores = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const row: number[] = [];
    for (let j = 0; j < n; j++) if (j !== i) row.push(distances[i * n + j]);
    row.sort((x, y) => x - y);
    let s = 0;
    for (let t = 0; t < neighbours && t < row.length; t++) s += row[t];
    scores[i] = s;
  }
  const order = Array.from({ length: n }, (_, i) => i).sort(
    (x, y) =>
      scores[x] - scores[y] ||
      (inputs[x].meta.peerId < inputs[y].meta.peerId ? -1 : inputs[x].meta.peerId > inputs[y].meta.peerId ? 1 : 0) ||
      compareContent(inputs[x], inputs[y]),
  );
  return order.slice(0, Math.max(1, Math.min(n, keep)));
}

export function pairwiseSquaredDistances(inputs: readonly MergeInput[]): Float64Array {
  const n = inputs.length;
  const d = new Float64Array(n * n);
  for (const ref of tensorRefs(inputs[0].adapter)) {
    const tensors = inputs.map((input) => tensorOf(input.adapter, ref));
    for (let i = 0; i < n; i++) {
      const x = tensors[i];
      for (let j = i + 1; j < n; j++) {
        const y = tensors[j];
        let s = 0;
        for (let k = 0; k < x.length; k++) {
          const diff = x[k] - y[k];
          s += diff * diff;
        }
        d[i * n + j] += s;
        d[j * n + i] += s;
      }
    }
  }
  return d;
}

function compareContent(x: MergeInput, y: MergeInput): number {
  for (const ref of tensorRefs(x.adapter)) {
    const a = tensorOf(x.adapter, ref), b = tensorOf(y.adapter, ref);
    for (let k = 0; k < a.length; k++) if (a[k] !== b[k]) return a[k] - b[k];
  }
  return x.weight - y.weight;
}
