import { createServer, type Server } from 'node:http';
import { createRng } from '../util/random.ts';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BaseWeights, Gpt2Config } from '../model/config.ts';
import { loadHfCheckpoint, MissingTensorError, saveHfCheckpoint, TensorShapeError, UntiedLmHeadError } from './hf-checkpoint.ts';
import { parseSafetensors, SafetensorsTruncatedError, serializeSafetensors, UnsupportedDtypeError, type TensorToWrite } from './safetensors.ts';
import { CheckpointFetchError, filesSource, urlSource, type FetchLike } from './source.ts';

const config: Gpt2Config = { nEmbd: 4, nLayer: 2, nHead: 2, nPositions: 8, vocabSize: 10, nInner: 16, layerNormEpsilon: 1e-5 };

/** The parameter list written out by hand from the GPT-2 layout, independent of gpt2ParameterShapes. */
function handWrittenShapes(): [string, number[]][] {
  const list: [string, number[]][] = [['wte.weight', [10, 4]], ['wpe.weight', [8, 4]]];
  for (const i of [0, 1]) {
    list.push(
      [`h.${i}.ln_1.weight`, [4]], [`h.${i}.ln_1.bias`, [4]],
      [`h.${i}.attn.c_attn.weight`, [4, 12]], [`h.${i}.attn.c_attn.bias`, [12]],
      [`h.${i}.attn.c_proj.weight`, [4, 4]], [`h.${i}.attn.c_proj.bias`, [4]],
      [`h.${i}.ln_2.weight`, [4]], [`h.${i}.ln_2.bias`, [4]],
      [`h.${i}.mlp.c_fc.weight`, [4, 16]], [`h.${i}.mlp.c_fc.bias`, [16]],
      [`h.${i}.mlp.c_proj.weight`, [16, 4]], [`h.${i}.mlp.c_proj.bias`, [4]],
    );
  }
  list.push(['ln_f.weight', [4]], ['ln_f.bias', [4]]);
  return list;
}

/** Uniform in [-0.5, 0.5), from the project's seeded generator. */
function seededRandom(seed: number): () => number {
  const rng = createRng(seed);
  return () => rng() - 0.5;
}

function randomWeights(seed = 1): BaseWeights {
  const rand = seededRandom(seed);
  const weights: BaseWeights = new Map();
  for (const [name, shape] of handWrittenShapes()) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < data.length; i++) data[i] = rand();
    weights.set(name, { shape, data });
  }
  return weights;
}

const hfConfigJson = { model_type: 'gpt2', n_embd: 4, n_layer: 2, n_head: 2, n_positions: 8, vocab_size: 10, n_inner: 16, layer_norm_epsilon: 1e-5 };

function filesOf(configJson: unknown, tensors: Map<string, TensorToWrite>) {
  return filesSource(
    new Map([
      ['config.json', Buffer.from(JSON.stringify(configJson))],
      ['model.safetensors', serializeSafetensors(tensors)],
    ]),
  );
}

function tensorsFrom(weights: BaseWeights, prefix: string, dtype: 'F32' | 'F16' | 'BF16' = 'F32'): Map<string, TensorToWrite> {
  const out = new Map<string, TensorToWrite>();
  for (const [name, w] of weights) out.set(prefix + name, { dtype, shape: w.shape, data: w.data });
  return out;
}

describe('saveHfCheckpoint', () => {
  it('writes transformer.-prefixed F32 tensors, no lm_head, format=pt metadata and an HF GPT-2 config', () => {
    const weights = randomWeights();
    const files = saveHfCheckpoint(config, weights, { swarm_note: 'test' });
    const parsed = parseSafetensors(files['model.safetensors']);
    expect(parsed.metadata).toEqual({ format: 'pt' });
    expect([...parsed.tensors.keys()].sort()).toEqual(handWrittenShapes().map(([n]) => 'transformer.' + n).sort());
    for (const t of parsed.tensors.values()) expect(t.dtype).toBe('F32');
    const json = JSON.parse(Buffer.from(files['config.json']).toString('utf8'));
    expect(json).toMatchObject({ model_type: 'gpt2', n_embd: 4, n_layer: 2, n_head: 2, n_positions: 8, vocab_size: 10, n_inner: null, swarm_note: 'test' });
    expect(json.architectures).toEqual(['GPT2LMHeadModel']);
  });

  it('round-trips through loadHfCheckpoint bit-exactly', async () => {
    const weights = randomWeights(7);
    const files = saveHfCheckpoint(config, weights);
    const loaded = await loadHfCheckpoint(filesSource(new Map(Object.entries(files))), { sha256: true });
    expect(loaded.config).toEqual(config);
    expect(loaded.weights.size).toBe(weights.size);
    for (const [name, w] of weights) {
      const got = loaded.weights.get(name)!;
      expect(got.shape, name).toEqual(w.shape);
      expect(Buffer.from(got.data.buffer, got.data.byteOffset, got.data.byteLength).equals(Buffer.from(w.data.buffer))).toBe(true);
    }
    expect(loaded.weightsSha256).toMatch(/^[0-9a-f]{64}$/);
    const { createHash } = await import('node:crypto');
    expect(loaded.weightsSha256).toBe(createHash('sha256').update(files['model.safetensors']).digest('hex'));
  });

  it('refuses weights with a wrong shape or a missing tensor', () => {
    const weights = randomWeights();
    weights.delete('h.1.mlp.c_fc.bias');
    expect(() => saveHfCheckpoint(config, weights)).toThrow(MissingTensorError);
    const bad = randomWeights();
    bad.set('wpe.weight', { shape: [4, 8], data: new Float32Array(32) });
    expect(() => saveHfCheckpoint(config, bad)).toThrow(TensorShapeError);
  });
});

describe('loadHfCheckpoint', () => {
  it('loads GPT2Model-style keys (no prefix) with mask buffers and a tied lm_head, in F16', async () => {
    const weights = randomWeights(3);
    const tensors = tensorsFrom(weights, '', 'F16');
    tensors.set('h.0.attn.bias', { shape: [1, 1, 8, 8], data: new Float32Array(64).fill(1) });
    tensors.set('h.0.attn.masked_bias', { shape: [], data: new Float32Array([-1e4]) });
    tensors.set('lm_head.weight', { dtype: 'F16', shape: [10, 4], data: weights.get('wte.weight')!.data });
    tensors.set('score.weight', { shape: [2, 4], data: new Float32Array(8) });
    const loaded = await loadHfCheckpoint(filesOf(hfConfigJson, tensors));
    expect(loaded.ignoredTensors).toEqual(['score.weight']);
    expect(loaded.storedDtypes.get('h.1.ln_2.bias')).toBe('F16');
    // Each value must be the F16 rounding of the original: check |x - x16| <= half an F16 ulp of x.
    for (const [name, w] of weights) {
      const got = loaded.weights.get(name)!.data;
      for (let i = 0; i < w.data.length; i++) {
        const x = w.data[i];
        const ulp = Math.abs(x) >= 2 ** -14 ? 2 ** (Math.floor(Math.log2(Math.abs(x))) - 10) : 2 ** -24;
        expect(Math.abs(got[i] - x)).toBeLessThanOrEqual(ulp / 2);
      }
    }
  });

  it('loads BF16 checkpoints with the BF16 values widened exactly', async () => {
    const weights = randomWeights(4);
    for (const w of weights.values()) for (let i = 0; i < w.data.length; i++) w.data[i] = Math.round(w.data[i] * 64) / 64; // exact in bf16
    const loaded = await loadHfCheckpoint(filesOf(hfConfigJson, tensorsFrom(weights, 'transformer.', 'BF16')));
    for (const [name, w] of weights) expect([...loaded.weights.get(name)!.data], name).toEqual([...w.data]);
  });

  it('MissingTensorError names the tensor and the file', async () => {
    const tensors = tensorsFrom(randomWeights(), 'transformer.');
    tensors.delete('transformer.h.1.attn.c_proj.weight');
    const load = loadHfCheckpoint(filesOf(hfConfigJson, tensors));
    await expect(load).rejects.toThrow(MissingTensorError);
    await expect(load).rejects.toThrow(/picked files\/model\.safetensors has no tensor 'h\.1\.attn\.c_proj\.weight'/);
  });

  it('TensorShapeError names the tensor, the expected and the found shape', async () => {
    const tensors = tensorsFrom(randomWeights(), 'transformer.');
    tensors.set('transformer.h.0.attn.c_attn.weight', { shape: [12, 4], data: new Float32Array(48) });
    const error = await loadHfCheckpoint(filesOf(hfConfigJson, tensors)).catch((e) => e);
    expect(error).toBeInstanceOf(TensorShapeError);
    expect(error.tensorName).toBe('h.0.attn.c_attn.weight');
    expect(error.expected).toEqual([4, 12]);
    expect(error.got).toEqual([12, 4]);
  });

  it('UntiedLmHeadError when lm_head differs from wte', async () => {
    const weights = randomWeights();
    const tensors = tensorsFrom(weights, 'transformer.');
    const head = weights.get('wte.weight')!.data.slice();
    head[5] += 1;
    tensors.set('lm_head.weight', { shape: [10, 4], data: head });
    await expect(loadHfCheckpoint(filesOf(hfConfigJson, tensors))).rejects.toThrow(UntiedLmHeadError);
  });

  it('UnsupportedDtypeError for a parameter stored as F64, SafetensorsTruncatedError for a cut file', async () => {
    const files = saveHfCheckpoint(config, randomWeights());
    // Patch the dtype of one tensor in the header text to F64 while keeping offsets (header size stays the same).
    const n = Number(new DataView(files['model.safetensors'].buffer).getBigUint64(0, true));
    const header = Buffer.from(files['model.safetensors'].subarray(8, 8 + n)).toString('utf8');
    const patched = header.replace('"transformer.ln_f.bias":{"dtype":"F32"', '"transformer.ln_f.bias":{"dtype":"F64"');
    expect(patched).not.toBe(header);
    const f64File = files['model.safetensors'].slice();
    f64File.set(Buffer.from(patched, 'utf8'), 8);
    const error = await loadHfCheckpoint(filesSource(new Map([['config.json', files['config.json']], ['model.safetensors', f64File]]))).catch((e) => e);
    expect(error).toBeInstanceOf(UnsupportedDtypeError);
    expect(error.message).toContain("'transformer.ln_f.bias' has dtype F64");

    const cut = files['model.safetensors'].subarray(0, files['model.safetensors'].length - 3);
    await expect(loadHfCheckpoint(filesSource(new Map([['config.json', files['config.json']], ['model.safetensors', cut]])))).rejects.toThrow(
      SafetensorsTruncatedError,
    );
  });

  it('CheckpointFetchError for a missing picked file, an HTTP error and a network failure', async () => {
    await expect(loadHfCheckpoint(filesSource(new Map([['config.json', Buffer.from('{}')]])))).rejects.toThrow(CheckpointFetchError);
    const notFound: FetchLike = async () => ({ ok: false, status: 404, statusText: 'Not Found', arrayBuffer: async () => new ArrayBuffer(0) });
    const error = await loadHfCheckpoint(urlSource('http://127.0.0.1:1/models/x', notFound)).catch((e) => e);
    expect(error).toBeInstanceOf(CheckpointFetchError);
    expect(error.status).toBe(404);
    expect(error.message).toMatch(/HTTP 404/);
    const offline: FetchLike = async () => {
      throw new TypeError('fetch failed');
    };
    await expect(loadHfCheckpoint(urlSource('http://127.0.0.1:1/', offline))).rejects.toThrow(/could not fetch http:\/\/127\.0\.0\.1:1\/config\.json: fetch failed/);
  });
});

describe('urlSource over real HTTP', () => {
  let server: Server;
  let baseUrl: string;
  const files = saveHfCheckpoint(config, randomWeights(11));

  beforeAll(async () => {
    server = createServer((req, res) => {
      const name = req.url?.replace('/models/tiny/', '') ?? '';
      const body = (files as unknown as Record<string, Uint8Array>)[name];
      if (!body) {
        res.writeHead(404).end('no');
        return;
      }
      res.writeHead(200, { 'content-length': String(body.length) }).end(Buffer.from(body));
    });
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/models/tiny/`;
  });
  afterAll(
    () =>
      new Promise<void>((done) => {
        server.close(() => done());
        server.closeAllConnections(); // fetch keeps connections alive; do not wait for their idle timeout
      }),
  );

  it('loads with Node fetch, reporting download progress up to Content-Length', async () => {
    const progress: { file: string; loadedBytes: number; totalBytes?: number }[] = [];
    const loaded = await loadHfCheckpoint(urlSource(baseUrl, fetch, { onProgress: (p) => progress.push(p) }));
    expect(loaded.weights.get('wte.weight')!.data).toEqual(randomWeights(11).get('wte.weight')!.data);
    const last = progress.filter((p) => p.file === 'model.safetensors').at(-1)!;
    expect(last.loadedBytes).toBe(files['model.safetensors'].length);
    expect(last.totalBytes).toBe(files['model.safetensors'].length);
  });

  it('reports the real HTTP status', async () => {
    const error = await loadHfCheckpoint(urlSource(baseUrl.replace('tiny', 'absent'), fetch)).catch((e) => e);
    expect(error).toBeInstanceOf(CheckpointFetchError);
    expect(error.status).toBe(404);
  });
});
