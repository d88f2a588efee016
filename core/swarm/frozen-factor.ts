/**
 * A run with a frozen LoRA A (lora.mode 'frozen-a', FFA-LoRA): every peer's A is the run's seeded initialisation
 * and never trains, so the only thing peers exchange that can change is B, and averaging B is averaging the
 * products exactly. This file keeps that true against everything that reaches the peer's adapter from outside its
 * own optimiser: a neighbour's adapter must carry the run's A (bit for bit, exactly or as the run's payload codec
 * carries it), or it is refused; and a merge result is put back onto the run's A before it replaces the peer's
 * own, whatever the strategy did to the A factors.
 */
import { moduleNames, type Adapter, type LoraPair } from '../model/adapter.ts';
import { symmetricEigen } from '../merge/linalg.ts';
import { decodeAdapter, encodeAdapter, type PayloadCodec } from '../wire/codec.ts';

function sameBits(x: Float32Array, y: Float32Array): boolean {
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (!Object.is(x[i], y[i])) return false;
  return true;
}

export class FrozenFactor {
  /** The run's A per module, exactly, and as the run's codec delivers it (what a neighbour's payload decodes to). */
  private readonly exact = new Map<string, Float32Array>();
  private readonly onWire = new Map<string, Float32Array>();

  /** `run`: any adapter of the run that holds the run's A (the model right after attachLora). */
  constructor(run: Adapter, codec: PayloadCodec) {
    for (const name of moduleNames(run)) this.exact.set(name, run.modules.get(name)!.a.slice());
    const decoded = decodeAdapter(encodeAdapter(run, codec));
    if (!decoded.ok) throw new Error(`the run's own adapter does not survive its codec: ${decoded.detail}`);
    for (const name of moduleNames(run)) this.onWire.set(name, decoded.adapter.modules.get(name)!.a);
  }

  /** Why this adapter's A is not the run's, in words, or null. */
  problem(adapter: Adapter): string | null {
    for (const [name, a] of this.exact) {
      const got = adapter.modules.get(name);
      if (!got) return `module ${name} is missing`;
      if (!sameBits(got.a, a) && !sameBits(got.a, this.onWire.get(name)!)) return `lora_A of ${name} is not the run's frozen A`;
    }
    return null;
  }

  /** The same adapter with the run's exact A (for one whose A passed problem(): the codec's rounding undone). */
  withRunA(adapter: Adapter): Adapter {
    const modules = new Map<string, LoraPair>();
    for (const name of moduleNames(adapter)) {
      const p = adapter.modules.get(name)!;
      modules.set(name, { ...p, a: this.exact.get(name)!.slice() });
    }
    return { ...adapter, modules };
  }

  /**
   * The adapter on the run's A whose products come closest to the given one's: per module, B' = argmin over X of
   * ‖X·A_run − B·A‖, which is B·(A·A_runᵀ)·(A_run·A_runᵀ)⁻¹. A pair already on the run's A is kept as it is
   * (bit for bit); factor-wise strategies on inputs that share A only round it, product strategies re-factorise it.
   */
  project(adapter: Adapter): Adapter {
    const modules = new Map<string, LoraPair>();
    for (const name of moduleNames(adapter)) {
      const p = adapter.modules.get(name)!;
      const runA = this.exact.get(name)!;
      modules.set(name, sameBits(p.a, runA) ? { ...p, a: runA.slice(), b: p.b.slice() } : { ...p, a: runA.slice(), b: projectB(p, runA, adapter.config.r) });
    }
    return { ...adapter, modules };
  }
}

/** B·(A·A_runᵀ)·(A_run·A_runᵀ)⁺ for one pair (float64 inside; the pseudo-inverse drops directions below 1e-12 of the largest). */
function projectB(p: LoraPair, runA: Float32Array, r: number): Float32Array {
  const inDim = p.inDim;
  const cross = new Float64Array(r * r);
  const gram = new Float64Array(r * r);
  for (let i = 0; i < r; i++) {
    for (let k = 0; k < r; k++) {
      let c = 0;
      let g = 0;
      for (let t = 0; t < inDim; t++) {
        c += p.a[i * inDim + t] * runA[k * inDim + t];
        g += runA[i * inDim + t] * runA[k * inDim + t];
      }
      cross[i * r + k] = c;
      gram[i * r + k] = g;
    }
  }
  const { values, vectors } = symmetricEigen(gram, r);
  const floor = Math.max(...values) * 1e-12;
  const inverse = new Float64Array(r * r);
  for (let e = 0; e < r; e++) {
    if (!(values[e] > floor)) continue;
    for (let i = 0; i < r; i++) for (let k = 0; k < r; k++) inverse[i * r + k] += (vectors[i * r + e] * vectors[k * r + e]) / values[e];
  }
  const m = new Float64Array(r * r);
  for (let i = 0; i < r; i++) for (let k = 0; k < r; k++) {
    let s = 0;
    for (let j = 0; j < r; j++) s += cross[i * r + j] * inverse[j * r + k];
    m[i * r + k] = s;
  }
  const out = new Float32Array(p.outDim * r);
  for (let o = 0; o < p.outDim; o++) for (let k = 0; k < r; k++) {
    let s = 0;
    for (let i = 0; i < r; i++) s += p.b[o * r + i] * m[i * r + k];
    out[o * r + k] = s;
  }
  return out;
}
