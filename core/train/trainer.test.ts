import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { useTestBackend } from '../test-backend.ts';
import type { Gpt2Config } from '../model/config.ts';
import { Gpt2Model, initGpt2Weights } from '../model/gpt2.ts';
import { AdamW } from './adamw.ts';
import { learningRateAt } from './schedule.ts';
import { Trainer, TRAINER_DEFAULTS } from './trainer.ts';
import { evaluate } from './evaluate.ts';
import { MixtureSampler } from '../data/batches.ts';
import { createRng } from '../util/random.ts';

const TINY: Gpt2Config = { nEmbd: 16, nLayer: 2, nHead: 2, nPositions: 16, vocabSize: 32, nInner: 32, layerNormEpsilon: 1e-5 };
const LORA = { r: 4, alpha: 8, targetModules: ['attn.c_attn', 'mlp.c_fc'] };

beforeAll(async () => {
  await useTestBackend();
});

function tinyLoraModel(seed = 1): Gpt2Model {
  const model = new Gpt2Model(TINY, initGpt2Weights(TINY, seed));
  model.attachLora(LORA, seed);
  return model;
}

/** A repeating pattern a model can learn quickly. */
const patternTokens = Uint8Array.from({ length: 4000 }, (_, i) => (i * 7) % 29);

describe('learning-rate schedule', () => {
  const s = { lr: 1, warmupSteps: 10, totalSteps: 110, minLrRatio: 0.1 };
  it('warms up linearly, peaks, then follows the cosine to the floor', () => {
    expect(learningRateAt(0, s)).toBeCloseTo(0.1);
    expect(learningRateAt(9, s)).toBeCloseTo(1);
    expect(learningRateAt(10, s)).toBeCloseTo(1);
    expect(learningRateAt(60, s)).toBeCloseTo(0.1 + 0.45 * (1 + Math.cos(Math.PI / 2))); // halfway: 0.55
    expect(learningRateAt(110, s)).toBeCloseTo(0.1);
    expect(learningRateAt(500, s)).toBeCloseTo(0.1);
  });
});

describe('AdamW', () => {
  it('first update equals lr·sign(g) (bias-corrected) plus decoupled weight decay', async () => {
    const w = tf.variable(tf.tensor2d([[1, -2], [3, 0.5]]));
    const opt = new AdamW(new Map([['w', w]]), { beta1: 0.9, beta2: 0.999, epsilon: 0, weightDecay: 0.1 });
    const g = tf.tensor2d([[0.5, -0.25], [2, -4]]);
    opt.apply(new Map([['w', g]]), 0.01);
    // m̂ = g, v̂ = g², so m̂/√v̂ = sign(g); decay adds 0.1·w.
    const expected = [1 - 0.01 * (1 + 0.1), -2 - 0.01 * (-1 - 0.2), 3 - 0.01 * (1 + 0.3), 0.5 - 0.01 * (-1 + 0.05)];
    const got = Array.from((await w.data()) as Float32Array);
    got.forEach((v, i) => expect(v).toBeCloseTo(expected[i], 6));
    tf.dispose([w, g]);
    opt.dispose();
  });

  it('exports and imports its state exactly', async () => {
    const w = tf.variable(tf.tensor1d([1, 2, 3]));
    const opt = new AdamW(new Map([['w', w]]));
    opt.apply(new Map([['w', tf.tensor1d([0.1, 0.2, -0.3])]]), 0.1);
    const state = await opt.exportState();
    const w2 = tf.variable(tf.tensor1d([0, 0, 0]));
    const opt2 = new AdamW(new Map([['w', w2]]));
    opt2.importState(state);
    expect(opt2.stepCount).toBe(1);
    expect(await opt2.exportState()).toEqual(state);
    tf.dispose([w, w2]);
    opt.dispose();
    opt2.dispose();
  });

  it('after resetMoments the next update is a fresh optimiser\'s first one (lr·sign(g)), and the step count goes on', async () => {
    const w = tf.variable(tf.tensor1d([1, 2, 3]));
    const opt = new AdamW(new Map([['w', w]]), { beta1: 0.9, beta2: 0.999, epsilon: 0, weightDecay: 0 });
    for (let i = 0; i < 5; i++) opt.apply(new Map([['w', tf.tensor1d([0.3, -0.2, 0.1])]]), 0.1);
    opt.resetMoments();
    expect(opt.stepCount).toBe(5);
    const before = Array.from((await w.data()) as Float32Array);
    // Gradients opposite to the earlier ones: kept moments would still push the old way; fresh ones follow sign(g).
    opt.apply(new Map([['w', tf.tensor1d([-2, 0.5, -0.01])]]), 0.01);
    const after = Array.from((await w.data()) as Float32Array);
    [0.01, -0.01, 0.01].forEach((step, i) => expect(after[i] - before[i]).toBeCloseTo(step, 6));
    expect(opt.stepCount).toBe(6);
    tf.dispose(w);
    opt.dispose();
  });
});

describe('Trainer', () => {
  it('fine-tunes a trained base on a new pattern through LoRA alone, leaving the base untouched', async () => {
    const options = (lr: number) => ({
      schedule: { lr, warmupSteps: 5, totalSteps: 60, minLrRatio: 0.1 },
      optimizer: { beta1: 0.9, beta2: 0.99, epsilon: 1e-8, weightDecay: 0 },
      clipNorm: 1,
      accumulation: 1,
    });
    // A base that knows pattern A (t → t+7 mod 29) ...
    const base = new Gpt2Model(TINY, initGpt2Weights(TINY, 3), { trainBase: true });
    const pretrainer = new Trainer(base, options(2e-2));
    const samplerA = new MixtureSampler([{ name: 'a', tokens: patternTokens, weight: 1 }], createRng(1));
    for (let i = 0; i < 40; i++) await pretrainer.trainStep(() => samplerA.sample(8, 16));
    const baseWeights = await base.exportBaseWeights();
    pretrainer.dispose();
    base.dispose();
    // ... is fine-tuned on pattern B (t → t+11 mod 29).
    const model = new Gpt2Model(TINY, baseWeights);
    model.attachLora({ r: 4, alpha: 8, targetModules: ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj'] }, 3);
    const trainer = new Trainer(model, options(2e-2));
    const patternB = Uint8Array.from({ length: 4000 }, (_, i) => (i * 11) % 29);
    const samplerB = new MixtureSampler([{ name: 'b', tokens: patternB, weight: 1 }], createRng(2));
    const first = await trainer.trainStep(() => samplerB.sample(8, 16));
    let last = first;
    for (let i = 0; i < 59; i++) last = await trainer.trainStep(() => samplerB.sample(8, 16));
    expect(last.loss).toBeLessThan(first.loss * 0.5);
    const after = await model.exportBaseWeights();
    for (const [name, t] of baseWeights) expect(Array.from(after.get(name)!.data)).toEqual(Array.from(t.data));
    trainer.dispose();
    model.dispose();
  });

  it('does not grow the tensor count over 100 steps (with accumulation and clipping)', async () => {
    const model = tinyLoraModel(4);
    const trainer = new Trainer(model, {
      schedule: { lr: 1e-3, warmupSteps: 2, totalSteps: 100, minLrRatio: 0.1 },
      optimizer: { beta1: 0.9, beta2: 0.99, epsilon: 1e-8, weightDecay: 0.01 },
      clipNorm: 0.01,
      accumulation: 2,
    });
    const sampler = new MixtureSampler([{ name: 'pattern', tokens: patternTokens, weight: 1 }], createRng(2));
    await trainer.trainStep(() => sampler.sample(4, 8));
    const baseline = tf.memory().numTensors;
    for (let i = 0; i < 100; i++) await trainer.trainStep(() => sampler.sample(4, 8));
    expect(tf.memory().numTensors).toBe(baseline);
    trainer.dispose();
    model.dispose();
  });

  it('accumulating two half batches gives the same update as one full batch', async () => {
    const sampler = new MixtureSampler([{ name: 'pattern', tokens: patternTokens, weight: 1 }], createRng(9));
    const full = sampler.sample(4, 8);
    const half = (k: number) => ({
      inputs: full.inputs.slice(k * 16, (k + 1) * 16),
      targets: full.targets.slice(k * 16, (k + 1) * 16),
      batchSize: 2,
      seqLen: 8,
    });
    const config = (accumulation: number) => ({
      schedule: { lr: 1e-2, warmupSteps: 0, totalSteps: 10, minLrRatio: 1 },
      optimizer: { beta1: 0.9, beta2: 0.99, epsilon: 1e-8, weightDecay: 0 },
      clipNorm: 0,
      accumulation,
    });
    // Give B a non-zero start so both factors receive gradients.
    const perturb = async (m: Gpt2Model) => {
      const a = await m.getAdapter();
      for (const p of a.modules.values()) p.b.fill(0.01);
      m.setAdapter(a);
    };
    const one = tinyLoraModel(5);
    await perturb(one);
    const t1 = new Trainer(one, config(1));
    const r1 = await t1.trainStep(() => full);
    const two = tinyLoraModel(5);
    await perturb(two);
    const t2 = new Trainer(two, config(2));
    let k = 0;
    const r2 = await t2.trainStep(() => half(k++));
    expect(r2.loss).toBeCloseTo(r1.loss, 5);
    expect(r2.gradNorm).toBeCloseTo(r1.gradNorm, 4);
    const a1 = await one.getAdapter();
    const a2 = await two.getAdapter();
    for (const [name, p] of a1.modules) {
      const q = a2.modules.get(name)!;
      for (let i = 0; i < p.a.length; i++) expect(q.a[i]).toBeCloseTo(p.a[i], 4);
    }
    [t1, t2, one, two].forEach((x) => x.dispose());
  });

  it("in 'frozen-a' mode trains B only: A keeps its seeded values bit for bit and has no optimiser state", async () => {
    const model = new Gpt2Model(TINY, initGpt2Weights(TINY, 3));
    model.attachLora(LORA, 3, 'frozen-a');
    expect([...model.trainableVariables().keys()].every((name) => name.endsWith('.lora_B'))).toBe(true);
    const before = await model.getAdapter();
    const trainer = new Trainer(model, { ...TRAINER_DEFAULTS, schedule: { lr: 1e-2, warmupSteps: 0, totalSteps: 10, minLrRatio: 1 } });
    const sampler = new MixtureSampler([{ name: 'p', tokens: patternTokens, weight: 1 }], createRng(5));
    for (let i = 0; i < 3; i++) await trainer.trainStep(() => sampler.sample(4, 8));
    const after = await model.getAdapter();
    for (const [name, pair] of after.modules) {
      expect(Array.from(pair.a)).toEqual(Array.from(before.modules.get(name)!.a));
      expect(pair.b.some((v) => v !== 0)).toBe(true);
    }
    const state = await trainer.optimizer.exportState();
    expect(Object.keys(state.moments).some((name) => name.endsWith('.lora_A'))).toBe(false);
    trainer.dispose();
    model.dispose();
  });

  it('reports held-out loss in nats and bits per byte', async () => {
    const model = tinyLoraModel(6);
    const batch = new MixtureSampler([{ name: 'p', tokens: patternTokens, weight: 1 }], createRng(3)).sample(2, 8);
    const ev = await evaluate(model, [batch]);
    const l = model.loss(batch.inputs, batch.targets, 2, 8);
    const [direct] = (await l.data()) as Float32Array;
    l.dispose();
    expect(ev.loss).toBeCloseTo(direct, 5);
    expect(ev.bitsPerByte).toBeCloseTo(direct / Math.LN2, 5);
    model.dispose();
  });
});
