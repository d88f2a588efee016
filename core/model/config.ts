/**
 * GPT-2 model configuration, read from and written as a Hugging Face `config.json`.
 * No tfjs here: the checkpoint loader and the CLI use it without a tensor backend.
 */

export interface Gpt2Config {
  /** Embedding width (HF `n_embd`). */
  nEmbd: number;
  /** Number of transformer blocks (HF `n_layer`). */
  nLayer: number;
  /** Attention heads per block (HF `n_head`); must divide nEmbd. */
  nHead: number;
  /** Context length (HF `n_positions`). */
  nPositions: number;
  /** Vocabulary size (HF `vocab_size`); 256 for the byte-level default model. */
  vocabSize: number;
  /** MLP width (HF `n_inner`, null meaning 4 * n_embd). */
  nInner: number;
  /** Layer-norm epsilon (HF `layer_norm_epsilon`). */
  layerNormEpsilon: number;
}

export class ModelConfigError extends Error {
  static override readonly name = 'ModelConfigError';
  override readonly name = ModelConfigError.name;
}

function positiveInt(json: Record<string, unknown>, key: string, fallback?: number): number {
  const value = json[key] ?? fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new ModelConfigError(`config.json: '${key}' must be a positive integer, got ${JSON.stringify(json[key])}`);
  }
  return value;
}

/** Reads an HF GPT-2 `config.json` object (also accepts the older `n_ctx` for the context length). */
export function configFromHf(json: unknown): Gpt2Config {
  if (typeof json !== 'object' || json === null) throw new ModelConfigError('config.json: expected a JSON object');
  const j = json as Record<string, unknown>;
  const nEmbd = positiveInt(j, 'n_embd');
  const nHead = positiveInt(j, 'n_head');
  if (nEmbd % nHead !== 0) throw new ModelConfigError(`config.json: n_embd (${nEmbd}) must be divisible by n_head (${nHead})`);
  const eps = j.layer_norm_epsilon ?? 1e-5;
  if (typeof eps !== 'number' || !(eps > 0)) throw new ModelConfigError(`config.json: 'layer_norm_epsilon' must be > 0, got ${JSON.stringify(eps)}`);
  return {
    nEmbd,
    nLayer: positiveInt(j, 'n_layer'),
    nHead,
    nPositions: positiveInt(j, 'n_positions', j.n_ctx as number | undefined),
    vocabSize: positiveInt(j, 'vocab_size'),
    nInner: j.n_inner == null ? 4 * nEmbd : positiveInt(j, 'n_inner'),
    layerNormEpsilon: eps,
  };
}

/** Writes the config as an HF `config.json` object that transformers' GPT2LMHeadModel loads. */
export function configToHf(config: Gpt2Config, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    architectures: ['GPT2LMHeadModel'],
    model_type: 'gpt2',
    n_embd: config.nEmbd,
    n_layer: config.nLayer,
    n_head: config.nHead,
    n_positions: config.nPositions,
    n_ctx: config.nPositions,
    vocab_size: config.vocabSize,
    n_inner: config.nInner === 4 * config.nEmbd ? null : config.nInner,
    layer_norm_epsilon: config.layerNormEpsilon,
    activation_function: 'gelu_new',
    tie_word_embeddings: true,
    resid_pdrop: 0,
    embd_pdrop: 0,
    attn_pdrop: 0,
    ...extra,
  };
}

/**
 * Every trainable base parameter with its HF name (no `transformer.` prefix) and shape.
 * Conv1D weights are stored [in, out], as in HF GPT-2. The LM head is tied to wte and has no entry.
 */
export function gpt2ParameterShapes(config: Gpt2Config): Map<string, number[]> {
  const { nEmbd: d, nInner: f, vocabSize: v, nPositions: t } = config;
  const shapes = new Map<string, number[]>([
    ['wte.weight', [v, d]],
    ['wpe.weight', [t, d]],
  ]);
  for (let i = 0; i < config.nLayer; i++) {
    const h = `h.${i}`;
    shapes.set(`${h}.ln_1.weight`, [d]);
    shapes.set(`${h}.ln_1.bias`, [d]);
    shapes.set(`${h}.attn.c_attn.weight`, [d, 3 * d]);
    shapes.set(`${h}.attn.c_attn.bias`, [3 * d]);
    shapes.set(`${h}.attn.c_proj.weight`, [d, d]);
    shapes.set(`${h}.attn.c_proj.bias`, [d]);
    shapes.set(`${h}.ln_2.weight`, [d]);
    shapes.set(`${h}.ln_2.bias`, [d]);
    shapes.set(`${h}.mlp.c_fc.weight`, [d, f]);
    shapes.set(`${h}.mlp.c_fc.bias`, [f]);
    shapes.set(`${h}.mlp.c_proj.weight`, [f, d]);
    shapes.set(`${h}.mlp.c_proj.bias`, [d]);
  }
  shapes.set('ln_f.weight', [d]);
  shapes.set('ln_f.bias', [d]);
  return shapes;
}

/** [in, out] of a LoRA-targetable module of block i, keyed by suffix. */
export function loraModuleDims(config: Gpt2Config, target: string): { inDim: number; outDim: number } {
  const { nEmbd: d, nInner: f } = config;
  switch (target) {
    case 'attn.c_attn': return { inDim: d, outDim: 3 * d };
    case 'attn.c_proj': return { inDim: d, outDim: d };
    case 'mlp.c_fc': return { inDim: d, outDim: f };
    case 'mlp.c_proj': return { inDim: f, outDim: d };
    default: throw new ModelConfigError(`unknown LoRA target module '${target}' (known: attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj)`);
  }
}

/** The PEFT name of the LoRA module on `target` of block `layer`. */
export function loraModuleName(layer: number, target: string): string {
  return `transformer.h.${layer}.${target}`;
}

/** Every LoRA module's name and [in, out] for this model and these targets: an adapter's shape without values. */
export function loraModuleShapes(config: Gpt2Config, targetModules: readonly string[]): Map<string, { inDim: number; outDim: number }> {
  const shapes = new Map<string, { inDim: number; outDim: number }>();
  for (let layer = 0; layer < config.nLayer; layer++) for (const target of targetModules) shapes.set(loraModuleName(layer, target), loraModuleDims(config, target));
  return shapes;
}

/** The weights of a base model as plain arrays, keyed like gpt2ParameterShapes. */
export type BaseWeights = Map<string, { shape: number[]; data: Float32Array }>;
