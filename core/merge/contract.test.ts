/**
 * One contract over every registered strategy (at its defaults, plus the variants that change code paths):
 * finite output with the inputs' schema, inputs untouched, schema mismatch and bad weights/tensors rejected,
 * one adapter → itself, N identical adapters → that adapter, and no dependence on input order (with weights).
 * Strategies with `output: 'product'` are compared through their ΔW (computed naively), the rest factor by factor.
 */
import { describe, expect, it } from 'vitest';
import { cloneAdapter, schemaHash, type Adapter } from '../model/adapter.ts';
import { MergeInputError, SchemaMismatchError } from './errors.ts';
import { listStrategies, outputKind, resolveParams } from './registry.ts';
import { asInput, maxAbsDiff, naiveProduct, randomAdapter } from './testing.ts';
import type { MergeInput, MergeStrategy, OutputKind } from './types.ts';

const variants: Array<{ strategy: MergeStrategy; params: Record<string, unknown>; label: string }> = [];
for (const strategy of listStrategies()) {
  variants.push({ strategy, params: {}, label: strategy.name });
}
const extra: Array<[string, Record<string, unknown>]> = [
  ['ties', { space: 'products' }],
  ['ties', { base: 'zero', density: 1 }],
  ['ties', { space: 'products', base: 'zero', density: 1 }],
  ['dare', { consensus: 'ties', density: 0.7 }],
  ['breadcrumbs', { consensus: 'ties' }],
  ['dimat', { mixing: 'weights' }],
  ['multi-krum', { keep: 1 }],
  ['variance-corrected', { target: 'all' }],
];
for (const [name, params] of extra) {
  const strategy = listStrategies().find((s) => s.name === name)!;
  variants.push({ strategy, params, label: `${name} ${JSON.stringify(params)}` });
}

function expectSameAdapter(actual: Adapter, expected: Adapter, kind: OutputKind, tolerance: number): void {
  expect(schemaHash(actual)).toBe(schemaHash(expected));
  for (const name of expected.modules.keys()) {
    if (kind === 'product') {
      expect(maxAbsDiff(naiveProduct(actual, name), naiveProduct(expected, name))).toBeLessThan(tolerance);
    } else {
      const a = actual.modules.get(name)!, e = expected.modules.get(name)!;
      expect(maxAbsDiff(a.a, e.a)).toBeLessThan(tolerance);
      expect(maxAbsDiff(a.b, e.b)).toBeLessThan(tolerance);
    }
  }
}

function expectFinite(adapter: Adapter): void {
  for (const p of adapter.modules.values()) {
    expect(p.a.every(Number.isFinite)).toBe(true);
    expect(p.b.every(Number.isFinite)).toBe(true);
  }
}

describe.each(variants)('merge contract: $label', ({ strategy, params: given }) => {
  const params = resolveParams(strategy, given);
  const kind = outputKind(strategy, params);
  const ctx = { seed: 42 };
  const distinct = (n: number): MergeInput[] =>
    Array.from({ length: n }, (_, i) => asInput(randomAdapter(i + 1), `peer-${String.fromCharCode(97 + i)}`, 0.5 + 0.37 * i));

  it('gives a finite adapter with the inputs\u2019 schema and leaves its inputs unchanged', () => {
    const inputs = distinct(5);
    const copies = inputs.map((input) => cloneAdapter(input.adapter));
    const merged = strategy.merge(inputs, params, ctx);
    expectFinite(merged);
    expect(schemaHash(merged)).toBe(schemaHash(inputs[0].adapter));
    inputs.forEach((input, i) => expectSameAdapter(input.adapter, copies[i], 'factors', 1e-30));
    for (const p of merged.modules.values()) {
      for (const input of inputs) {
        const q = [...input.adapter.modules.values()];
        expect(q.some((x) => x.a === p.a || x.b === p.b)).toBe(false);
      }
    }
  });

  it('rejects inputs whose schema hashes differ', () => {
    const other = randomAdapter(9, { r: 4 });
    expect(() => strategy.merge([asInput(randomAdapter(1), 'a'), asInput(other, 'b')], params, ctx)).toThrow(SchemaMismatchError);
    const shapes = randomAdapter(9, { modules: [{ name: 'transformer.h.0.attn.c_attn', inDim: 6, outDim: 9 }] });
    expect(() => strategy.merge([asInput(randomAdapter(1), 'a'), asInput(shapes, 'b')], params, ctx)).toThrow(SchemaMismatchError);
  });

  it('rejects NaN, negative and zero-sum weights and non-finite tensors', () => {
    const pair = () => [asInput(randomAdapter(1), 'a'), asInput(randomAdapter(2), 'b')];
    for (const bad of [NaN, -1, Infinity]) {
      const inputs = pair();
      inputs[1].weight = bad;
      expect(() => strategy.merge(inputs, params, ctx)).toThrow(MergeInputError);
    }
    const zero = pair();
    zero[0].weight = 0;
    zero[1].weight = 0;
    expect(() => strategy.merge(zero, params, ctx)).toThrow(MergeInputError);
    const poisoned = pair();
    poisoned[1].adapter.modules.get('transformer.h.0.mlp.c_fc')!.b[3] = NaN;
    expect(() => strategy.merge(poisoned, params, ctx)).toThrow(MergeInputError);
    expect(() => strategy.merge([], params, ctx)).toThrow(MergeInputError);
  });

  it('returns a single adapter unchanged', () => {
    const adapter = randomAdapter(3);
    expectSameAdapter(strategy.merge([asInput(adapter, 'self', 0.7)], params, ctx), adapter, kind, 1e-5);
  });

  it('returns N identical adapters unchanged', () => {
    const adapter = randomAdapter(4);
    const inputs = [0.2, 1, 3, 0.5].map((w, i) => asInput(cloneAdapter(adapter), `peer-${i}`, w));
    expectSameAdapter(strategy.merge(inputs, params, ctx), adapter, kind, 1e-5);
  });

  it(`does not depend on the order of the inputs${strategy.selfSpecial ? ' after the first (self)' : ''}`, () => {
    const inputs = distinct(5);
    const reference = strategy.merge(inputs, params, ctx);
    const orders = strategy.selfSpecial ? [[0, 4, 2, 3, 1], [0, 3, 1, 4, 2]] : [[4, 2, 0, 3, 1], [2, 0, 4, 1, 3]];
    for (const order of orders) {
      const permuted = order.map((i) => inputs[i]);
      expectSameAdapter(strategy.merge(permuted, params, ctx), reference, kind, 1e-5);
    }
  });
});

/**
 * Extreme but legal finite inputs: what a hostile peer can put on the wire without a decoder refusing it. Every
 * strategy must still return finite values (the update guard normally clips these first; the strategies must not
 * depend on it). 3.4028234663852886e38 / 127 is the largest int8 scale the codec accepts.
 */
const INT8_MAX_SCALE = 3.4028234663852886e38 / 127;
const extremes: Array<{ label: string; fill: (i: number, j: number) => number }> = [
  { label: '1e30 everywhere in one input', fill: (i) => (i === 1 ? 1e30 : 0) },
  { label: 'mixed-sign 1e30', fill: (i, j) => (i === 1 ? (j % 2 ? 1e30 : -1e30) : i === 2 ? (j % 3 ? -1e30 : 1e30) : 0) },
  { label: 'fp16 maximum 65504', fill: (i, j) => (i >= 1 && i <= 2 ? (j % 2 ? 65504 : -65504) : 0.01 * j) },
  { label: 'int8 extremes ±127·maxScale', fill: (i, j) => (i === 0 ? 0 : ((i + j) % 2 ? 127 : -127) * INT8_MAX_SCALE) },
  { label: 'largest float32 of both signs', fill: (i, j) => ((i + j) % 2 ? 1 : -1) * 3.4028234663852886e38 },
];

describe.each(variants)('merge contract with extreme finite values: $label', ({ strategy, params: given }) => {
  const params = resolveParams(strategy, given);
  it.each(extremes)('$label gives a finite adapter', ({ fill }) => {
    const inputs = Array.from({ length: 5 }, (_, i) => {
      const adapter = randomAdapter(i + 1);
      for (const p of adapter.modules.values()) {
        for (let j = 0; j < p.a.length; j++) p.a[j] = Math.fround(fill(i, j));
        for (let j = 0; j < p.b.length; j++) p.b[j] = Math.fround(fill(i, j + 1));
      }
      return asInput(adapter, `peer-${i}`, 1);
    });
    for (const input of inputs) for (const p of input.adapter.modules.values()) expect(p.a.every(Number.isFinite)).toBe(true);
    expectFinite(strategy.merge(inputs, params, { seed: 7 }));
  });
});
