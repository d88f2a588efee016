/**
 * The update guard: what a peer does to every neighbour's adapter after core/wire accepted its bytes and before
 * any merge strategy sees it, and the bounds check on the merged result before it replaces the peer's own.
 *
 * Rule: centred clipping (Karimireddy, He & Jaggi 2021, "Learning from History for Byzantine Robust
 * Optimization", ICML, arXiv:2012.10333). The centre is the peer's own adapter x₀ (the one input it trusts), and
 * each neighbour's adapter xᵢ is replaced by
 *     x₀ + (xᵢ − x₀) · min(1, τ / ‖xᵢ − x₀‖)
 * with ‖·‖ the Euclidean norm over all factors (every A and B of every module, as one vector). A clipped input
 * keeps its direction but can move the merge by at most (its weight)·τ, whatever its size; an honest input
 * within τ is untouched. The paper proves that clipping around a good centre bounds a Byzantine fraction δ's
 * influence by O(δ·τ) per round, and that with τ of the order of the honest spread the honest average is kept.
 *
 * Threshold (default): τ = 2 × the median of the last 32 distances ‖xᵢ − x₀‖ of non-refused inputs, measured
 * before this round's inputs are added, so a round's attackers cannot raise their own bound. The median is the
 * honest spread's estimate because it is robust while fewer than half of the recent inputs are Byzantine (the
 * breakdown point of the median, the same assumption as the robust rules in core/merge); the factor 2 leaves the
 * honest half above the median mostly unclipped (an honest neighbour's distance rarely exceeds twice the median)
 * — the adaptive-clipping practice of setting the radius at a quantile of recent norms (Andrew et al. 2021,
 * "Differentially Private Learning with Adaptive Clipping"). Until 4 distances have been seen (the first
 * rounds), τ is an absolute bound instead: 2·‖x₀‖ (at least 1e-3), because two honest LoRA adapters of one run
 * differ by at most about their own size early on (independent A initialisations differ by √2·‖A‖).
 *
 * Refusals (not clipped: the values themselves are unusable or a sign of an attack): a non-finite value, a value
 * whose magnitude exceeds the absolute bound max(64, 100·max|x₀|) (LoRA factors of a trained adapter are O(1);
 * an fp16-maximum 65504 or a 1e30 is not a training result), or a schema that differs from x₀'s.
 *
 * The guard counts nothing itself: it returns accepted | clipped(scale) | refused(reason) per input, so that the
 * engine can count per neighbour. Pure typed-array code, float64 accumulation (1e30² does not overflow).
 */
import { moduleNames, schemaHash, type Adapter, type LoraPair } from '../model/adapter.ts';
import type { MergeInput } from '../merge/types.ts';
import type { AdamWState } from '../train/adamw.ts';

export const GUARD_TAU_MULTIPLIER = 2;
export const GUARD_HISTORY = 32;
export const GUARD_MIN_HISTORY = 4;
export const GUARD_WARMUP_SELF_NORM_FACTOR = 2;
export const GUARD_WARMUP_MIN_TAU = 1e-3;
export const GUARD_MAX_ABS_FLOOR = 64;
export const GUARD_MAX_ABS_SELF_FACTOR = 100;
/** A merged adapter whose norm exceeds this multiple of the peer's own (or of 1, if larger) is not taken. */
export const MERGED_MAX_NORM_RATIO = 4;

export type GuardRefusalReason = 'non-finite' | 'out-of-bounds' | 'schema-mismatch';

export type GuardOutcome =
  | { kind: 'accepted'; adapter: Adapter; distance: number }
  | { kind: 'clipped'; adapter: Adapter; distance: number; scale: number }
  | { kind: 'refused'; reason: GuardRefusalReason; detail: string };

export interface GuardOptions {
  multiplier?: number;
  historySize?: number;
  minHistory?: number;
  /** Fixed τ for every round (no adaptation); for tests and for runs that state τ in their manifest. */
  fixedTau?: number;
  /** Absolute bound on any value; default max(64, 100·max|self|). */
  maxAbs?: number;
}

export interface AdapterStats {
  norm: number;
  maxAbs: number;
  finite: boolean;
}

/** Norm over all factors, largest magnitude, and whether every value is finite (float64 sums). */
export function adapterStats(adapter: Adapter): AdapterStats {
  let sum = 0;
  let maxAbs = 0;
  let finite = true;
  for (const p of adapter.modules.values()) {
    for (const t of [p.a, p.b]) {
      for (let j = 0; j < t.length; j++) {
        const v = t[j];
        if (v - v !== 0) finite = false;
        const a = Math.abs(v);
        if (a > maxAbs) maxAbs = a;
        sum += v * v;
      }
    }
  }
  return { norm: Math.sqrt(sum), maxAbs, finite };
}

/** ‖x − self‖ over all factors as one vector (not ΔW: consensus.ts adapterDistance is that); both must share a schema. */
export function factorDistance(self: Adapter, x: Adapter): number {
  let sum = 0;
  for (const name of moduleNames(self)) {
    const s = self.modules.get(name)!, o = x.modules.get(name)!;
    for (const [u, v] of [[s.a, o.a], [s.b, o.b]] as const) {
      for (let j = 0; j < u.length; j++) {
        const d = v[j] - u[j];
        sum += d * d;
      }
    }
  }
  return Math.sqrt(sum);
}

/** self + scale·(x − self), a fresh adapter (inputs untouched). */
export function towards(self: Adapter, x: Adapter, scale: number): Adapter {
  const modules = new Map<string, LoraPair>();
  for (const name of moduleNames(self)) {
    const s = self.modules.get(name)!, o = x.modules.get(name)!;
    const mix = (u: Float32Array, v: Float32Array) => {
      const out = new Float32Array(u.length);
      for (let j = 0; j < u.length; j++) out[j] = u[j] + scale * (v[j] - u[j]);
      return out;
    };
    modules.set(name, { a: mix(s.a, o.a), b: mix(s.b, o.b), inDim: s.inDim, outDim: s.outDim });
  }
  return { baseModelId: x.baseModelId, config: { ...x.config, targetModules: [...x.config.targetModules] }, modules };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((p, q) => p - q);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function defaultMaxAbs(selfStats: AdapterStats): number {
  return Math.max(GUARD_MAX_ABS_FLOOR, GUARD_MAX_ABS_SELF_FACTOR * selfStats.maxAbs);
}

/** Centred clipping with an adaptive radius; one instance per peer, fed every round's neighbour inputs. */
export class UpdateGuard {
  private readonly multiplier: number;
  private readonly historySize: number;
  private readonly minHistory: number;
  private readonly fixedTau?: number;
  private readonly maxAbs?: number;
  private readonly distances: number[] = [];

  constructor(options: GuardOptions = {}) {
    this.multiplier = options.multiplier ?? GUARD_TAU_MULTIPLIER;
    this.historySize = options.historySize ?? GUARD_HISTORY;
    this.minHistory = options.minHistory ?? GUARD_MIN_HISTORY;
    this.fixedTau = options.fixedTau;
    this.maxAbs = options.maxAbs;
  }

  /** The recent distances the adaptive τ is computed from, oldest first. */
  get recentDistances(): readonly number[] {
    return this.distances;
  }

  /** The clipping radius for the next round, given the peer's own adapter. */
  tau(self: Adapter, selfStats: AdapterStats = adapterStats(self)): number {
    if (this.fixedTau !== undefined) return this.fixedTau;
    if (this.distances.length >= this.minHistory) return this.multiplier * median(this.distances);
    return Math.max(GUARD_WARMUP_MIN_TAU, GUARD_WARMUP_SELF_NORM_FACTOR * selfStats.norm);
  }

  /**
   * Guards one round of neighbour adapters against the peer's own: one outcome per input, in order. τ is fixed
   * for the round before any of its distances join the history.
   */
  guard(self: Adapter, inputs: readonly Adapter[]): GuardOutcome[] {
    const selfStats = adapterStats(self);
    const tau = this.tau(self, selfStats);
    const maxAbs = this.maxAbs ?? defaultMaxAbs(selfStats);
    const selfSchema = schemaHash(self);
    const outcomes = inputs.map((x) => guardOne(self, selfSchema, x, tau, maxAbs));
    for (const outcome of outcomes) {
      if (outcome.kind === 'refused') continue;
      this.distances.push(outcome.distance);
      if (this.distances.length > this.historySize) this.distances.shift();
    }
    return outcomes;
  }
}

function guardOne(self: Adapter, selfSchema: string, x: Adapter, tau: number, maxAbs: number): GuardOutcome {
  const hash = schemaHash(x);
  if (hash !== selfSchema) return { kind: 'refused', reason: 'schema-mismatch', detail: `adapter schema ${hash}, ours is ${selfSchema}` };
  const stats = adapterStats(x);
  if (!stats.finite) return { kind: 'refused', reason: 'non-finite', detail: 'the adapter holds NaN or Infinity' };
  if (stats.maxAbs > maxAbs) {
    return { kind: 'refused', reason: 'out-of-bounds', detail: `largest magnitude ${stats.maxAbs.toPrecision(4)} exceeds the bound ${maxAbs.toPrecision(4)}` };
  }
  const distance = factorDistance(self, x);
  if (distance <= tau) return { kind: 'accepted', adapter: x, distance };
  const scale = tau / distance;
  return { kind: 'clipped', adapter: towards(self, x, scale), distance, scale };
}

export interface MergedBounds {
  /** ‖merged‖ ≤ maxNormRatio · max(‖self‖, 1). Default MERGED_MAX_NORM_RATIO. */
  maxNormRatio?: number;
  /** Largest magnitude allowed; default max(64, 100·max|self|). */
  maxAbs?: number;
}

export type MergedVerdict = { ok: true } | { ok: false; reason: GuardRefusalReason; detail: string };

/**
 * Whether a merged adapter may replace the peer's own: same schema, every value finite, its norm within
 * maxNormRatio of the peer's own (at least of 1, so a near-zero adapter can still grow), and no value beyond
 * the absolute bound. A refusal says why; the peer then keeps its own adapter.
 */
export function checkMergedAdapter(self: Adapter, merged: Adapter, bounds: MergedBounds = {}): MergedVerdict {
  const selfSchema = schemaHash(self);
  const mergedSchema = schemaHash(merged);
  if (mergedSchema !== selfSchema) return { ok: false, reason: 'schema-mismatch', detail: `merged schema ${mergedSchema}, ours is ${selfSchema}` };
  const selfStats = adapterStats(self);
  const stats = adapterStats(merged);
  if (!stats.finite) return { ok: false, reason: 'non-finite', detail: 'the merged adapter holds NaN or Infinity' };
  const maxAbs = bounds.maxAbs ?? defaultMaxAbs(selfStats);
  if (stats.maxAbs > maxAbs) {
    return { ok: false, reason: 'out-of-bounds', detail: `merged largest magnitude ${stats.maxAbs.toPrecision(4)} exceeds ${maxAbs.toPrecision(4)}` };
  }
  const ratio = bounds.maxNormRatio ?? MERGED_MAX_NORM_RATIO;
  const maxNorm = ratio * Math.max(selfStats.norm, 1);
  if (stats.norm > maxNorm) {
    return { ok: false, reason: 'out-of-bounds', detail: `merged norm ${stats.norm.toPrecision(4)} exceeds ${ratio} × max(own norm ${selfStats.norm.toPrecision(4)}, 1)` };
  }
  return { ok: true };
}

/**
 * The absolute bound for what a peer stores or starts from without a reference of its own (a checkpoint, a late
 * joiner's offer): every value finite and within STORED_MAX_ABS. Trained LoRA factors are O(1); 1e4 leaves room
 * for any honest run and refuses the 1e30 and fp16-maximum 65504 poison values.
 */
export const STORED_MAX_ABS = 1e4;

/** Why this adapter may not be stored or adopted, in words, or null. */
export function storedAdapterProblem(adapter: Adapter): string | null {
  const stats = adapterStats(adapter);
  if (!stats.finite) return 'the adapter holds NaN or Infinity';
  if (stats.maxAbs > STORED_MAX_ABS) return `its largest magnitude ${stats.maxAbs.toPrecision(4)} exceeds ${STORED_MAX_ABS}`;
  return null;
}

/** Why these optimiser moments may not be stored, or null when every value is finite. */
export function momentsProblem(state: AdamWState): string | null {
  for (const [name, { m, v }] of Object.entries(state.moments)) {
    for (let i = 0; i < m.length; i++) if (!Number.isFinite(m[i]) || !Number.isFinite(v[i])) return `optimiser moment ${name}[${i}] is not finite`;
  }
  return null;
}

export type GuardEvent = { kind: 'clipped'; peerId: string; scale: number; detail: string } | { kind: 'refused'; peerId: string; detail: string };

/**
 * The guard as the engine uses it: screen() runs one merge round's inputs (inputs[0] is the peer itself and always
 * stays) through the update guard, keeping, clipping or dropping each neighbour; checkResult() says why a merge
 * result may not replace the peer's own adapter, or null when it may.
 */
export class MergeGuard {
  constructor(private readonly update = new UpdateGuard()) {}

  screen(self: Adapter, inputs: MergeInput[]): { inputs: MergeInput[]; events: GuardEvent[] } {
    const events: GuardEvent[] = [];
    const outcomes = this.update.guard(self, inputs.slice(1).map((i) => i.adapter));
    const kept: MergeInput[] = [inputs[0]];
    outcomes.forEach((outcome, k) => {
      const input = inputs[k + 1];
      const peerId = input.meta.peerId;
      if (outcome.kind === 'refused') events.push({ kind: 'refused', peerId, detail: `${outcome.reason}: ${outcome.detail}` });
      else {
        if (outcome.kind === 'clipped') events.push({ kind: 'clipped', peerId, scale: outcome.scale, detail: `distance ${outcome.distance.toPrecision(3)} clipped by ${outcome.scale.toPrecision(3)}` });
        kept.push({ ...input, adapter: outcome.adapter });
      }
    });
    return { inputs: kept, events };
  }

  checkResult(self: Adapter, merged: Adapter): string | null {
    const verdict = checkMergedAdapter(self, merged);
    return verdict.ok ? null : `${verdict.reason}: ${verdict.detail}`;
  }
}
