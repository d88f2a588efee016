import { describe, expect, it } from 'vitest';
import { BROWN_GENRES, brownToPlainText, FICTION_GENRES, splitTrainHeldOut } from './brown.ts';
import { assignMixture, PartitionError } from './partition.ts';
import { batchSeed, DatasetError, evaluationBatches, MixtureSampler, slotBatch } from './batches.ts';
import { carveValidation, VALIDATION_BLOCK } from './corpus.ts';
import { createRng } from '../util/random.ts';

describe('Brown corpus preparation', () => {
  it('strips POS tags and restores ordinary spacing and quotes', () => {
    const tagged = "\n\n\tThe/at jury/nn said/vbd ``/`` it's/pps+bez fine/jj ''/'' ,/, and/cc left/vbd ./.\n\n\tHe/pps did/dod n't/* (/( really/rb )/) know/vb ;/. 50/cd %/nn\n";
    expect(brownToPlainText(tagged)).toBe('The jury said "it\'s fine", and left.\nHe didn\'t (really) know; 50%\n');
  });

  it('has 15 genres, six of them fiction (K–R)', () => {
    expect(BROWN_GENRES).toHaveLength(15);
    expect(FICTION_GENRES).toEqual(['fiction', 'mystery', 'science_fiction', 'adventure', 'romance', 'humor']);
  });

  it('holds out the last tenth of every document, deterministically', () => {
    const doc = (k: number) => Array.from({ length: 10 }, (_, i) => `doc${k} line${i}`).join('\n');
    const { train, heldOut } = splitTrainHeldOut([doc(1), doc(2)], 0.1);
    expect(heldOut).toBe('doc1 line9\ndoc2 line9\n');
    expect(train.split('\n').filter(Boolean)).toHaveLength(18);
    expect(splitTrainHeldOut([doc(1), doc(2)], 0.1)).toEqual({ train, heldOut });
  });
});

describe('partitioners', () => {
  const sizes = { a: 100, b: 300, c: 600 };
  const genres = ['a', 'b', 'c'];
  it('genre: slot i gets genre i mod n', () => {
    expect(assignMixture({ kind: 'genre', genres }, 0, 1, sizes)).toEqual({ a: 1 });
    expect(assignMixture({ kind: 'genre', genres }, 4, 1, sizes)).toEqual({ b: 1 });
  });
  it('iid: proportional to genre size', () => {
    expect(assignMixture({ kind: 'iid', genres }, 3, 1, sizes)).toEqual({ a: 0.1, b: 0.3, c: 0.6 });
  });
  it('dirichlet: seeded, sums to one, skewed for small alpha', () => {
    const m1 = assignMixture({ kind: 'dirichlet', genres, alpha: 0.1 }, 2, 42, sizes);
    expect(assignMixture({ kind: 'dirichlet', genres, alpha: 0.1 }, 2, 42, sizes)).toEqual(m1);
    expect(Object.values(m1).reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
    // With alpha = 0.1 most slots put most mass on one genre; with alpha = 100 none does.
    const maxShare = (alpha: number) =>
      Array.from({ length: 50 }, (_, slot) => Math.max(...Object.values(assignMixture({ kind: 'dirichlet', genres, alpha }, slot, 7, sizes))));
    expect(maxShare(0.1).filter((m) => m > 0.8).length).toBeGreaterThan(30);
    expect(maxShare(100).every((m) => m < 0.6)).toBe(true);
  });
  it('rejects bad configs with PartitionError', () => {
    expect(() => assignMixture({ kind: 'genre', genres: ['zzz'] }, 0, 1, sizes)).toThrow(PartitionError);
    expect(() => assignMixture({ kind: 'dirichlet', genres, alpha: 0 }, 0, 1, sizes)).toThrow(PartitionError);
    expect(() => assignMixture({ kind: 'genre', genres }, -1, 1, sizes)).toThrow(PartitionError);
  });
});

describe('batches', () => {
  it('targets are inputs shifted by one, windows come from the weighted sources', () => {
    const tokens = Uint8Array.from({ length: 500 }, (_, i) => i % 200);
    const other = new Uint8Array(500).fill(255);
    const sampler = new MixtureSampler([{ name: 'count', tokens, weight: 1 }, { name: 'never', tokens: other, weight: 0 }], createRng(3));
    const b = sampler.sample(4, 10);
    for (let n = 0; n < 4; n++) {
      for (let t = 0; t < 10; t++) {
        expect(b.targets[n * 10 + t]).toBe((b.inputs[n * 10 + t] + 1) % 200);
        expect(b.inputs[n * 10 + t]).not.toBe(255);
      }
    }
  });
  it('evaluation windows do not overlap and are deterministic', () => {
    const tokens = Uint8Array.from({ length: 1000 }, (_, i) => i % 251);
    const batches = evaluationBatches(tokens, 2, 10, 3);
    expect(batches).toHaveLength(3);
    const starts = batches.flatMap((b) => [b.inputs[0], b.inputs[10]]);
    expect(new Set(starts).size).toBe(6);
    expect(() => evaluationBatches(tokens.slice(0, 5), 2, 10, 1)).toThrow(DatasetError);
  });
});

describe('validation split', () => {
  it('takes every 20th block of the training text, which the training part no longer holds', () => {
    // 45 full blocks and a 100-byte tail; byte value = block index, so each block is recognisable.
    const bytes = Uint8Array.from({ length: 45 * VALIDATION_BLOCK + 100 }, (_, i) => Math.floor(i / VALIDATION_BLOCK));
    const { train, validation } = carveValidation(bytes);
    expect(validation.length).toBe(2 * VALIDATION_BLOCK);
    expect([...new Set(validation)]).toEqual([19, 39]);
    expect(train.length).toBe(bytes.length - 2 * VALIDATION_BLOCK);
    expect(train.includes(19) || train.includes(39)).toBe(false);
    expect(train[train.length - 1]).toBe(45);
  });
  it('a text shorter than 20 blocks has no validation part', () => {
    const { train, validation } = carveValidation(new Uint8Array(5000).fill(7));
    expect(validation.length).toBe(0);
    expect(train.length).toBe(5000);
  });
});

describe('slot batches', () => {
  it('batch s of slot i depends on (seed, slot, step) only', () => {
    const tokens = Uint8Array.from({ length: 5000 }, (_, i) => i % 251);
    const sources = [{ name: 'x', tokens, weight: 1 }];
    const a = slotBatch(sources, 1, 3, 7, 2, 8);
    expect(slotBatch(sources, 1, 3, 7, 2, 8)).toEqual(a);
    expect(slotBatch(sources, 1, 4, 7, 2, 8).inputs).not.toEqual(a.inputs);
    expect(slotBatch(sources, 1, 3, 8, 2, 8).inputs).not.toEqual(a.inputs);
    expect(batchSeed(1, 3, 7)).not.toBe(batchSeed(1, 7, 3));
  });
});
