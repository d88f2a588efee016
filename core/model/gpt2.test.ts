import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { useTestBackend } from '../test-backend.ts';
import type { BaseWeights, Gpt2Config } from './config.ts';
import { AdapterMismatchError, generate, Gpt2Model, initGpt2Weights } from './gpt2.ts';
import { schemaHash } from './adapter.ts';
import { createRng } from '../util/random.ts';
import { AdamW } from '../train/adamw.ts';

const TINY: Gpt2Config = { nEmbd: 16, nLayer: 2, nHead: 2, nPositions: 12, vocabSize: 23, nInner: 24, layerNormEpsilon: 1e-5 };
const LORA = { r: 2, alpha: 4, targetModules: ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj'] };

beforeAll(async () => {
  await useTestBackend();
});

/** Random weights with non-trivial layer norms and biases, so every parameter matters in the reference check. */
function randomWeights(config: Gpt2Config, seed: number): BaseWeights {
  const rng = createRng(seed);
  const w = initGpt2Weights(config, seed);
  for (const [name, t] of w) {
    for (let i = 0; i < t.data.length; i++) {
      if (/ln_\w+\.weight$/.test(name)) t.data[i] = 1 + 0.2 * (rng() - 0.5);
      else if (name.endsWith('.bias')) t.data[i] = 0.1 * (rng() - 0.5);
      else t.data[i] = 0.3 * (rng() - 0.5);
    }
  }
  return w;
}

/** Straightforward GPT-2 forward in plain JS loops (float64), written from the paper/HF semantics. */
function referenceLogits(config: Gpt2Config, w: BaseWeights, ids: number[]): number[][] {
  const d = config.nEmbd;
  const T = ids.length;
  const get = (n: string) => w.get(n)!.data;
  const linear = (x: number[][], name: string, inDim: number, outDim: number) => {
    const W = get(`${name}.weight`);
    const b = get(`${name}.bias`);
    return x.map((row) => {
      const out = new Array(outDim).fill(0).map((_, j) => b[j]);
      for (let i = 0; i < inDim; i++) for (let j = 0; j < outDim; j++) out[j] += row[i] * W[i * outDim + j];
      return out;
    });
  };
  const layerNorm = (x: number[][], name: string) =>
    x.map((row) => {
      const mean = row.reduce((a, b) => a + b, 0) / row.length;
      const variance = row.reduce((a, b) => a + (b - mean) ** 2, 0) / row.length;
      const g = get(`${name}.weight`);
      const bias = get(`${name}.bias`);
      return row.map((v, i) => ((v - mean) / Math.sqrt(variance + config.layerNormEpsilon)) * g[i] + bias[i]);
    });
  const gelu = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
  const wte = get('wte.weight');
  const wpe = get('wpe.weight');
  let x = ids.map((id, t) => Array.from({ length: d }, (_, i) => wte[id * d + i] + wpe[t * d + i]));
  const heads = config.nHead;
  const e = d / heads;
  for (let l = 0; l < config.nLayer; l++) {
    const qkv = linear(layerNorm(x, `h.${l}.ln_1`), `h.${l}.attn.c_attn`, d, 3 * d);
    const context = x.map(() => new Array(d).fill(0));
    for (let h = 0; h < heads; h++) {
      for (let t = 0; t < T; t++) {
        const scores: number[] = [];
        for (let s = 0; s <= t; s++) {
          let dot = 0;
          for (let i = 0; i < e; i++) dot += qkv[t][h * e + i] * qkv[s][d + h * e + i];
          scores.push(dot / Math.sqrt(e));
        }
        const max = Math.max(...scores);
        const exps = scores.map((v) => Math.exp(v - max));
        const z = exps.reduce((a, b) => a + b, 0);
        for (let s = 0; s <= t; s++) for (let i = 0; i < e; i++) context[t][h * e + i] += (exps[s] / z) * qkv[s][2 * d + h * e + i];
      }
    }
    const attn = linear(context, `h.${l}.attn.c_proj`, d, d);
    x = x.map((row, t) => row.map((v, i) => v + attn[t][i]));
    const hidden = linear(layerNorm(x, `h.${l}.ln_2`), `h.${l}.mlp.c_fc`, d, config.nInner).map((r) => r.map(gelu));
    const mlp = linear(hidden, `h.${l}.mlp.c_proj`, config.nInner, d);
    x = x.map((row, t) => row.map((v, i) => v + mlp[t][i]));
  }
  const hOut = layerNorm(x, 'ln_f');
  return hOut.map((row) => Array.from({ length: config.vocabSize }, (_, v) => row.reduce((a, hv, i) => a + hv * wte[v * d + i], 0)));
}

async function logitsOf(model: Gpt2Model, ids: number[]): Promise<Float32Array> {
  const out = model.logits(tf.tensor2d(ids, [1, ids.length], 'int32'));
  const data = (await out.data()) as Float32Array;
  out.dispose();
  return data;
}

describe('Gpt2Model', () => {
  it('matches a plain-loop GPT-2 reference forward pass', async () => {
    const weights = randomWeights(TINY, 7);
    const model = new Gpt2Model(TINY, weights);
    const ids = [3, 17, 0, 22, 5, 9, 9, 1];
    const got = await logitsOf(model, ids);
    const want = referenceLogits(TINY, weights, ids).flat();
    let maxErr = 0;
    for (let i = 0; i < want.length; i++) maxErr = Math.max(maxErr, Math.abs(got[i] - want[i]));
    expect(maxErr).toBeLessThan(1e-4);
    model.dispose();
  });

  it('computes the loss as the cross-entropy of its logits, with either embedding path', async () => {
    const weights = randomWeights(TINY, 17);
    const inputs = Int32Array.from([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8]);
    const targets = Int32Array.from([1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9]);
    const ref = referenceLogits(TINY, weights, Array.from(inputs.slice(0, 6))).concat(referenceLogits(TINY, weights, Array.from(inputs.slice(6))));
    let want = 0;
    ref.forEach((row, n) => {
      const max = Math.max(...row);
      want += max + Math.log(row.reduce((a, v) => a + Math.exp(v - max), 0)) - row[targets[n]];
    });
    want /= ref.length;
    for (const trainBase of [false, true]) {
      const model = new Gpt2Model(TINY, weights, { trainBase });
      const loss = model.loss(inputs, targets, 2, 6);
      expect(((await loss.data()) as Float32Array)[0]).toBeCloseTo(want, 4);
      loss.dispose();
      model.dispose();
    }
  });

  it('is causal: later tokens do not change earlier logits', async () => {
    const model = new Gpt2Model(TINY, randomWeights(TINY, 3));
    const a = await logitsOf(model, [1, 2, 3, 4, 5]);
    const b = await logitsOf(model, [1, 2, 3, 20, 21]);
    const v = TINY.vocabSize;
    expect(Array.from(a.slice(0, 3 * v))).toEqual(Array.from(b.slice(0, 3 * v)));
    expect(Array.from(a.slice(3 * v))).not.toEqual(Array.from(b.slice(3 * v)));
    model.dispose();
  });

  it('with LoRA B = 0 reproduces the base output exactly', async () => {
    const weights = randomWeights(TINY, 11);
    const base = new Gpt2Model(TINY, weights);
    const withLora = new Gpt2Model(TINY, weights);
    withLora.attachLora(LORA, 5);
    const ids = [4, 8, 15, 16, 2, 3];
    expect(Array.from(await logitsOf(withLora, ids))).toEqual(Array.from(await logitsOf(base, ids)));
    base.dispose();
    withLora.dispose();
  });

  it('LoRA output equals the base model with ΔW = (alpha/r)·(B·A)ᵀ folded into the Conv1D weights', async () => {
    const weights = randomWeights(TINY, 13);
    const model = new Gpt2Model(TINY, weights);
    model.attachLora(LORA, 6);
    const adapter = await model.getAdapter();
    const rng = createRng(99);
    for (const pair of adapter.modules.values()) for (let i = 0; i < pair.b.length; i++) pair.b[i] = rng() - 0.5;
    model.setAdapter(adapter);
    const scale = LORA.alpha / LORA.r;
    const folded: BaseWeights = new Map([...weights].map(([n, t]) => [n, { shape: t.shape, data: t.data.slice() }]));
    for (const [name, p] of adapter.modules) {
      const w = folded.get(`${name.replace('transformer.', '')}.weight`)!.data; // [in, out]
      for (let i = 0; i < p.inDim; i++) {
        for (let o = 0; o < p.outDim; o++) {
          let ba = 0;
          for (let k = 0; k < LORA.r; k++) ba += p.b[o * LORA.r + k] * p.a[k * p.inDim + i];
          w[i * p.outDim + o] += scale * ba;
        }
      }
    }
    const mergedModel = new Gpt2Model(TINY, folded);
    const ids = [1, 5, 9, 13, 17, 21];
    const got = await logitsOf(model, ids);
    const want = await logitsOf(mergedModel, ids);
    for (let i = 0; i < want.length; i++) expect(Math.abs(got[i] - want[i])).toBeLessThan(1e-4);
    model.dispose();
    mergedModel.dispose();
  });

  it('LoRA gradients agree with central finite differences', async () => {
    const model = new Gpt2Model(TINY, randomWeights(TINY, 21));
    model.attachLora(LORA, 8);
    const adapter = await model.getAdapter();
    const rng = createRng(5);
    for (const pair of adapter.modules.values()) for (let i = 0; i < pair.b.length; i++) pair.b[i] = 0.5 * (rng() - 0.5);
    model.setAdapter(adapter);
    const inputs = Int32Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
    const targets = Int32Array.from([2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]);
    const vars = model.trainableVariables();
    const { grads, value } = tf.variableGrads(() => model.loss(inputs, targets, 2, 8), [...vars.values()]);
    value.dispose();
    const lossAt = async () => {
      const l = model.loss(inputs, targets, 2, 8);
      const [v] = (await l.data()) as Float32Array;
      l.dispose();
      return v;
    };
    const probes: [string, number][] = [
      ['transformer.h.0.attn.c_attn.lora_A', 3],
      ['transformer.h.1.mlp.c_fc.lora_B', 10],
      ['transformer.h.0.mlp.c_proj.lora_B', 1],
      ['transformer.h.1.attn.c_proj.lora_A', 7],
    ];
    const h = 1e-2;
    for (const [name, index] of probes) {
      const variable = vars.get(name)!;
      const analytic = ((await grads[variable.name].data()) as Float32Array)[index];
      const original = (await variable.data()) as Float32Array;
      const shifted = (delta: number) => {
        const copy = original.slice();
        copy[index] += delta;
        variable.assign(tf.tensor(copy, variable.shape));
      };
      shifted(h);
      const up = await lossAt();
      shifted(-h);
      const down = await lossAt();
      shifted(0);
      const numeric = (up - down) / (2 * h);
      expect(Math.abs(analytic - numeric)).toBeLessThan(2e-3 + 0.02 * Math.abs(numeric));
      expect(Math.abs(analytic)).toBeGreaterThan(1e-5);
    }
    tf.dispose(Object.values(grads));
    model.dispose();
  });

  it('round-trips its adapter and refuses one of another schema', async () => {
    const model = new Gpt2Model(TINY, randomWeights(TINY, 1), { baseModelId: 'tiny' });
    model.attachLora(LORA, 2);
    const adapter = await model.getAdapter();
    expect(schemaHash(adapter)).toBe(model.adapterSchemaHash());
    adapter.modules.get('transformer.h.0.attn.c_attn')!.b[0] = 0.25;
    model.setAdapter(adapter);
    expect((await model.getAdapter()).modules.get('transformer.h.0.attn.c_attn')!.b[0]).toBe(0.25);
    const other = new Gpt2Model(TINY, randomWeights(TINY, 1), { baseModelId: 'another-base' });
    other.attachLora(LORA, 2);
    expect(() => other.setAdapter(adapter)).toThrow(AdapterMismatchError);
    model.dispose();
    other.dispose();
  });

  it('leaves no tensor behind: a model with LoRA, its adapter set again and again, and its optimiser state restored, then disposed', async () => {
    const before = tf.memory().numTensors;
    const model = new Gpt2Model(TINY, randomWeights(TINY, 1), { baseModelId: 'tiny' });
    model.attachLora(LORA, 2);
    const optimizer = new AdamW(model.trainableVariables());
    const adapter = await model.getAdapter();
    const afterBuild = tf.memory().numTensors;
    // A merge sets the adapter: each one used to orphan one tensor per LoRA factor.
    for (let i = 0; i < 5; i++) model.setAdapter(adapter);
    optimizer.importState(await optimizer.exportState());
    expect(tf.memory().numTensors).toBe(afterBuild);
    // What is left is exactly the model's variables, the LoRA pairs, the optimiser's two moments per LoRA factor,
    // and the causal mask.
    const weights = model.trainableVariables().size;
    const baseWeights = (await model.exportBaseWeights()).size;
    expect(afterBuild - before).toBe(baseWeights + weights + 2 * weights + 1);
    optimizer.dispose();
    model.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('generates greedily the argmax continuation and respects the context window', async () => {
    const model = new Gpt2Model(TINY, randomWeights(TINY, 4));
    const prompt = [1, 2, 3];
    const out = await generate(model, prompt, { maxNewTokens: 12 });
    expect(out).toHaveLength(12);
    // The first greedy token is the argmax of the reference logits at the last prompt position.
    const ref = referenceLogits(TINY, randomWeights(TINY, 4), prompt)[2];
    expect(out[0]).toBe(ref.indexOf(Math.max(...ref)));
    const sampled = await generate(model, prompt, { maxNewTokens: 5, temperature: 1, topK: 1, seed: 3 });
    expect(sampled).toEqual(out.slice(0, 5)); // top-1 sampling is greedy
    model.dispose();
  });

  it('rejects weights of the wrong shape with a named error', () => {
    const weights = randomWeights(TINY, 1);
    weights.set('h.1.mlp.c_fc.weight', { shape: [24, 16], data: new Float32Array(24 * 16) });
    expect(() => new Gpt2Model(TINY, weights)).toThrow(/h\.1\.mlp\.c_fc\.weight.*\[24,16\].*\[16,24\]/);
  });
});
