import { describe, expect, it } from 'vitest';
import { decodeAdapter, encodeAdapter } from '../wire/codec.ts';
import type { Adapter } from '../model/adapter.ts';
import { poisonPublished, randomLike, type Attack, type ByzantineMode } from './byzantine.ts';
import { handAdapter, product } from './byzantine-fixtures.ts';

/** What an attacker of this mode publishes on its first round, decoded. */
function published(mode: ByzantineMode, scale: number, honest = handAdapter(), rounds = 1): { adapter: Adapter; flood: number; poison?: Adapter } {
  const attack: Attack = { mode, scale, seed: 9 };
  const state = { first: null, rounds: 0 };
  let out = poisonPublished(attack, encodeAdapter(honest, 'fp32'), state, 'fp32');
  for (let r = 1; r < rounds; r++) out = poisonPublished(attack, encodeAdapter(honest, 'fp32'), state, 'fp32');
  const decode = (bytes: Uint8Array) => {
    const d = decodeAdapter(bytes);
    if (!d.ok) throw new Error(d.detail);
    return d.adapter;
  };
  return { adapter: decode(out.bytes), flood: out.flood, poison: out.bootstrapPoison ? decode(out.bootstrapPoison) : undefined };
}

describe('Byzantine modes', () => {
  it('sign-flip multiplies every module product B·A by -scale and leaves A alone', () => {
    const honest = handAdapter();
    const bad = published('sign-flip', 3).adapter;
    for (const [name, p] of honest.modules) {
      const q = bad.modules.get(name)!;
      expect([...q.a]).toEqual([...p.a]);
      const expected = product(p.b, p.a).map((v) => -3 * v);
      product(q.b, q.a).forEach((v, i) => expect(v).toBeCloseTo(expected[i], 4));
    }
    expect(honest.modules.get('transformer.h.0.attn.c_attn')!.b[0]).toBe(0.5);
  });

  it('scaled multiplies B by scale', () => {
    expect([...published('scaled', 10).adapter.modules.get('transformer.h.0.attn.c_attn')!.b]).toEqual([5, -10, 20, 2.5]);
  });

  it('random replaces A and B with noise of scale × each tensor\'s RMS', () => {
    const honest = handAdapter();
    const bad = published('random', 2).adapter;
    for (const [name, p] of honest.modules) expect([...bad.modules.get(name)!.a]).not.toEqual([...p.a]);
    const long = Float32Array.from({ length: 20_000 }, (_, i) => (i % 2 === 0 ? 0.3 : -0.3));
    const big = randomLike({ ...honest, modules: new Map([['m', { a: long, b: long, inDim: 10_000, outDim: 10_000 }]]) }, 2, 3);
    const r = Math.sqrt(big.modules.get('m')!.b.reduce((s, v) => s + v * v, 0) / long.length);
    expect(r).toBeGreaterThan(0.57);
    expect(r).toBeLessThan(0.63);
  });

  it('huge publishes the codec limit with each value\'s sign; stale republishes its first payload', () => {
    const huge = published('huge', 1).adapter.modules.get('transformer.h.0.attn.c_attn')!;
    expect([...huge.b]).toEqual([1e30, -1e30, 1e30, 1e30].map(Math.fround));
    const attack: Attack = { mode: 'stale', scale: 1, seed: 0 };
    const state = { first: null, rounds: 0 };
    const first = encodeAdapter(handAdapter(), 'fp32');
    poisonPublished(attack, first, state, 'fp32');
    expect(poisonPublished(attack, encodeAdapter(published('scaled', 5).adapter, 'fp32'), state, 'fp32').bytes).toBe(first);
  });

  it('drift pushes every value by round × 5% of the RMS, the same direction on every round', () => {
    const honest = handAdapter();
    let sq = 0;
    let n = 0;
    for (const p of honest.modules.values()) for (const t of [p.a, p.b]) for (const v of t) (sq += v * v), n++;
    const rms = Math.sqrt(sq / n);
    const one = published('drift', 1, honest, 1).adapter;
    const three = published('drift', 1, honest, 3).adapter;
    for (const [name, p] of honest.modules) {
      p.a.forEach((v, i) => {
        const d1 = one.modules.get(name)!.a[i] - v;
        const d3 = three.modules.get(name)!.a[i] - v;
        expect(Math.abs(d1)).toBeCloseTo(0.05 * rms, 4);
        expect(d3).toBeCloseTo(3 * d1, 4);
      });
    }
  });

  it('sybils publish identical bytes whatever their honest adapter; a joiner publishes honestly and keeps its poison for newcomers; flood adds 50 junk payloads', () => {
    const other = handAdapter();
    other.modules.get('transformer.h.0.attn.c_attn')!.a[0] = 42;
    const a = poisonPublished({ mode: 'sybil', scale: 1, seed: 9 }, encodeAdapter(handAdapter(), 'fp32'), { first: null, rounds: 0 }, 'fp32').bytes;
    const b = poisonPublished({ mode: 'sybil', scale: 1, seed: 9 }, encodeAdapter(other, 'fp32'), { first: null, rounds: 0 }, 'fp32').bytes;
    expect(b).toEqual(a);
    const joiner = published('joiner', 1);
    expect([...joiner.adapter.modules.get('transformer.h.0.attn.c_attn')!.b]).toEqual([0.5, -1, 2, 0.25]);
    expect([...joiner.poison!.modules.get('transformer.h.0.attn.c_attn')!.b]).toEqual([-5, 10, -20, -2.5]);
    expect(published('flood', 1).flood).toBe(50);
  });
});
