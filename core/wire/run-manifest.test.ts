import { describe, expect, it } from 'vitest';
import { canonicalRunManifestJson, decodeRunManifest, runManifestId, type RunManifest } from './run-manifest.ts';

const run: RunManifest = {
  formatVersion: 1,
  runId: 'brown-lora-1',
  baseModel: { id: 'swarm/gpt2-tiny', url: '/models/gpt2-tiny/', sha256: 'ab'.repeat(32) },
  lora: { r: 8, alpha: 16, targetModules: ['attn.c_attn', 'attn.c_proj'] },
  strategy: { name: 'fedavg', params: {} },
  localSteps: 5,
  schedule: { lr: 0.003 },
  data: { kind: 'genre', genres: ['fiction'], seed: 1 },
  codec: 'fp16',
};

const reasonOf = (input: unknown) => {
  const v = decodeRunManifest(input as object);
  return v.ok ? 'accepted' : `${v.reason}: ${v.detail}`;
};

describe('run manifest: outer optimiser and LoRA mode', () => {
  it('absent, none and standard are one canonical form without either field (older manifests keep their id)', () => {
    const plain = canonicalRunManifestJson(run);
    expect(plain).not.toMatch(/"outer"|"mode"/);
    expect(canonicalRunManifestJson({ ...run, outer: { name: 'none', params: {} } })).toBe(plain);
    expect(canonicalRunManifestJson({ ...run, lora: { ...run.lora, mode: 'standard' as never } })).toBe(plain);
  });

  it('carries the outer optimiser and the frozen-A mode, each part of the id', () => {
    const outer = { ...run, outer: { name: 'nesterov', params: { lr: 1, momentum: 0.5 } } };
    expect(decodeRunManifest(outer)).toEqual({ ok: true, value: outer });
    expect(canonicalRunManifestJson(outer)).toContain('"outer":{"name":"nesterov","params":{"lr":1,"momentum":0.5}}');
    const frozen: RunManifest = { ...run, lora: { ...run.lora, mode: 'frozen-a' } };
    expect(decodeRunManifest(frozen)).toEqual({ ok: true, value: frozen });
    const ids = new Set([run, outer, frozen, { ...outer, outer: { name: 'nesterov', params: { lr: 0.9, momentum: 0.5 } } }].map(runManifestId));
    expect(ids.size).toBe(4);
  });

  it('bounds the outer optimiser as strictly as the strategy: registry names, declared parameters, their ranges', () => {
    expect(reasonOf({ ...run, outer: { name: 'adam', params: {} } })).toMatch(/^malformed: .*unknown outer optimiser 'adam'/);
    expect(reasonOf({ ...run, outer: { name: 'sgd', params: { momentum: 0.9 } } })).toMatch(/^malformed: .*has no parameter 'momentum'/);
    expect(reasonOf({ ...run, outer: { name: 'nesterov', params: { lr: 50 } } })).toMatch(/^malformed: .*lr' must be <= 2/);
    expect(reasonOf({ ...run, outer: { name: 'nesterov', params: { momentum: 1 } } })).toMatch(/^malformed/);
    expect(reasonOf({ ...run, outer: { name: 'nesterov', params: { lr: '1' } } })).toMatch(/^malformed: run.outer.params.lr must be a number/);
    expect(reasonOf({ ...run, outer: { name: 'nesterov' } })).toMatch(/^malformed/);
    expect(reasonOf({ ...run, outer: { name: 'nesterov', params: {}, extra: 1 } })).toMatch(/^malformed/);
    expect(reasonOf({ ...run, outer: 'nesterov' })).toMatch(/^malformed/);
    expect(reasonOf(JSON.stringify({ ...run, outer: { name: 'sgd', params: { lr: 1 } } }).replace('"lr":1', '"lr":1e400'))).toMatch(/^non-finite/);
    const many = Object.fromEntries(Array.from({ length: 9 }, (_, i) => [`p${i}`, 1]));
    expect(reasonOf({ ...run, outer: { name: 'sgd', params: many } })).toMatch(/more than 8 entries/);
  });

  it('accepts only the known LoRA modes', () => {
    expect(reasonOf({ ...run, lora: { ...run.lora, mode: 'frozen-b' } })).toMatch(/^malformed: run.lora.mode must be one of standard, frozen-a/);
    expect(reasonOf({ ...run, lora: { ...run.lora, mode: 1 } })).toMatch(/^malformed/);
  });
});
