// The Node peer's key-value store over files: round trips, keys that are not file names, atomic replacement.
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fileNameToKey, fileStore, keyToFileName, writeFileAtomic } from './file-store.ts';

let dir = '';
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'file-store-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('fileStore', () => {
  it('keeps bytes per key across store instances (a restarted peer reads what the last one wrote)', async () => {
    const first = fileStore(join(dir, 'kv'));
    await first.put('checkpoint/run.1/node-a#0', new Uint8Array([1, 2, 3]));
    await first.put('local-text/node-a', new Uint8Array([9]));
    const second = fileStore(join(dir, 'kv'));
    expect(await second.get('checkpoint/run.1/node-a#0')).toEqual(new Uint8Array([1, 2, 3]));
    expect(await second.get('local-text/node-a')).toEqual(new Uint8Array([9]));
    expect(await second.get('checkpoint/run.1/node-a#1')).toBeUndefined();
    expect(await second.keys()).toEqual(['checkpoint/run.1/node-a#0', 'local-text/node-a']);
    await second.delete('local-text/node-a');
    expect(await first.get('local-text/node-a')).toBeUndefined();
  });

  it('maps every key to one flat file inside its folder, never a path elsewhere', async () => {
    const store = fileStore(join(dir, 'kv'));
    for (const key of ['../escape', '..', '.hidden', 'a/../../b', 'ü/%2F']) {
      const name = keyToFileName(key);
      expect(name).not.toContain('/');
      expect(name.startsWith('.')).toBe(false);
      expect(fileNameToKey(name)).toBe(key);
      await store.put(key, new TextEncoder().encode(key));
      expect(new TextDecoder().decode(await store.get(key))).toBe(key);
    }
    expect(readdirSync(dir)).toEqual(['kv']);
    expect(readdirSync(join(dir, 'kv'))).toHaveLength(5);
  });

  it('replaces a value whole: no temporary file is left, and a torn temporary file from a crash is ignored', async () => {
    const store = fileStore(dir);
    await store.put('k', new Uint8Array(1000).fill(1));
    await store.put('k', new Uint8Array(10).fill(2));
    expect(readdirSync(dir)).toEqual([keyToFileName('k')]);
    // What a crash between write and rename leaves: a partial file beside the real one.
    writeFileSync(join(dir, `${keyToFileName('k')}.4242.1.partial`), new Uint8Array(3).fill(7));
    expect(await store.get('k')).toEqual(new Uint8Array(10).fill(2));
    expect(await store.keys()).toEqual(['k']);
  });

  it('writeFileAtomic leaves the old file when the write cannot happen', async () => {
    const path = join(dir, 'status.json');
    await writeFileAtomic(path, '{"a":1}');
    await expect(writeFileAtomic(join(dir, 'missing-folder', 'x.json'), '{}')).rejects.toThrow(/ENOENT/);
    await writeFileAtomic(path, '{"a":2}');
    expect(readdirSync(dir)).toEqual(['status.json']);
  });
});
