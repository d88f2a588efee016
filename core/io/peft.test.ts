import { describe, expect, it } from 'vitest';
import type { Adapter } from '../model/adapter.ts';
import { canonicalModuleName, exportPeft, importPeft, loadPeftAdapter, MAX_PEFT_ALPHA, PeftFormatError } from './peft.ts';
import { filesSource } from './source.ts';
import { parseSafetensors, serializeSafetensors, type TensorToWrite } from './safetensors.ts';

function filled(n: number, f: (i: number) => number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => f(i));
}

/** r = 2 adapter on a d = 4, n_inner = 16 model: c_attn of block 0 ([in 4, out 12]) and mlp.c_proj of block 1 ([in 16, out 4]). */
function sampleAdapter(): Adapter {
  return {
    baseModelId: 'swarm/tiny-test',
    config: { r: 2, alpha: 4, targetModules: ['attn.c_attn', 'mlp.c_proj'] },
    modules: new Map([
      ['transformer.h.0.attn.c_attn', { a: filled(8, (i) => Math.sin(i + 1) / 3), b: filled(24, (i) => Math.cos(i) * 1e-3), inDim: 4, outDim: 12 }],
      ['transformer.h.1.mlp.c_proj', { a: filled(32, (i) => (i - 16) / 7), b: filled(8, (i) => 1 / (i + 3)), inDim: 16, outDim: 4 }],
    ]),
  };
}

const bits = (x: Float32Array) => [...new Uint32Array(x.buffer, x.byteOffset, x.length)];

describe('exportPeft', () => {
  it('writes PEFT key names, [r, in]/[out, r] shapes and a LoRA adapter_config.json', () => {
    const files = exportPeft(sampleAdapter(), { baseModelNameOrPath: 'public/models/swarm-tiny' });
    const parsed = parseSafetensors(files['adapter_model.safetensors']);
    const shapes = Object.fromEntries([...parsed.tensors].map(([k, t]) => [k, t.shape]));
    expect(shapes).toEqual({
      'base_model.model.transformer.h.0.attn.c_attn.lora_A.weight': [2, 4],
      'base_model.model.transformer.h.0.attn.c_attn.lora_B.weight': [12, 2],
      'base_model.model.transformer.h.1.mlp.c_proj.lora_A.weight': [2, 16],
      'base_model.model.transformer.h.1.mlp.c_proj.lora_B.weight': [4, 2],
    });
    expect(parsed.metadata.format).toBe('pt');
    expect(parsed.metadata['swarm.base_model_id']).toBe('swarm/tiny-test');
    const config = JSON.parse(Buffer.from(files['adapter_config.json']).toString('utf8'));
    expect(config).toMatchObject({
      peft_type: 'LORA',
      task_type: 'CAUSAL_LM',
      r: 2,
      lora_alpha: 4,
      target_modules: ['attn.c_attn', 'mlp.c_proj'],
      fan_in_fan_out: true,
      lora_dropout: 0,
      bias: 'none',
      base_model_name_or_path: 'public/models/swarm-tiny',
      inference_mode: true,
    });
  });

  it('round-trips through importPeft bit-exactly', () => {
    const original = sampleAdapter();
    // Include awkward bit patterns: a denormal, a negative zero and the largest finite float.
    original.modules.get('transformer.h.0.attn.c_attn')!.a.set([1e-40, -0, 3.4028234663852886e38], 0);
    const files = exportPeft(original);
    const back = importPeft({ adapterConfig: Buffer.from(files['adapter_config.json']).toString('utf8'), safetensors: files['adapter_model.safetensors'] }, 'swarm/tiny-test');
    expect(back.baseModelId).toBe('swarm/tiny-test');
    expect(back.config).toEqual(original.config);
    expect([...back.modules.keys()].sort()).toEqual([...original.modules.keys()].sort());
    for (const [name, pair] of original.modules) {
      const got = back.modules.get(name)!;
      expect(got.inDim).toBe(pair.inDim);
      expect(got.outDim).toBe(pair.outDim);
      expect(bits(got.a)).toEqual(bits(pair.a));
      expect(bits(got.b)).toEqual(bits(pair.b));
    }
  });
});

describe('loadPeftAdapter', () => {
  it('reads the two PEFT files from a source (config as bytes)', async () => {
    const files = exportPeft(sampleAdapter());
    const adapter = await loadPeftAdapter(filesSource(new Map(Object.entries(files))), 'swarm/tiny-test');
    expect(bits(adapter.modules.get('transformer.h.1.mlp.c_proj')!.b)).toEqual(bits(sampleAdapter().modules.get('transformer.h.1.mlp.c_proj')!.b));
    expect(adapter.config.alpha).toBe(4);
  });
});

describe('importPeft of PEFT-produced key forms', () => {
  const config = { peft_type: 'LORA', r: 1, lora_alpha: 2, target_modules: ['c_attn'], task_type: 'CAUSAL_LM', fan_in_fan_out: true };

  it('accepts the `.default.` adapter-name segment and F16 tensors', () => {
    const tensors = new Map<string, TensorToWrite>([
      ['base_model.model.transformer.h.2.attn.c_attn.lora_A.default.weight', { dtype: 'F16', shape: [1, 4], data: new Float32Array([0.5, -0.25, 1, 2]) }],
      ['base_model.model.transformer.h.2.attn.c_attn.lora_B.default.weight', { dtype: 'F16', shape: [12, 1], data: filled(12, (i) => i / 8) }],
    ]);
    const adapter = importPeft({ adapterConfig: config, safetensors: serializeSafetensors(tensors) }, 'gpt2');
    expect([...adapter.modules.keys()]).toEqual(['transformer.h.2.attn.c_attn']);
    const pair = adapter.modules.get('transformer.h.2.attn.c_attn')!;
    expect([...pair.a]).toEqual([0.5, -0.25, 1, 2]);
    expect([...pair.b]).toEqual([0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1, 1.125, 1.25, 1.375]);
    expect(pair.inDim).toBe(4);
    expect(pair.outDim).toBe(12);
    expect(adapter.config).toEqual({ r: 1, alpha: 2, targetModules: ['attn.c_attn'] });
  });

  it('accepts module names without `transformer.` (adapters trained on GPT2Model) and the bare form', () => {
    const tensors = new Map<string, TensorToWrite>([
      ['base_model.model.h.0.mlp.c_fc.lora_A.weight', { shape: [1, 4], data: new Float32Array(4).fill(1) }],
      ['base_model.model.h.0.mlp.c_fc.lora_B.weight', { shape: [16, 1], data: new Float32Array(16) }],
      ['h.1.attn.c_proj.lora_A.weight', { shape: [1, 4], data: new Float32Array(4) }],
      ['h.1.attn.c_proj.lora_B.weight', { shape: [4, 1], data: new Float32Array(4) }],
    ]);
    const adapter = importPeft({ adapterConfig: config, safetensors: serializeSafetensors(tensors) }, 'gpt2');
    expect([...adapter.modules.keys()].sort()).toEqual(['transformer.h.0.mlp.c_fc', 'transformer.h.1.attn.c_proj']);
    expect(adapter.config.targetModules).toEqual(['attn.c_proj', 'mlp.c_fc']);
  });

  it('turns rsLoRA scaling alpha/sqrt(r) into the equivalent alpha for alpha/r scaling', () => {
    const tensors = new Map<string, TensorToWrite>([
      ['base_model.model.transformer.h.0.attn.c_attn.lora_A.weight', { shape: [4, 4], data: new Float32Array(16) }],
      ['base_model.model.transformer.h.0.attn.c_attn.lora_B.weight', { shape: [12, 4], data: new Float32Array(48) }],
    ]);
    const adapter = importPeft({ adapterConfig: { peft_type: 'LORA', r: 4, lora_alpha: 3, use_rslora: true }, safetensors: serializeSafetensors(tensors) }, 'gpt2');
    // rsLoRA scale 3/sqrt(4) = 1.5 must equal alpha/r → alpha = 6.
    expect(adapter.config.alpha).toBe(6);
  });
});

describe('PeftFormatError', () => {
  const config = { peft_type: 'LORA', r: 2, lora_alpha: 4 };
  const A = 'base_model.model.transformer.h.0.attn.c_attn.lora_A.weight';
  const B = 'base_model.model.transformer.h.0.attn.c_attn.lora_B.weight';
  const a: TensorToWrite = { shape: [2, 4], data: new Float32Array(8) };
  const b: TensorToWrite = { shape: [12, 2], data: new Float32Array(24) };

  function importError(adapterConfig: unknown, tensors: Record<string, TensorToWrite>, options = {}): PeftFormatError {
    try {
      importPeft({ adapterConfig, safetensors: serializeSafetensors(tensors) }, 'gpt2', options);
    } catch (error) {
      expect(error).toBeInstanceOf(PeftFormatError);
      expect((error as Error).name).toBe('PeftFormatError');
      return error as PeftFormatError;
    }
    throw new Error('expected a PeftFormatError');
  }

  it('names the key of a half-missing pair', () => {
    expect(importError(config, { [A]: a }).key).toBe(A);
    expect(importError(config, { [A]: a }).message).toMatch(/no matching lora_B/);
    expect(importError(config, { [B]: b }).key).toBe(B);
  });

  it('names the key whose rank disagrees with the config', () => {
    const e = importError({ ...config, r: 3 }, { [A]: a, [B]: b });
    expect(e.key).toBe(A);
    expect(e.message).toMatch(/rank 2 .* r = 3/);
    const mixed = importError(config, { [A]: a, [B]: { shape: [12, 3], data: new Float32Array(36) } });
    expect(mixed.key).toBe(B);
  });

  it('names an unknown module and a non-LoRA key', () => {
    const q = 'base_model.model.transformer.h.0.attn.q_proj.lora_A.weight';
    expect(importError(config, { [q]: a }).key).toBe(q);
    const bias = 'base_model.model.transformer.h.0.attn.c_attn.bias';
    expect(importError(config, { [A]: a, [B]: b, [bias]: { shape: [12], data: new Float32Array(12) } }).key).toBe(bias);
  });

  it('refuses bad configs: not JSON, not LoRA, per-module ranks, DoRA', () => {
    expect(importError('{r: 2', { [A]: a, [B]: b }).message).toMatch(/not valid JSON/);
    expect(importError({ peft_type: 'IA3' }, { [A]: a, [B]: b }).key).toBe('peft_type');
    expect(importError({ ...config, rank_pattern: { c_attn: 4 } }, { [A]: a, [B]: b }).key).toBe('rank_pattern');
    expect(importError({ ...config, use_dora: true }, { [A]: a, [B]: b }).key).toBe('use_dora');
    expect(importError({ ...config, r: 0 }, { [A]: a, [B]: b }).key).toBe('r');
  });

  it('refuses two adapter names in one file, and dims that disagree with the base model', () => {
    const other = 'base_model.model.transformer.h.0.attn.c_attn.lora_B.other.weight';
    const mixed = importError(config, { ['base_model.model.transformer.h.0.attn.c_attn.lora_A.default.weight']: a, [other]: b });
    expect(mixed.message).toMatch(/import one adapter at a time/);
    const modelConfig = { nEmbd: 8, nLayer: 1, nHead: 2, nPositions: 8, vocabSize: 10, nInner: 32, layerNormEpsilon: 1e-5 };
    expect(importError(config, { [A]: a, [B]: b }, { modelConfig }).message).toMatch(/\[out 12, in 4\] but the base model's is \[out 24, in 8\]/);
  });
});

describe('canonicalModuleName', () => {
  it('normalises to transformer.h.N.<target> and rejects other modules', () => {
    expect(canonicalModuleName('h.07.attn.c_attn')).toBe('transformer.h.7.attn.c_attn');
    expect(canonicalModuleName('transformer.h.3.mlp.c_proj')).toBe('transformer.h.3.mlp.c_proj');
    expect(canonicalModuleName('transformer.h.3.c_proj')).toBeNull();
    expect(canonicalModuleName('transformer.wte')).toBeNull();
  });
});

describe('importPeft refuses hostile values (issue 12)', () => {
  const files = exportPeft(sampleAdapter());
  const config = JSON.parse(Buffer.from(files['adapter_config.json']).toString('utf8'));
  const importWith = (overrides: Record<string, unknown>, weights = files['adapter_model.safetensors']) =>
    () => importPeft({ adapterConfig: { ...config, ...overrides }, safetensors: weights }, 'swarm/tiny-test');

  it('refuses NaN and Infinity in a tensor, naming the key and index', () => {
    for (const bad of [NaN, Infinity, -Infinity]) {
      const adapter = sampleAdapter();
      adapter.modules.get('transformer.h.1.mlp.c_proj')!.b[5] = bad;
      const tensors = new Map<string, TensorToWrite>();
      for (const [name, p] of adapter.modules) {
        tensors.set(`base_model.model.${name}.lora_A.weight`, { shape: [2, p.inDim], data: p.a });
        tensors.set(`base_model.model.${name}.lora_B.weight`, { shape: [p.outDim, 2], data: p.b });
      }
      const weights = serializeSafetensors(tensors);
      expect(importWith({}, weights)).toThrow(PeftFormatError);
      expect(importWith({}, weights)).toThrow(`'base_model.model.transformer.h.1.mlp.c_proj.lora_B.weight'[5] is ${bad}`);
    }
  });

  it('refuses lora_alpha <= 0, beyond the stated bound, and rsLoRA alpha·√r beyond it', () => {
    expect(MAX_PEFT_ALPHA).toBe(16384);
    for (const alpha of [0, -4, 1e308, 16385]) expect(importWith({ lora_alpha: alpha })).toThrow(/lora_alpha must be > 0 and at most 16384/);
    expect(importWith({ lora_alpha: 16384 })).not.toThrow();
    // r = 2: 12000·√2 ≈ 16971 > 16384.
    expect(importWith({ lora_alpha: 12000, use_rslora: true })).toThrow(/rsLoRA lora_alpha·√r = 16970\.56/);
  });

  it('refuses a rank outside 1..1024', () => {
    for (const r of [0, 1025, 2.5]) expect(importWith({ r })).toThrow(/r must be a whole number from 1 to 1024/);
  });

  it('refuses a config that sets a field twice (JSON.parse would keep the last)', () => {
    const text = Buffer.from(files['adapter_config.json']).toString('utf8').replace('"r": 2,', '"r": 2,\n  "r": 64,');
    expect(text).toContain('"r": 64');
    expect(() => importPeft({ adapterConfig: text, safetensors: files['adapter_model.safetensors'] }, 'x')).toThrow(/sets 'r' twice/);
  });

  it('refuses a weights file whose header exceeds 1 MiB, before decoding it', () => {
    const big = new Uint8Array(8 + 1024 * 1024 + 8).fill(0x20);
    new DataView(big.buffer).setBigUint64(0, BigInt(1024 * 1024 + 8), true);
    big[8] = 0x7b;
    big[9] = 0x7d;
    expect(importWith({}, big)).toThrow(/exceeds the 1048576-byte limit/);
  });
});
