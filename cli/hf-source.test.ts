import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadHfCheckpoint, saveHfCheckpoint } from '../core/io/hf-checkpoint.ts';
import { CheckpointFetchError } from '../core/io/source.ts';
import type { BaseWeights, Gpt2Config } from '../core/model/config.ts';
import { directorySource, writeFilesTo } from './hf-source.ts';

const config: Gpt2Config = { nEmbd: 2, nLayer: 1, nHead: 1, nPositions: 4, vocabSize: 3, nInner: 8, layerNormEpsilon: 1e-5 };
const shapes: [string, number[]][] = [
  ['wte.weight', [3, 2]], ['wpe.weight', [4, 2]],
  ['h.0.ln_1.weight', [2]], ['h.0.ln_1.bias', [2]], ['h.0.attn.c_attn.weight', [2, 6]], ['h.0.attn.c_attn.bias', [6]],
  ['h.0.attn.c_proj.weight', [2, 2]], ['h.0.attn.c_proj.bias', [2]], ['h.0.ln_2.weight', [2]], ['h.0.ln_2.bias', [2]],
  ['h.0.mlp.c_fc.weight', [2, 8]], ['h.0.mlp.c_fc.bias', [8]], ['h.0.mlp.c_proj.weight', [8, 2]], ['h.0.mlp.c_proj.bias', [2]],
  ['ln_f.weight', [2]], ['ln_f.bias', [2]],
];

describe('directorySource and writeFilesTo', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it('writes a checkpoint to disk and loads it back from the directory', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'swarm-io-'));
    dirs.push(dir);
    const weights: BaseWeights = new Map(shapes.map(([name, shape], k) => [name, { shape, data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => k + i / 10) }]));
    const files = saveHfCheckpoint(config, weights);
    const written = await writeFilesTo(join(dir, 'model'), files);
    expect(written.map((p) => p.slice(dir.length))).toEqual(['/model/config.json', '/model/model.safetensors']);
    expect(new Uint8Array(await readFile(join(dir, 'model', 'model.safetensors')))).toEqual(files['model.safetensors']);
    const loaded = await loadHfCheckpoint(directorySource(join(dir, 'model')));
    for (const [name, w] of weights) expect([...loaded.weights.get(name)!.data], name).toEqual([...w.data]);
  });

  it('reports a missing file as CheckpointFetchError naming the path', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'swarm-io-'));
    dirs.push(dir);
    const error = await directorySource(dir).read('config.json').catch((e) => e);
    expect(error).toBeInstanceOf(CheckpointFetchError);
    expect(error.message).toContain(join(dir, 'config.json'));
    expect(error.message).toContain('no such file');
  });
});
