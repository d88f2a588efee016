import { describe, expect, it } from 'vitest';
import type { Adapter } from '../model/adapter.ts';
import { mergeWith } from '../merge/registry.ts';
import { asInput, naiveProduct } from '../merge/testing.ts';
import { decodeAdapter, encodeAdapter } from '../wire/codec.ts';
import { FrozenFactor } from './frozen-factor.ts';

const MODULE = 'transformer.h.0.attn.c_attn';

/** Rank 1, inDim 2, outDim 1 (alpha = r, so ΔW = B·A): small enough to multiply out by hand. */
function adapter(a: number[], b: number[]): Adapter {
  return {
    baseModelId: 'm',
    config: { r: 1, alpha: 1, targetModules: ['attn.c_attn'] },
    modules: new Map([[MODULE, { a: Float32Array.from(a), b: Float32Array.from(b), inDim: 2, outDim: 1 }]]),
  };
}

describe('frozen A (FFA-LoRA)', () => {
  it('with a shared frozen A the mean of the products B_i·A equals the product of the means; with trained A it does not', () => {
    // Shared A = [1, 2], B₁ = 3, B₂ = 5: products [3, 6] and [5, 10], their mean [4, 8];
    // fedavg gives B̄ = 4, Ā = [1, 2], product [4, 8]: the same.
    const shared = mergeWith('fedavg', [asInput(adapter([1, 2], [3]), 'p1'), asInput(adapter([1, 2], [5]), 'p2')]);
    expect(Array.from(naiveProduct(shared, MODULE))).toEqual([4, 8]);
    // Trained A: A₁ = [1, 2], A₂ = [3, 0]: products [3, 6] and [15, 0], their mean [9, 3];
    // fedavg gives B̄ = 4, Ā = [2, 1], product [8, 4]: the cross terms B₁A₂ and B₂A₁ enter.
    const trained = mergeWith('fedavg', [asInput(adapter([1, 2], [3]), 'p1'), asInput(adapter([3, 0], [5]), 'p2')]);
    expect(Array.from(naiveProduct(trained, MODULE))).toEqual([8, 4]);
    expect(Array.from(naiveProduct(trained, MODULE))).not.toEqual([9, 3]);
  });

  it("refuses an adapter whose A is not the run's, accepts it exactly or as the run's codec carries it", () => {
    const run = adapter([0.1, 0.3], [0]);
    const frozen = new FrozenFactor(run, 'fp16');
    expect(frozen.problem(adapter([0.1, 0.3], [7]))).toBeNull();
    // fp16 rounds 0.1 and 0.3; that rounding is what every honest peer's payload carries.
    const wire = decodeAdapter(encodeAdapter(adapter([0.1, 0.3], [7]), 'fp16'));
    if (!wire.ok) throw new Error(wire.detail);
    expect(wire.adapter.modules.get(MODULE)!.a[0]).not.toBe(Math.fround(0.1));
    expect(frozen.problem(wire.adapter)).toBeNull();
    // ... and is undone before the adapter is used: the run's exact A, B as sent.
    const restored = frozen.withRunA(wire.adapter).modules.get(MODULE)!;
    expect(Array.from(restored.a)).toEqual([Math.fround(0.1), Math.fround(0.3)]);
    expect(restored.b[0]).toBe(7);
    // Any other A, by however little, is refused.
    expect(frozen.problem(adapter([0.1, 0.30001], [7]))).toMatch(/lora_A of transformer\.h\.0\.attn\.c_attn is not the run's frozen A/);
    expect(frozen.problem(adapter([1, 3], [7]))).not.toBeNull();
  });

  it("puts a re-factorised merge result back onto the run's A with the same product", () => {
    const frozen = new FrozenFactor(adapter([1, 2], [0]), 'fp32');
    // ΔW = 3·[1, 2] = [3, 6], factorised as A' = [2, 4], B' = 1.5 (a product strategy may return any factorisation).
    // B'·(A'·Aᵀ)·(A·Aᵀ)⁻¹ = 1.5 · 10 / 5 = 3: back on A = [1, 2] with B = 3.
    const projected = frozen.project(adapter([2, 4], [1.5])).modules.get(MODULE)!;
    expect(Array.from(projected.a)).toEqual([1, 2]);
    expect(projected.b[0]).toBeCloseTo(3, 6);
    // A result already on the run's A is kept bit for bit.
    const kept = frozen.project(adapter([1, 2], [0.123])).modules.get(MODULE)!;
    expect(kept.b[0]).toBe(Math.fround(0.123));
  });
});
