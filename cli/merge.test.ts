/** `swarm merge` end to end on real PEFT files in a temp directory (main() called directly). */
import { readdirSync, readFileSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { exportPeft, importPeft } from '../core/io/peft.ts';
import { listStrategies, mergeWith } from '../core/merge/registry.ts';
import { asInput, maxAbsDiff, randomAdapter } from '../core/merge/testing.ts';
import type { Adapter } from '../core/model/adapter.ts';
import { useCommandSandbox } from './command-sandbox.ts';
import { main } from './merge.ts';

let dir: string;
let stdout: string[];
let stderr: string[];
const sandbox = useCommandSandbox('swarm-merge-');
beforeEach(() => ({ dir, stdout, stderr } = sandbox));

function writeAdapter(name: string, adapter: Adapter): string {
  const path = join(dir, name);
  mkdirSync(path);
  for (const [file, bytes] of Object.entries(exportPeft(adapter))) writeFileSync(join(path, file), bytes);
  return path;
}

function readAdapter(path: string): Adapter {
  return importPeft(
    { adapterConfig: readFileSync(join(path, 'adapter_config.json')), safetensors: new Uint8Array(readFileSync(join(path, 'adapter_model.safetensors'))) },
    'test/tiny',
  );
}

describe('swarm merge', () => {
  it('fedavg with weights writes the weighted mean of the factors as a PEFT adapter', async () => {
    const x = randomAdapter(1), y = randomAdapter(2);
    const out = join(dir, 'merged');
    const code = await main(['--strategy', 'fedavg', '--weights', '1,3', writeAdapter('x', x), writeAdapter('y', y), '--out', out]);
    expect(stderr).toEqual([]);
    expect(code).toBe(0);
    const merged = readAdapter(out);
    expect(merged.config).toMatchObject({ r: 3, alpha: 6 });
    for (const [name, p] of x.modules) {
      const q = y.modules.get(name)!;
      expect(maxAbsDiff(merged.modules.get(name)!.a, p.a.map((v, i) => 0.25 * v + 0.75 * q.a[i]))).toBeLessThan(1e-6);
      expect(maxAbsDiff(merged.modules.get(name)!.b, p.b.map((v, i) => 0.25 * v + 0.75 * q.b[i]))).toBeLessThan(1e-6);
    }
    expect(JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8')).base_model_name_or_path).toBe('test/tiny');
  });

  it('maps kebab-case flags to strategy parameters (ties --density --power-iterations --space --base)', async () => {
    const x = randomAdapter(1), y = randomAdapter(2);
    const out = join(dir, 'merged');
    const args = ['--strategy', 'ties', '--density', '0.2', '--weights', '1,0.5', '--space', 'products', '--power-iterations=2', '--base', 'zero', '--seed', '7'];
    expect(await main([...args, writeAdapter('x', x), writeAdapter('y', y), '--out', out])).toBe(0);
    const expected = mergeWith('ties', [asInput(x, 'a', 1), asInput(y, 'b', 0.5)], { density: 0.2, space: 'products', powerIterations: 2, base: 'zero' }, { seed: 7 });
    const merged = readAdapter(out);
    for (const [name, p] of expected.modules) {
      expect(maxAbsDiff(merged.modules.get(name)!.a, p.a)).toBeLessThan(1e-6);
      expect(maxAbsDiff(merged.modules.get(name)!.b, p.b)).toBeLessThan(1e-6);
    }
    expect(stdout.join('\n')).toMatch(/merged 2 adapters with ties \(density=0.2 base=zero .*power-iterations=2\)/);
  });

  it('--help lists every strategy with its parameters and defaults', async () => {
    expect(await main(['--help'])).toBe(0);
    const help = stdout.join('\n');
    for (const s of listStrategies()) {
      expect(help).toContain(`  ${s.name}: `);
      for (const p of s.params) expect(help).toMatch(new RegExp(`--${p.name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} <${p.type}>.*default ${JSON.stringify(p.default).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    }
  });

  describe('refuses bad input with one line on stderr, a non-zero exit and no output', () => {
    const cases: Array<[string, () => string[], RegExp]> = [
      ['missing files', () => {
        const empty = join(dir, 'empty');
        mkdirSync(empty);
        return ['--strategy', 'fedavg', writeAdapter('x', randomAdapter(1)), empty];
      }, /empty\/adapter_config\.json: missing/],
      ['mismatched ranks', () => ['--strategy', 'fedavg', writeAdapter('x', randomAdapter(1)), writeAdapter('y', randomAdapter(2, { r: 4 }))], /SchemaMismatchError/],
      ['mismatched target modules', () => [
        '--strategy', 'ties', writeAdapter('x', randomAdapter(1)),
        writeAdapter('y', randomAdapter(2, { modules: [{ name: 'transformer.h.0.attn.c_attn', inDim: 6, outDim: 9 }] })),
      ], /SchemaMismatchError/],
      ['NaN weights', () => ['--strategy', 'fedavg', '--weights', '1,NaN', writeAdapter('x', randomAdapter(1)), writeAdapter('y', randomAdapter(2))], /--weights: value 2/],
      ['unknown strategy', () => ['--strategy', 'average', writeAdapter('x', randomAdapter(1))], /UnknownStrategyError: unknown merge strategy 'average'/],
      ['unknown parameter', () => ['--strategy', 'ties', '--densty', '0.2', writeAdapter('x', randomAdapter(1))], /no parameter --densty/],
      ['out-of-range parameter', () => ['--strategy', 'ties', '--density', '2', writeAdapter('x', randomAdapter(1))], /MergeParamError: .*density.* <= 1/],
      ['non-numeric parameter', () => ['--strategy', 'trimmed-mean', '--beta', 'lots', writeAdapter('x', randomAdapter(1))], /--beta must be a number/],
      ['wrong number of weights', () => ['--strategy', 'fedavg', '--weights', '1', writeAdapter('x', randomAdapter(1)), writeAdapter('y', randomAdapter(2))], /2 adapters/],
      ['corrupt safetensors', () => {
        const path = writeAdapter('x', randomAdapter(1));
        writeFileSync(join(path, 'adapter_model.safetensors'), new Uint8Array([1, 2, 3]));
        return ['--strategy', 'fedavg', path];
      }, /x: /],
    ];
    it.each(cases)('%s', async (_label, build, pattern) => {
      const out = join(dir, 'merged');
      const code = await main([...build(), '--out', out]);
      expect(code).not.toBe(0);
      expect(stderr).toHaveLength(1);
      expect(stderr[0]).not.toContain('\n');
      expect(stderr[0]).toMatch(pattern);
      expect(existsSync(out)).toBe(false);
      expect(readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
    });
  });

  it('does not overwrite an existing output without --force, and replaces it whole with --force', async () => {
    const out = join(dir, 'merged');
    mkdirSync(out);
    writeFileSync(join(out, 'stale.txt'), 'old');
    const x = writeAdapter('x', randomAdapter(1));
    expect(await main(['--strategy', 'fedavg', x, '--out', out])).not.toBe(0);
    expect(stderr[0]).toMatch(/already exists/);
    expect(await main(['--strategy', 'fedavg', x, '--out', out, '--force'])).toBe(0);
    expect(readdirSync(out).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
  });
});
