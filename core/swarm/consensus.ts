/**
 * Consensus distance: how far apart peers' adapters are, as the Frobenius distance between their full updates
 * ΔW = (alpha/r)·B·A summed over modules. Computed from the factors through r×r Gram products, so it costs
 * O((in + out)·r²) per module instead of forming the [out, in] matrices:
 *   ‖ΔW₁ − ΔW₂‖² = ‖ΔW₁‖² + ‖ΔW₂‖² − 2⟨ΔW₁, ΔW₂⟩,   ⟨B₁A₁, B₂A₂⟩ = tr((B₁ᵀB₂)(A₂A₁ᵀ)).
 */
import type { Adapter, LoraPair } from '../model/adapter.ts';

export class AdapterDistanceError extends Error {
  static override readonly name = 'AdapterDistanceError';
  override readonly name = AdapterDistanceError.name;
}

/** ⟨s₁B₁A₁, s₂B₂A₂⟩ in float64. */
function innerProduct(p: LoraPair, r1: number, s1: number, q: LoraPair, r2: number, s2: number): number {
  // M = B₁ᵀB₂ [r1, r2]; N = A₂A₁ᵀ [r2, r1]; the trace of M·N.
  const m = new Float64Array(r1 * r2);
  for (let o = 0; o < p.outDim; o++) {
    for (let i = 0; i < r1; i++) {
      const bi = p.b[o * r1 + i];
      if (bi === 0) continue;
      for (let j = 0; j < r2; j++) m[i * r2 + j] += bi * q.b[o * r2 + j];
    }
  }
  let trace = 0;
  for (let j = 0; j < r2; j++) {
    for (let i = 0; i < r1; i++) {
      let n = 0;
      for (let k = 0; k < p.inDim; k++) n += q.a[j * p.inDim + k] * p.a[i * p.inDim + k];
      trace += m[i * r2 + j] * n;
    }
  }
  return s1 * s2 * trace;
}

/** ‖ΔW_x − ΔW_y‖_F over all modules. Both adapters must have the same modules and dimensions (ranks may differ). */
export function adapterDistance(x: Adapter, y: Adapter): number {
  if (x.modules.size !== y.modules.size) throw new AdapterDistanceError(`adapters have ${x.modules.size} and ${y.modules.size} modules`);
  const rx = x.config.r;
  const ry = y.config.r;
  const sx = x.config.alpha / rx;
  const sy = y.config.alpha / ry;
  let squared = 0;
  for (const [name, p] of x.modules) {
    const q = y.modules.get(name);
    if (!q) throw new AdapterDistanceError(`module ${name} is missing from the second adapter`);
    if (q.inDim !== p.inDim || q.outDim !== p.outDim) throw new AdapterDistanceError(`module ${name} is [${p.outDim}, ${p.inDim}] and [${q.outDim}, ${q.inDim}]`);
    const xx = innerProduct(p, rx, sx, p, rx, sx);
    const yy = innerProduct(q, ry, sy, q, ry, sy);
    const xy = innerProduct(p, rx, sx, q, ry, sy);
    // Rounding can push a near-zero difference slightly below zero.
    squared += Math.max(0, xx + yy - 2 * xy);
  }
  return Math.sqrt(squared);
}

/** Mean distance from one adapter to each of the others; null without others. */
export function meanAdapterDistance(self: Adapter, others: Adapter[]): number | null {
  if (others.length === 0) return null;
  let sum = 0;
  for (const other of others) sum += adapterDistance(self, other);
  return sum / others.length;
}
