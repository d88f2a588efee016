/**
 * Overflow-safe evaluation of a strategy. Legal wire values reach 3.4e38 (an int8 tensor at the largest scale
 * the codec accepts) and fp16's 65504, and some strategies square, subtract or rescale them in float32
 * (task vectors x − self, DARE's 1/density, products B·A, variances), which overflows to ±Infinity or NaN.
 *
 * Every registered strategy is homogeneous of degree one in its inputs: scaling every input factor by s scales
 * every output factor by s (weighted means, medians, magnitude trims, sign elections, Hungarian alignment and
 * balanced refactorisations of B·A all commute with a common scale). So when a merge gives a non-finite value
 * (or throws outside the named input errors) and the inputs are large, it is run again on the inputs scaled by
 * a power of two that brings the largest magnitude to SAFE_MAGNITUDE (exact, apart from values that fall below
 * float32's normal range), and the result is scaled back, saturating at ±FLOAT32_MAX. The usual merge pays only
 * one scan of its output. A saturated result is still finite; the engine's bounds check on the merged adapter
 * (core/swarm/guard.ts) decides whether it may replace the peer's own.
 */
import type { Adapter } from '../model/adapter.ts';
import { buildAdapter, tensorOf, tensorRefs } from './common.ts';
import { MergeInputError, MergeParamError, SchemaMismatchError } from './errors.ts';
import type { MergeInput, MergeStrategy } from './types.ts';

export const FLOAT32_MAX = 3.4028234663852886e38;
/** 2^32: squares (2^64), sums of squares over millions of entries and (α/r)·B·A all stay far below FLOAT32_MAX. */
export const SAFE_MAGNITUDE = 2 ** 32;

export function isFiniteAdapter(adapter: Adapter): boolean {
  for (const p of adapter.modules.values()) {
    for (const t of [p.a, p.b]) {
      for (let j = 0; j < t.length; j++) {
        const v = t[j];
        if (v - v !== 0) return false;
      }
    }
  }
  return true;
}

function largestMagnitude(inputs: readonly MergeInput[]): number {
  let peak = 0;
  for (const input of inputs) {
    for (const ref of tensorRefs(input.adapter)) {
      const t = tensorOf(input.adapter, ref);
      for (let j = 0; j < t.length; j++) {
        const a = Math.abs(t[j]);
        if (a > peak) peak = a;
      }
    }
  }
  return peak;
}

function scaled(adapter: Adapter, factor: number, saturate: boolean): Adapter {
  return buildAdapter(adapter, (ref) => {
    const t = tensorOf(adapter, ref);
    const out = new Float32Array(t.length);
    for (let j = 0; j < t.length; j++) {
      const v = t[j] * factor;
      out[j] = saturate ? Math.max(-FLOAT32_MAX, Math.min(FLOAT32_MAX, v)) : v;
    }
    return out;
  });
}

function isInputError(error: unknown): boolean {
  return error instanceof MergeInputError || error instanceof SchemaMismatchError || error instanceof MergeParamError;
}

/** The strategy with the retry described above; name, params and everything else unchanged. */
export function overflowSafe(strategy: MergeStrategy): MergeStrategy {
  return {
    ...strategy,
    merge(inputs, params, ctx) {
      let first: Adapter | undefined;
      let failure: unknown;
      try {
        first = strategy.merge(inputs, params, ctx);
        if (isFiniteAdapter(first)) return first;
      } catch (error) {
        if (isInputError(error)) throw error;
        failure = error;
      }
      const peak = largestMagnitude(inputs);
      if (!(peak > SAFE_MAGNITUDE)) {
        if (failure !== undefined) throw failure;
        return first!;
      }
      const exponent = Math.ceil(Math.log2(peak / SAFE_MAGNITUDE));
      const down = 2 ** -exponent;
      const smaller = inputs.map((input) => ({ ...input, adapter: scaled(input.adapter, down, false) }));
      const merged = strategy.merge(smaller, params, ctx);
      return scaled(merged, 2 ** exponent, true);
    },
  };
}
