/**
 * Hugging Face GPT-2 checkpoints: `config.json` + `model.safetensors`, loaded into plain arrays and written back
 * in the layout transformers' GPT2LMHeadModel saves (`transformer.` prefix, tied lm_head omitted, F32).
 *
 * Accepted key forms: with the `transformer.` prefix (saved from GPT2LMHeadModel, e.g. our own checkpoints) and
 * without it (saved from GPT2Model, e.g. openai-community/gpt2). GPT-2's causal-mask buffers
 * (`attn.bias`, `attn.masked_bias`) are ignored.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import { configFromHf, configToHf, gpt2ParameterShapes, ModelConfigError, type BaseWeights, type Gpt2Config } from '../model/config.ts';
import { parseSafetensors, serializeSafetensors, type DecodedTensor, type TensorToWrite } from './safetensors.ts';
import { jsonBytes, utf8DecodeStrict } from './text.ts';
import type { FileSource } from './source.ts';

export const CONFIG_FILE = 'config.json';
export const WEIGHTS_FILE = 'model.safetensors';

export class MissingTensorError extends Error {
  static override readonly name = 'MissingTensorError';
  override readonly name = MissingTensorError.name;
  constructor(readonly tensorName: string, readonly fileName: string) {
    super(`${fileName} has no tensor '${tensorName}' (looked for '${tensorName}' and 'transformer.${tensorName}')`);
  }
}

export class TensorShapeError extends Error {
  static override readonly name = 'TensorShapeError';
  override readonly name = TensorShapeError.name;
  constructor(readonly tensorName: string, readonly expected: number[], readonly got: number[], fileName?: string) {
    super(`${fileName ? fileName + ': ' : ''}tensor '${tensorName}' has shape [${got.join(', ')}], expected [${expected.join(', ')}]`);
  }
}

/** The checkpoint has an lm_head.weight that differs from wte; this GPT-2 implementation ties them. */
export class UntiedLmHeadError extends Error {
  static override readonly name = 'UntiedLmHeadError';
  override readonly name = UntiedLmHeadError.name;
}

export interface LoadedCheckpoint {
  config: Gpt2Config;
  weights: BaseWeights;
  /** config.json as parsed, for fields Swarm does not model (tokenizer ids, model card hints...). */
  configJson: Record<string, unknown>;
  /** Dtype each tensor had in the file (weights are always float32 in memory). */
  storedDtypes: Map<string, string>;
  /** Tensors in the file that are neither GPT-2 parameters nor its mask buffers, skipped (e.g. a classifier head). */
  ignoredTensors: string[];
  /** Hex SHA-256 of model.safetensors, when asked for with `{ sha256: true }`. */
  weightsSha256?: string;
}

const PREFIX = 'transformer.';
const MASK_BUFFER = /(^|\.)attn\.(bias|masked_bias)$/;

function sameShape(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function parseConfigJson(bytes: Uint8Array, where: string): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(utf8DecodeStrict(bytes));
  } catch (error) {
    throw new ModelConfigError(`${where}/${CONFIG_FILE} is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new ModelConfigError(`${where}/${CONFIG_FILE} must hold a JSON object`);
  return json as Record<string, unknown>;
}

export async function loadHfCheckpoint(source: FileSource, options: { sha256?: boolean } = {}): Promise<LoadedCheckpoint> {
  const [configBytes, weightBytes] = await Promise.all([source.read(CONFIG_FILE), source.read(WEIGHTS_FILE)]);
  const configJson = parseConfigJson(configBytes, source.describe);
  const config = configFromHf(configJson);
  const expected = gpt2ParameterShapes(config);
  const fileName = `${source.describe.replace(/\/+$/, '')}/${WEIGHTS_FILE}`;

  const bareName = (name: string) => (name.startsWith(PREFIX) ? name.slice(PREFIX.length) : name);
  const parsed = parseSafetensors(weightBytes, {
    fileName,
    include: (name) => expected.has(bareName(name)) || name === 'lm_head.weight',
  });

  const weights: BaseWeights = new Map();
  const storedDtypes = new Map<string, string>();
  for (const [name, shape] of expected) {
    const tensor: DecodedTensor | undefined = parsed.tensors.get(PREFIX + name) ?? parsed.tensors.get(name);
    if (!tensor) throw new MissingTensorError(name, fileName);
    if (!sameShape(tensor.shape, shape)) throw new TensorShapeError(name, shape, tensor.shape, fileName);
    weights.set(name, { shape: [...shape], data: tensor.data });
    storedDtypes.set(name, tensor.dtype);
  }

  const lmHead = parsed.tensors.get('lm_head.weight');
  if (lmHead) {
    const wte = weights.get('wte.weight')!;
    if (!sameShape(lmHead.shape, wte.shape)) throw new TensorShapeError('lm_head.weight', wte.shape, lmHead.shape, fileName);
    for (let i = 0; i < wte.data.length; i++) {
      if (lmHead.data[i] !== wte.data[i] && !(Number.isNaN(lmHead.data[i]) && Number.isNaN(wte.data[i]))) {
        throw new UntiedLmHeadError(
          `${fileName}: lm_head.weight differs from wte.weight (first at index ${i}); only GPT-2 checkpoints with tied embeddings are supported`,
        );
      }
    }
  }

  const ignoredTensors = parsed.skipped.filter((name) => !isMaskBuffer(name));

  return {
    config,
    weights,
    configJson,
    storedDtypes,
    ignoredTensors,
    weightsSha256: options.sha256 ? bytesToHex(sha256(weightBytes)) : undefined,
  };
}

/** True for GPT-2's causal-mask buffers, which checkpoints may carry and the loader ignores. */
export function isMaskBuffer(name: string): boolean {
  return MASK_BUFFER.test(name);
}

/** A type alias (not an interface) so it can be passed where Record<string, Uint8Array> is expected. */
export type CheckpointFiles = {
  'config.json': Uint8Array;
  'model.safetensors': Uint8Array;
};

/**
 * Writes a checkpoint transformers' GPT2LMHeadModel.from_pretrained loads: `transformer.`-prefixed F32 tensors,
 * the tied lm_head left out (transformers re-ties it), `format: pt` metadata (transformers checks it).
 */
export function saveHfCheckpoint(config: Gpt2Config, weights: BaseWeights, extraConfig: Record<string, unknown> = {}): CheckpointFiles {
  const expected = gpt2ParameterShapes(config);
  const tensors = new Map<string, TensorToWrite>();
  for (const [name, shape] of expected) {
    const w = weights.get(name);
    if (!w) throw new MissingTensorError(name, 'the weights to save');
    if (!sameShape(w.shape, shape)) throw new TensorShapeError(name, shape, w.shape, 'the weights to save');
    if (w.data.length !== shape.reduce((a, b) => a * b, 1)) {
      throw new TensorShapeError(name, shape, [w.data.length], 'the weights to save (data length)');
    }
    tensors.set(PREFIX + name, { dtype: 'F32', shape, data: w.data });
  }
  return {
    'config.json': jsonBytes(configToHf(config, extraConfig)),
    'model.safetensors': serializeSafetensors(tensors, { format: 'pt' }),
  };
}
