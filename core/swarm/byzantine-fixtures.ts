// Small adapters whose Byzantine corruptions can be checked by hand (core/swarm/byzantine.ts, app/lib/faults.ts tests).
import type { Adapter } from '../model/adapter.ts';

/** A two-module adapter with r = 2 whose values are easy to check by hand. */
export function handAdapter(): Adapter {
  const pair = (offset: number) => ({
    a: Float32Array.from([1, 2, 3, 4, 5, 6].map((v) => v + offset)), // [r=2, in=3]
    b: Float32Array.from([0.5, -1, 2, 0.25].map((v) => v * (offset + 1))), // [out=2, r=2]
    inDim: 3,
    outDim: 2,
  });
  return {
    baseModelId: 'hand',
    config: { r: 2, alpha: 4, targetModules: ['attn.c_attn'] },
    modules: new Map([
      ['transformer.h.0.attn.c_attn', pair(0)],
      ['transformer.h.1.attn.c_attn', pair(1)],
    ]),
  };
}

/** B·A for a [2,2]·[2,3] pair, written out. */
export function product(b: Float32Array, a: Float32Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < 2; i++) for (let j = 0; j < 3; j++) out.push(b[i * 2] * a[j] + b[i * 2 + 1] * a[3 + j]);
  return out;
}
