// Commands that read the corpus prepare it first when a fresh clone has none, in one line, instead of an ENOENT.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ensurePreparedCorpus } from './prepare-assets.ts';
import { PreparedCorpus } from '../core/data/corpus.ts';
import { readFile } from 'node:fs/promises';

let root = '';
afterEach(() => rmSync(root, { recursive: true, force: true }));

describe('ensurePreparedCorpus', () => {
  it('prepares a missing corpus once, saying so in one line, and then finds it', async () => {
    root = mkdtempSync(join(tmpdir(), 'fresh-clone-'));
    const lines: string[] = [];
    const dir = ensurePreparedCorpus(root, (line) => lines.push(line));
    expect(dir).toBe(join(root, 'public', 'data', 'brown'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('npm run prepare-assets');
    expect(existsSync(join(dir, 'index.json'))).toBe(true);
    const corpus = await PreparedCorpus.open((p) => readFile(join(dir, p), 'utf8'));
    expect(corpus.trainSizes().mystery).toBeGreaterThan(100_000);
    expect(ensurePreparedCorpus(root, (line) => lines.push(line))).toBe(dir);
    expect(lines).toHaveLength(1);
  });
});
