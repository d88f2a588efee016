/**
 * GPT-2 in TensorFlow.js, with optional LoRA on the attention and MLP projections.
 *
 * Parameter names and layouts follow Hugging Face's GPT2LMHeadModel (without the `transformer.` prefix here;
 * LoRA module names carry it, as PEFT's do): Conv1D weights are [in, out], the LM head is tied to `wte`.
 * Shapes use B = batch, T = sequence length, D = n_embd, H = n_head, E = D / H, F = n_inner, V = vocab size.
 */
import * as tf from '@tensorflow/tfjs';
import type { Adapter, LoraConfig, LoraMode } from './adapter.ts';
import { assertAdapterShapes, LORA_MODES, loraScale, schemaHash } from './adapter.ts';
import type { BaseWeights, Gpt2Config } from './config.ts';
import { gpt2ParameterShapes, loraModuleDims, loraModuleName } from './config.ts';
import { createNormal, createRng, deriveSeed } from '../util/random.ts';
import { registerFastMatMulGradient, swapLastTwo } from './matmul-gradient.ts';

registerFastMatMulGradient();

/** x · yᵀ with an explicit transpose: WASM's transposed products are many times slower than plain ones. */
function matMulT(x: tf.Tensor, y: tf.Tensor): tf.Tensor {
  return tf.matMul(x, swapLastTwo(y));
}

/**
 * Mean cross-entropy of logits [N, V] against one-hot targets [N, V], with its gradient written out:
 * (softmax(logits) − targets) / N. Autodiff through logSumExp also differentiates its max shift (an Equal, a Cast
 * and a Multiply over [N, V], whose contributions cancel): 7–8% of a GPT-2-small step on WASM, where V = 50257.
 */
const crossEntropy = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const [logits, targets, save] = args as [tf.Tensor, tf.Tensor, tf.GradSaveFunc];
  save([logits, targets]);
  const perRow = tf.sub(tf.logSumExp(logits, 1), tf.sum(tf.mul(logits, targets), 1));
  return {
    value: tf.mean(perRow),
    gradFunc: (dy: tf.Tensor, [savedLogits, savedTargets]: tf.Tensor[]) => [
      tf.mul(tf.sub(tf.softmax(savedLogits), savedTargets), tf.div(dy, savedLogits.shape[0])),
      tf.zerosLike(savedTargets),
    ],
  };
}) as (logits: tf.Tensor2D, targets: tf.Tensor2D) => tf.Scalar;

export class ModelWeightsError extends Error {
  static override readonly name = 'ModelWeightsError';
  override readonly name = ModelWeightsError.name;
}

export class AdapterMismatchError extends Error {
  static override readonly name = 'AdapterMismatchError';
  override readonly name = AdapterMismatchError.name;
}

/** GPT-2's initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2 * n_layer), layer norms at identity. */
export function initGpt2Weights(config: Gpt2Config, seed: number): BaseWeights {
  const normal = createNormal(createRng(deriveSeed(seed, 'gpt2-init')));
  const residualStd = 0.02 / Math.sqrt(2 * config.nLayer);
  const weights: BaseWeights = new Map();
  for (const [name, shape] of gpt2ParameterShapes(config)) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    if (/ln_\w+\.weight$/.test(name)) data.fill(1);
    else if (name.endsWith('.weight')) {
      const std = name.endsWith('c_proj.weight') ? residualStd : 0.02;
      for (let i = 0; i < data.length; i++) data[i] = normal() * std;
    }
    weights.set(name, { shape, data });
  }
  return weights;
}

interface LoraVariables {
  /** [r, in] */
  a: tf.Variable;
  /** [out, r] */
  b: tf.Variable;
}

export interface Gpt2Options {
  /** Train the base weights (pretraining). LoRA fine-tuning keeps them frozen. */
  trainBase?: boolean;
  /** Identifies the base model in adapters and schema hashes. */
  baseModelId?: string;
}

export class Gpt2Model {
  readonly config: Gpt2Config;
  readonly baseModelId: string;
  readonly trainBase: boolean;
  /** Base parameters keyed like gpt2ParameterShapes ('h.0.attn.c_attn.weight'). */
  readonly params = new Map<string, tf.Variable>();
  /** LoRA pairs keyed by HF module name ('transformer.h.0.attn.c_attn'). */
  readonly lora = new Map<string, LoraVariables>();
  private loraConfig: LoraConfig | null = null;
  private loraMode: LoraMode = 'standard';
  /** wteᵀ, made on first use when wte is frozen (see frozenHead). */
  private wteTransposed: tf.Tensor2D | null = null;
  /** [T_max, T_max]: 0 on and below the diagonal, a large negative number above. */
  private readonly causalMask: tf.Tensor2D;

  constructor(config: Gpt2Config, weights: BaseWeights, options: Gpt2Options = {}) {
    this.config = config;
    this.trainBase = options.trainBase ?? false;
    this.baseModelId = options.baseModelId ?? 'unnamed-gpt2';
    const shapes = gpt2ParameterShapes(config);
    for (const [name, shape] of shapes) {
      const w = weights.get(name);
      if (!w) throw new ModelWeightsError(`Gpt2Model: missing base weight '${name}'`);
      if (w.shape.length !== shape.length || w.shape.some((s, i) => s !== shape[i])) {
        throw new ModelWeightsError(`Gpt2Model: weight '${name}' has shape [${w.shape}], expected [${shape}]`);
      }
    }
    // Variables keep tfjs' generated names: names are global to the engine and two models may coexist.
    // tidy frees the tensor each variable is copied from (tidy never disposes variables); without it every model
    // left one orphan tensor per weight behind.
    tf.tidy(() => {
      for (const [name, shape] of shapes) this.params.set(name, tf.variable(tf.tensor(weights.get(name)!.data, shape), this.trainBase));
    });
    const t = config.nPositions;
    this.causalMask = tf.tidy(() => {
      const lower = tf.linalg.bandPart(tf.ones([t, t]), -1, 0);
      return tf.mul(tf.sub(1, lower), -1e9) as tf.Tensor2D;
    });
  }

  get loraSpec(): LoraConfig | null {
    return this.loraConfig;
  }

  /**
   * Adds LoRA pairs on every block's target modules. A is drawn like PEFT's default (Kaiming-uniform,
   * bound 1/sqrt(in)) from the seed, B is zero, so the model's output is unchanged until B trains. In 'frozen-a'
   * mode A is not trainable: trainableVariables() leaves it out, so no optimiser ever moves it.
   */
  attachLora(config: LoraConfig, seed: number, mode: LoraMode = 'standard'): void {
    this.detachLora();
    if (!(LORA_MODES as readonly string[]).includes(mode)) throw new AdapterMismatchError(`attachLora: unknown LoRA mode '${mode}' (known: ${LORA_MODES.join(', ')})`);
    if (!Number.isInteger(config.r) || config.r < 1) throw new AdapterMismatchError(`attachLora: rank must be a positive integer, got ${config.r}`);
    if (config.targetModules.length === 0) throw new AdapterMismatchError('attachLora: at least one target module is needed');
    const rng = createRng(deriveSeed(seed, 'lora-init'));
    for (let layer = 0; layer < this.config.nLayer; layer++) {
      for (const target of config.targetModules) {
        const { inDim, outDim } = loraModuleDims(this.config, target);
        const name = loraModuleName(layer, target);
        const bound = 1 / Math.sqrt(inDim);
        const a = new Float32Array(config.r * inDim);
        for (let i = 0; i < a.length; i++) a[i] = (2 * rng() - 1) * bound;
        this.lora.set(
          name,
          tf.tidy(() => ({ a: tf.variable(tf.tensor2d(a, [config.r, inDim]), mode !== 'frozen-a'), b: tf.variable(tf.zeros([outDim, config.r]), true) })),
        );
      }
    }
    // Only the adapter's own fields: a run manifest's lora object carries its mode too, which adapters do not.
    this.loraConfig = { r: config.r, alpha: config.alpha, targetModules: [...config.targetModules] };
    this.loraMode = mode;
  }

  get loraModeName(): LoraMode {
    return this.loraMode;
  }

  detachLora(): void {
    for (const { a, b } of this.lora.values()) {
      a.dispose();
      b.dispose();
    }
    this.lora.clear();
    this.loraConfig = null;
    this.loraMode = 'standard';
  }

  /** Variables the optimiser updates: LoRA factors (B only in 'frozen-a' mode), plus the base weights when pretraining. */
  trainableVariables(): Map<string, tf.Variable> {
    const vars = new Map<string, tf.Variable>();
    if (this.trainBase) for (const [name, v] of this.params) vars.set(name, v);
    for (const [name, { a, b }] of this.lora) {
      if (this.loraMode !== 'frozen-a') vars.set(`${name}.lora_A`, a);
      vars.set(`${name}.lora_B`, b);
    }
    return vars;
  }

  /** Next-token logits [B, T, V] for token ids [B, T]. */
  logits(ids: tf.Tensor2D): tf.Tensor3D {
    const [batch, seqLen] = ids.shape;
    if (seqLen > this.config.nPositions) {
      throw new RangeError(`Gpt2Model.logits: sequence length ${seqLen} exceeds n_positions ${this.config.nPositions}`);
    }
    return tf.tidy(() => {
      const { nEmbd: d, vocabSize: v } = this.config;
      const wte = this.param('wte.weight');
      const flatIds = tf.reshape(ids, [batch * seqLen]);
      // (oneHot is cast rather than asked for float32: the WASM kernel ignores the dtype and writes int bits.)
      // The gradient of gather is UnsortedSegmentSum, which the WASM backend lacks; a one-hot product has a
      // plain matMul gradient, so it is used whenever the embedding itself trains (small vocabularies only).
      const tokenEmb = this.trainBase
        ? tf.matMul(tf.cast(tf.oneHot(flatIds, v), 'float32'), wte)
        : tf.gather(wte, flatIds);
      const posEmb = tf.slice(this.param('wpe.weight'), [0, 0], [seqLen, d]);
      let x = tf.add(tf.reshape(tokenEmb, [batch, seqLen, d]), posEmb) as tf.Tensor3D; // [B, T, D]
      for (let layer = 0; layer < this.config.nLayer; layer++) x = this.block(x, layer);
      const h = this.layerNorm(tf.reshape(x, [batch * seqLen, d]), 'ln_f'); // [B*T, D]
      return tf.reshape(this.trainBase ? matMulT(h, wte) : this.frozenHead(h), [batch, seqLen, v]) as tf.Tensor3D; // tied head
    });
  }

  /** Mean next-token cross-entropy in nats over a batch of flattened [B*T] ids and targets. */
  loss(inputs: Int32Array, targets: Int32Array, batch: number, seqLen: number): tf.Scalar {
    return tf.tidy(() => {
      const logits = tf.reshape(this.logits(tf.tensor2d(inputs, [batch, seqLen], 'int32')), [batch * seqLen, this.config.vocabSize]);
      const oneHot = tf.cast(tf.oneHot(tf.tensor1d(targets, 'int32'), this.config.vocabSize), 'float32');
      return crossEntropy(logits as tf.Tensor2D, oneHot as tf.Tensor2D);
    });
  }

  private block(x: tf.Tensor3D, layer: number): tf.Tensor3D {
    const [batch, seqLen, d] = x.shape;
    const h = `h.${layer}`;
    const x2d = tf.reshape(x, [batch * seqLen, d]) as tf.Tensor2D;
    const attnOut = this.attention(this.layerNorm(x2d, `${h}.ln_1`), batch, seqLen, layer); // [B*T, D]
    const afterAttn = tf.add(x2d, attnOut) as tf.Tensor2D;
    const hidden = this.gelu(this.linear(this.layerNorm(afterAttn, `${h}.ln_2`), layer, 'mlp.c_fc')); // [B*T, F]
    const mlpOut = this.linear(hidden, layer, 'mlp.c_proj'); // [B*T, D]
    return tf.reshape(tf.add(afterAttn, mlpOut), [batch, seqLen, d]) as tf.Tensor3D;
  }

  private attention(x2d: tf.Tensor2D, batch: number, seqLen: number, layer: number): tf.Tensor2D {
    const { nEmbd: d, nHead: heads } = this.config;
    const e = d / heads;
    const qkv = this.linear(x2d, layer, 'attn.c_attn'); // [B*T, 3D]
    const split = (offset: number) =>
      tf.transpose(tf.reshape(tf.slice(qkv, [0, offset], [batch * seqLen, d]), [batch, seqLen, heads, e]), [0, 2, 1, 3]); // [B, H, T, E]
    const q = split(0);
    const k = split(d);
    const v = split(2 * d);
    const mask = tf.slice(this.causalMask, [0, 0], [seqLen, seqLen]);
    const scores = tf.add(tf.mul(matMulT(q, k), 1 / Math.sqrt(e)), mask); // [B, H, T, T]
    const context = tf.matMul(tf.softmax(scores), v); // [B, H, T, E]
    const merged = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [batch * seqLen, d]) as tf.Tensor2D;
    return this.linear(merged, layer, 'attn.c_proj');
  }

  /** x [N, in] → [N, out] through a Conv1D (weight [in, out]) plus its LoRA term (alpha/r)·x·Aᵀ·Bᵀ. */
  private linear(x: tf.Tensor2D, layer: number, module: string): tf.Tensor2D {
    const prefix = `h.${layer}.${module}`;
    let y = tf.add(tf.matMul(x, this.param(`${prefix}.weight`)), this.param(`${prefix}.bias`)) as tf.Tensor2D;
    const pair = this.lora.get(`transformer.${prefix}`);
    if (pair && this.loraConfig) {
      const down = matMulT(x, pair.a); // [N, r]
      y = tf.add(y, tf.mul(matMulT(down, pair.b), loraScale(this.loraConfig))) as tf.Tensor2D;
    }
    return y;
  }

  /** Layer norm over the last axis; scale and shift broadcast (a tiled scale makes a slow gradient). */
  private layerNorm(x: tf.Tensor2D, prefix: string): tf.Tensor2D {
    const { mean, variance } = tf.moments(x, 1, true);
    const normed = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, this.config.layerNormEpsilon)));
    return tf.add(tf.mul(normed, this.param(`${prefix}.weight`)), this.param(`${prefix}.bias`)) as tf.Tensor2D;
  }

  /** GPT-2's tanh approximation of GELU ("gelu_new"). */
  private gelu(x: tf.Tensor2D): tf.Tensor2D {
    const inner = tf.mul(tf.add(x, tf.mul(tf.mul(tf.mul(x, x), x), 0.044715)), Math.sqrt(2 / Math.PI));
    return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(inner))) as tf.Tensor2D;
  }

  /**
   * The tied head h·wteᵀ for a frozen wte, with a gradient for h only (dlogits·wte). wteᵀ is made once: the generic
   * product transposed wte ([V, D], 38.6 M floats for GPT-2 small) on every forward pass, 13–16% of a GPT-2-small
   * step on WASM. Costs one more copy of wte.
   */
  private frozenHead(h: tf.Tensor2D): tf.Tensor2D {
    const wte = this.param('wte.weight');
    this.wteTransposed ??= tf.keep(tf.transpose(wte)) as tf.Tensor2D;
    const wteT = this.wteTransposed;
    return tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => ({
      value: tf.matMul(args[0] as tf.Tensor2D, wteT),
      gradFunc: (dy: tf.Tensor) => tf.matMul(dy as tf.Tensor2D, wte),
    }))(h) as tf.Tensor2D;
  }

  private param(name: string): tf.Variable {
    const p = this.params.get(name);
    if (!p) throw new ModelWeightsError(`Gpt2Model: no parameter '${name}'`);
    return p;
  }

  /** The LoRA factors as a plain Adapter (async reads only). */
  async getAdapter(): Promise<Adapter> {
    if (!this.loraConfig) throw new AdapterMismatchError('getAdapter: no LoRA attached');
    const modules: Adapter['modules'] = new Map();
    for (const name of [...this.lora.keys()].sort()) {
      const { a, b } = this.lora.get(name)!;
      modules.set(name, {
        a: (await a.data()) as Float32Array,
        b: (await b.data()) as Float32Array,
        inDim: a.shape[1] as number,
        outDim: b.shape[0] as number,
      });
    }
    return { baseModelId: this.baseModelId, config: { ...this.loraConfig, targetModules: [...this.loraConfig.targetModules] }, modules };
  }

  /** Loads an adapter's factors into the attached LoRA variables; refuses one of another schema. */
  setAdapter(adapter: Adapter): void {
    if (!this.loraConfig) throw new AdapterMismatchError('setAdapter: no LoRA attached');
    assertAdapterShapes(adapter);
    const expected = this.adapterSchemaHash();
    const got = schemaHash(adapter);
    if (got !== expected) {
      throw new AdapterMismatchError(`setAdapter: adapter schema ${got} (base '${adapter.baseModelId}', r=${adapter.config.r}) differs from the model's ${expected}`);
    }
    // tidy: assign copies the values, so the tensors made from the arrays must be freed (every merge calls this).
    tf.tidy(() => {
      for (const [name, pair] of adapter.modules) {
        const vars = this.lora.get(name)!;
        vars.a.assign(tf.tensor2d(pair.a, vars.a.shape as [number, number]));
        vars.b.assign(tf.tensor2d(pair.b, vars.b.shape as [number, number]));
      }
    });
  }

  /** Schema hash of the attached LoRA, computed from shapes only (no weight reads). */
  adapterSchemaHash(): string {
    if (!this.loraConfig) throw new AdapterMismatchError('adapterSchemaHash: no LoRA attached');
    const modules: Adapter['modules'] = new Map();
    for (const [name, { a, b }] of this.lora) {
      modules.set(name, { a: new Float32Array(0), b: new Float32Array(0), inDim: a.shape[1] as number, outDim: b.shape[0] as number });
    }
    return schemaHash({ baseModelId: this.baseModelId, config: this.loraConfig, modules });
  }

  /** Base weights as plain arrays (for writing a checkpoint after pretraining). */
  async exportBaseWeights(): Promise<BaseWeights> {
    const out: BaseWeights = new Map();
    for (const [name, v] of this.params) out.set(name, { shape: [...v.shape], data: (await v.data()) as Float32Array });
    return out;
  }

  dispose(): void {
    this.detachLora();
    for (const v of this.params.values()) v.dispose();
    this.params.clear();
    this.wteTransposed?.dispose();
    this.wteTransposed = null;
    this.causalMask.dispose();
  }
}

export interface GenerateOptions {
  maxNewTokens: number;
  /** 0 means greedy decoding. */
  temperature?: number;
  /** Sample among the k most likely tokens only (0 = all). */
  topK?: number;
  seed?: number;
}

/** Autoregressive generation; the context is cropped to the model's n_positions. */
export async function generate(model: Gpt2Model, prompt: number[], options: GenerateOptions): Promise<number[]> {
  const { maxNewTokens, temperature = 0, topK = 0 } = options;
  if (prompt.length === 0) throw new RangeError('generate: the prompt needs at least one token');
  const rng = createRng(options.seed ?? 0);
  const ids = [...prompt];
  const v = model.config.vocabSize;
  for (let i = 0; i < maxNewTokens; i++) {
    const context = ids.slice(-model.config.nPositions);
    const last = tf.tidy(() => {
      const logits = model.logits(tf.tensor2d(context, [1, context.length], 'int32'));
      return tf.reshape(tf.slice(logits, [0, context.length - 1, 0], [1, 1, v]), [v]);
    });
    const row = (await last.data()) as Float32Array;
    last.dispose();
    ids.push(temperature <= 0 ? argmax(row) : sampleFrom(row, temperature, topK, rng));
  }
  return ids.slice(prompt.length);
}

function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

function sampleFrom(row: Float32Array, temperature: number, topK: number, rng: () => number): number {
  let order = Array.from(row.keys());
  if (topK > 0 && topK < row.length) order = order.sort((a, b) => row[b] - row[a]).slice(0, topK);
  const max = Math.max(...order.map((i) => row[i]));
  const weights = order.map((i) => Math.exp((row[i] - max) / temperature));
  const total = weights.reduce((a, b) => a + b, 0);
  let u = rng() * total;
  for (let j = 0; j < order.length; j++) {
    u -= weights[j];
    if (u <= 0) return order[j];
  }
  return order[order.length - 1];
}
