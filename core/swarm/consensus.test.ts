import { describe, expect, it } from 'vitest';
import { adapterDistance, AdapterDistanceError, meanAdapterDistance } from './consensus.ts';
import { naiveProduct, randomAdapter, SMALL_MODULES } from '../merge/testing.ts';
import { cloneAdapter } from '../model/adapter.ts';

/** Dense reference: form both ΔW matrices and take the Frobenius norm of the difference. */
function denseDistance(x: ReturnType<typeof randomAdapter>, y: ReturnType<typeof randomAdapter>): number {
  let sq = 0;
  for (const m of SMALL_MODULES) {
    const dx = naiveProduct(x, m.name);
    const dy = naiveProduct(y, m.name);
    for (let i = 0; i < dx.length; i++) sq += (dx[i] - dy[i]) ** 2;
  }
  return Math.sqrt(sq);
}

describe('consensus distance', () => {
  it('equals the dense Frobenius distance of the ΔW matrices, also across ranks', () => {
    const x = randomAdapter(1);
    const y = randomAdapter(2);
    const z = randomAdapter(3, { r: 5, alpha: 4 });
    expect(adapterDistance(x, y)).toBeCloseTo(denseDistance(x, y), 9);
    expect(adapterDistance(x, z)).toBeCloseTo(denseDistance(x, z), 9);
    expect(adapterDistance(x, y)).toBeCloseTo(adapterDistance(y, x), 12);
  });

  it('is zero for the same update written with different factors', () => {
    const x = randomAdapter(4);
    const y = cloneAdapter(x);
    // B·A is unchanged when A is scaled by 2 and B by 1/2.
    for (const p of y.modules.values()) {
      p.a.forEach((v, i) => (p.a[i] = v * 2));
      p.b.forEach((v, i) => (p.b[i] = v / 2));
    }
    expect(adapterDistance(x, y)).toBeLessThan(1e-5);
  });

  it('averages over the others, and refuses adapters of another shape', () => {
    const x = randomAdapter(5);
    const others = [randomAdapter(6), randomAdapter(7)];
    expect(meanAdapterDistance(x, others)).toBeCloseTo((denseDistance(x, others[0]) + denseDistance(x, others[1])) / 2, 9);
    expect(meanAdapterDistance(x, [])).toBeNull();
    const other = randomAdapter(8, { modules: [{ name: 'transformer.h.0.attn.c_attn', inDim: 6, outDim: 9 }] });
    expect(() => adapterDistance(x, other)).toThrow(AdapterDistanceError);
  });
});
