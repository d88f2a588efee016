/**
 * LoRA adapters in Hugging Face PEFT's on-disk format: `adapter_config.json` + `adapter_model.safetensors`.
 *
 * PEFT saves the state dict of its wrapped model with the adapter name removed:
 *   base_model.model.transformer.h.0.attn.c_attn.lora_A.weight   [r, in]
 *   base_model.model.transformer.h.0.attn.c_attn.lora_B.weight   [out, r]
 * GPT-2's Conv1D layers report (in, out) from their [in, out] weight, so the factor shapes are the same as for a
 * Linear layer; `fan_in_fan_out: true` only tells PEFT to transpose ΔW when merging into the Conv1D weight.
 *
 * The exported adapter_config.json carries only long-standing LoraConfig fields, because older PEFT versions refuse
 * unknown keys; Swarm's own bookkeeping (base model id, schema hash) goes into the safetensors `__metadata__`,
 * which PEFT ignores.
 */
import { assertAdapterShapes, LORA_TARGETS, schemaHash, type Adapter, type LoraPair } from '../model/adapter.ts';
import { loraModuleDims, type Gpt2Config } from '../model/config.ts';
import { parseSafetensors, serializeSafetensors, type TensorToWrite } from './safetensors.ts';
import { findDuplicateJsonKey, jsonBytes, utf8DecodeStrict } from './text.ts';
import type { FileSource } from './source.ts';

export const ADAPTER_CONFIG_FILE = 'adapter_config.json';
export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';

export class PeftFormatError extends Error {
  static override readonly name = 'PeftFormatError';
  override readonly name = PeftFormatError.name;
  constructor(message: string, /** The tensor key or config field at fault, when there is one. */ readonly key?: string) {
    super(message);
  }
}

/** A type alias (not an interface) so it can be passed where Record<string, Uint8Array> is expected. */
export type PeftFiles = {
  'adapter_config.json': Uint8Array;
  'adapter_model.safetensors': Uint8Array;
};

/** Ranks Swarm can carry on the wire (core/wire MAX_LORA_RANK); a larger one is refused on import. */
export const MAX_PEFT_RANK = 1024;
/**
 * Largest lora_alpha accepted (after rsLoRA's ·√r). ΔW is scaled by alpha/r; PEFT's defaults and published
 * recipes use alpha between r/2 and 4r, so 16 × the largest rank leaves room for any real adapter while 1e308
 * (which makes every product overflow) is refused.
 */
export const MAX_PEFT_ALPHA = 16 * MAX_PEFT_RANK;
/** adapter_model.safetensors headers: ~150 bytes per tensor; 1 MiB holds ~7,000, 18× GPT-2 xl on all targets. */
export const MAX_PEFT_HEADER_BYTES = 1024 * 1024;

const KEY_PREFIX = 'base_model.model.';
const MODULE_PATTERN = new RegExp(`^(?:transformer\\.)?h\\.(\\d+)\\.(${LORA_TARGETS.map((t) => t.replace('.', '\\.')).join('|')})$`);
/** `<module>.lora_A.weight` or `<module>.lora_A.<adapter name>.weight`, optionally under `base_model.model.`. */
const KEY_PATTERN = /^(?:base_model\.model\.)?(.+)\.(lora_A|lora_B)(?:\.([A-Za-z0-9_-]+))?\.weight$/;

/** `h.3.attn.c_attn` or `transformer.h.3.attn.c_attn` → `transformer.h.3.attn.c_attn`; null for anything else. */
export function canonicalModuleName(name: string): string | null {
  const match = MODULE_PATTERN.exec(name);
  return match ? `transformer.h.${Number(match[1])}.${match[2]}` : null;
}

function targetSuffix(canonicalName: string): string {
  return canonicalName.split('.').slice(-2).join('.');
}

export function exportPeft(adapter: Adapter, options: { baseModelNameOrPath?: string } = {}): PeftFiles {
  assertAdapterShapes(adapter);
  const { r, alpha, targetModules } = adapter.config;
  const tensors = new Map<string, TensorToWrite>();
  for (const [name, pair] of adapter.modules) {
    const canonical = canonicalModuleName(name);
    if (!canonical) throw new PeftFormatError(`adapter module '${name}' is not a LoRA-targetable GPT-2 module`, name);
    tensors.set(`${KEY_PREFIX}${canonical}.lora_A.weight`, { shape: [r, pair.inDim], data: pair.a });
    tensors.set(`${KEY_PREFIX}${canonical}.lora_B.weight`, { shape: [pair.outDim, r], data: pair.b });
  }
  const config = {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: options.baseModelNameOrPath ?? adapter.baseModelId,
    revision: null,
    r,
    lora_alpha: alpha,
    lora_dropout: 0,
    target_modules: [...targetModules],
    fan_in_fan_out: true,
    bias: 'none',
    modules_to_save: null,
    init_lora_weights: true,
    inference_mode: true,
  };
  const metadata = { format: 'pt', 'swarm.base_model_id': adapter.baseModelId, 'swarm.schema_hash': schemaHash(adapter) };
  return { 'adapter_config.json': jsonBytes(config), 'adapter_model.safetensors': serializeSafetensors(tensors, metadata) };
}

interface PeftConfigFields {
  r: number;
  alpha: number;
}

function readConfig(raw: unknown): PeftConfigFields {
  let config = raw;
  let text: string | undefined;
  if (typeof raw === 'string') {
    try {
      text = raw;
      config = JSON.parse(raw);
    } catch (error) {
      throw new PeftFormatError(`${ADAPTER_CONFIG_FILE} is not valid JSON: ${(error as Error).message}`);
    }
  } else if (raw instanceof Uint8Array) {
    try {
      text = utf8DecodeStrict(raw);
      config = JSON.parse(text);
    } catch (error) {
      throw new PeftFormatError(`${ADAPTER_CONFIG_FILE} is not valid UTF-8 JSON: ${(error as Error).message}`);
    }
  }
  const duplicate = text === undefined ? null : findDuplicateJsonKey(text);
  if (duplicate !== null) throw new PeftFormatError(`${ADAPTER_CONFIG_FILE} sets '${duplicate}' twice; which value is meant cannot be told`, duplicate);
  if (typeof config !== 'object' || config === null || Array.isArray(config)) throw new PeftFormatError(`${ADAPTER_CONFIG_FILE} must be a JSON object`);
  const c = config as Record<string, unknown>;
  if (c.peft_type !== undefined && c.peft_type !== 'LORA') {
    throw new PeftFormatError(`${ADAPTER_CONFIG_FILE}: peft_type is ${JSON.stringify(c.peft_type)}; only LORA adapters can be imported`, 'peft_type');
  }
  // PEFT's LoraConfig defaults: r = 8, lora_alpha = 8.
  const r = c.r ?? 8;
  if (typeof r !== 'number' || !Number.isInteger(r) || r < 1 || r > MAX_PEFT_RANK) {
    throw new PeftFormatError(`${ADAPTER_CONFIG_FILE}: r must be a whole number from 1 to ${MAX_PEFT_RANK}, got ${JSON.stringify(c.r)}`, 'r');
  }
  const alpha = c.lora_alpha ?? 8;
  if (typeof alpha !== 'number' || !Number.isFinite(alpha)) throw new PeftFormatError(`${ADAPTER_CONFIG_FILE}: lora_alpha must be a number, got ${JSON.stringify(c.lora_alpha)}`, 'lora_alpha');
  if (!(alpha > 0) || alpha > MAX_PEFT_ALPHA) {
    throw new PeftFormatError(`${ADAPTER_CONFIG_FILE}: lora_alpha must be > 0 and at most ${MAX_PEFT_ALPHA}, got ${alpha}`, 'lora_alpha');
  }
  for (const field of ['rank_pattern', 'alpha_pattern'] as const) {
    const pattern = c[field];
    if (pattern != null && (typeof pattern !== 'object' || Object.keys(pattern).length > 0)) {
      throw new PeftFormatError(`${ADAPTER_CONFIG_FILE}: per-module ${field} is not supported (one rank and alpha for all modules)`, field);
    }
  }
  if (c.use_dora === true) throw new PeftFormatError(`${ADAPTER_CONFIG_FILE}: DoRA adapters (use_dora) are not supported`, 'use_dora');
  if (c.bias !== undefined && c.bias !== 'none') {
    throw new PeftFormatError(`${ADAPTER_CONFIG_FILE}: bias ${JSON.stringify(c.bias)} trains base biases; only bias "none" is supported`, 'bias');
  }
  if (Array.isArray(c.modules_to_save) && c.modules_to_save.length > 0) {
    throw new PeftFormatError(`${ADAPTER_CONFIG_FILE}: modules_to_save (${c.modules_to_save.join(', ')}) is not supported`, 'modules_to_save');
  }
  // fan_in_fan_out is not checked: PEFT forces it on for Conv1D and the factor shapes do not depend on it.
  // rsLoRA scales by alpha/sqrt(r); express it as Swarm's alpha/r scaling with an equivalent alpha.
  const effectiveAlpha = c.use_rslora === true ? alpha * Math.sqrt(r) : alpha;
  if (effectiveAlpha > MAX_PEFT_ALPHA) {
    throw new PeftFormatError(`${ADAPTER_CONFIG_FILE}: rsLoRA lora_alpha·√r = ${effectiveAlpha} exceeds ${MAX_PEFT_ALPHA}`, 'lora_alpha');
  }
  return { r, alpha: effectiveAlpha };
}

export interface ImportPeftOptions {
  /** When given, every module's dimensions are checked against this base model. */
  modelConfig?: Gpt2Config;
}

/**
 * Reads a PEFT LoRA adapter for a GPT-2 base. The adapter's targetModules are the suffixes its tensors actually
 * cover (PEFT's own target_modules may be short names like `c_proj` or a regex, which say less).
 */
export function importPeft(
  /** adapterConfig: the parsed JSON object, its text, or its bytes. */
  files: { adapterConfig: unknown; safetensors: Uint8Array },
  baseModelId: string,
  options: ImportPeftOptions = {},
): Adapter {
  const { r, alpha } = readConfig(files.adapterConfig);
  // Truncation, header and dtype errors surface under their own safetensors names.
  const parsed = parseSafetensors(files.safetensors, { fileName: ADAPTER_WEIGHTS_FILE, maxHeaderBytes: MAX_PEFT_HEADER_BYTES });

  const halves = new Map<string, { a?: { key: string; shape: number[]; data: Float32Array }; b?: { key: string; shape: number[]; data: Float32Array } }>();
  let adapterName: string | undefined;
  for (const [key, tensor] of parsed.tensors) {
    const match = KEY_PATTERN.exec(key);
    if (!match) throw new PeftFormatError(`${ADAPTER_WEIGHTS_FILE}: '${key}' is not a LoRA factor (expected <module>.lora_A.weight / lora_B.weight)`, key);
    const [, moduleName, which, name] = match;
    const segment = name ?? '';
    if (adapterName === undefined) adapterName = segment;
    else if (adapterName !== segment) {
      throw new PeftFormatError(`${ADAPTER_WEIGHTS_FILE}: '${key}' belongs to adapter '${segment}' but the file also holds '${adapterName}'; import one adapter at a time`, key);
    }
    const canonical = canonicalModuleName(moduleName);
    if (!canonical) throw new PeftFormatError(`${ADAPTER_WEIGHTS_FILE}: '${key}' targets '${moduleName}', which is not a LoRA-targetable GPT-2 module`, key);
    for (let i = 0; i < tensor.data.length; i++) {
      const v = tensor.data[i];
      if (v - v !== 0) throw new PeftFormatError(`${ADAPTER_WEIGHTS_FILE}: '${key}'[${i}] is ${v}; an adapter with NaN or Infinity cannot be used`, key);
    }
    const entry = halves.get(canonical) ?? {};
    const side = which === 'lora_A' ? 'a' : 'b';
    if (entry[side]) throw new PeftFormatError(`${ADAPTER_WEIGHTS_FILE}: '${key}' duplicates '${entry[side]!.key}'`, key);
    entry[side] = { key, shape: tensor.shape, data: tensor.data };
    halves.set(canonical, entry);
  }
  if (halves.size === 0) throw new PeftFormatError(`${ADAPTER_WEIGHTS_FILE} holds no LoRA factors`);

  const modules = new Map<string, LoraPair>();
  const suffixes = new Set<string>();
  for (const name of [...halves.keys()].sort()) {
    const { a, b } = halves.get(name)!;
    if (!a) throw new PeftFormatError(`${ADAPTER_WEIGHTS_FILE}: '${b!.key}' has no matching lora_A`, b!.key);
    if (!b) throw new PeftFormatError(`${ADAPTER_WEIGHTS_FILE}: '${a.key}' has no matching lora_B`, a.key);
    if (a.shape.length !== 2) throw new PeftFormatError(`${ADAPTER_WEIGHTS_FILE}: '${a.key}' must be 2-D [r, in], got [${a.shape}]`, a.key);
    if (b.shape.length !== 2) throw new PeftFormatError(`${ADAPTER_WEIGHTS_FILE}: '${b.key}' must be 2-D [out, r], got [${b.shape}]`, b.key);
    const [rankA, inDim] = a.shape;
    const [outDim, rankB] = b.shape;
    if (rankA !== r) throw new PeftFormatError(`${ADAPTER_WEIGHTS_FILE}: '${a.key}' has rank ${rankA} but ${ADAPTER_CONFIG_FILE} says r = ${r}`, a.key);
    if (rankB !== r) throw new PeftFormatError(`${ADAPTER_WEIGHTS_FILE}: '${b.key}' has rank ${rankB} but ${ADAPTER_CONFIG_FILE} says r = ${r}`, b.key);
    const suffix = targetSuffix(name);
    if (options.modelConfig) {
      const dims = loraModuleDims(options.modelConfig, suffix);
      if (dims.inDim !== inDim || dims.outDim !== outDim) {
        throw new PeftFormatError(
          `${ADAPTER_WEIGHTS_FILE}: ${name} is [out ${outDim}, in ${inDim}] but the base model's is [out ${dims.outDim}, in ${dims.inDim}]`,
          a.key,
        );
      }
      const layer = Number(name.split('.')[2]);
      if (layer >= options.modelConfig.nLayer) {
        throw new PeftFormatError(`${ADAPTER_WEIGHTS_FILE}: '${a.key}' targets layer ${layer} but the base model has ${options.modelConfig.nLayer}`, a.key);
      }
    }
    suffixes.add(suffix);
    modules.set(name, { a: a.data, b: b.data, inDim, outDim });
  }

  const adapter: Adapter = {
    baseModelId,
    config: { r, alpha, targetModules: LORA_TARGETS.filter((t) => suffixes.has(t)) },
    modules,
  };
  assertAdapterShapes(adapter);
  return adapter;
}

/** Reads `adapter_config.json` and `adapter_model.safetensors` from a source (URL, picked files, directory). */
export async function loadPeftAdapter(source: FileSource, baseModelId: string, options: ImportPeftOptions = {}): Promise<Adapter> {
  const [adapterConfig, safetensors] = await Promise.all([source.read(ADAPTER_CONFIG_FILE), source.read(ADAPTER_WEIGHTS_FILE)]);
  return importPeft({ adapterConfig, safetensors }, baseModelId, options);
}
