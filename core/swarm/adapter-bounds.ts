/**
 * The absolute bounds an adapter must hold to be trained on, merged, checkpointed or adopted: every value finite
 * and no larger in magnitude than MAX_ADAPTER_ABS. LoRA factors of a working adapter are O(1) (the default run's
 * stay below 1); 1e4 leaves room for any honest run while refusing the 1e30 and 65504 (fp16 max) poison values.
 */
import type { Adapter } from '../model/adapter.ts';
import type { AdamWState } from '../train/adamw.ts';

export const MAX_ADAPTER_ABS = 1e4;

/** Why this adapter cannot be used, in words, or null when every value is finite and within bounds. */
export function adapterProblem(adapter: Adapter, maxAbs = MAX_ADAPTER_ABS): string | null {
  for (const [name, pair] of adapter.modules) {
    for (const [kind, values] of [['A', pair.a], ['B', pair.b]] as const) {
      for (let i = 0; i < values.length; i++) {
        const v = values[i];
        if (!Number.isFinite(v)) return `${name} ${kind}[${i}] is ${v}`;
        if (Math.abs(v) > maxAbs) return `${name} ${kind}[${i}] = ${v.toExponential(2)} is beyond the bound ${maxAbs}`;
      }
    }
  }
  return null;
}

/** Why these optimiser moments cannot be checkpointed, or null when they are all finite. */
export function momentsProblem(state: AdamWState): string | null {
  for (const [name, { m, v }] of Object.entries(state.moments)) {
    for (let i = 0; i < m.length; i++) if (!Number.isFinite(m[i]) || !Number.isFinite(v[i])) return `optimiser moment ${name}[${i}] is not finite`;
  }
  return null;
}
