// A page that trains LoRA steps with one backend, for the backend-agreement e2e test and `npm run bench:train`.
// The backend is fixed per page load (`?backend=webgpu|wasm|cpu&threads=N`), because WASM's thread pool is sized
// when the backend initialises. The measurement itself is core/train/benchmark-run.ts, shared with Node.
import { initBrowserBackend, parseBackendPreference, type BackendChoice } from '../lib/backend.ts';
import { loadHfCheckpoint } from '../../core/io/hf-checkpoint.ts';
import { urlSource } from '../../core/io/source.ts';
import { DEFAULT_MODEL_CONFIG, DEFAULT_MODEL_PATH, GPT2_SMALL_CONFIG } from '../../core/model/defaults.ts';
import { initGpt2Weights } from '../../core/model/gpt2.ts';
import { benchmarkTraining, type BenchmarkOptions, type BenchmarkResult } from '../../core/train/benchmark-run.ts';

export interface TrainRunOptions extends BenchmarkOptions {
  /**
   * 'default' loads the committed base model; 'random' initialises the same architecture from the seed;
   * 'gpt2-small' initialises GPT-2 small's shape (124 M parameters) from the seed.
   */
  model: 'default' | 'random' | 'gpt2-small';
  genre: string;
}

export interface TrainRunResult extends BenchmarkResult {
  backend: BackendChoice;
}

const params = new URLSearchParams(location.search);
const threadsParam = params.get('threads');
const backendReady = initBrowserBackend(parseBackendPreference(params.get('backend')), {
  wasmThreads: threadsParam ? Number(threadsParam) : 'auto',
});

function log(line: string): void {
  document.getElementById('log')!.textContent += line + '\n';
}

async function run(partial: Partial<TrainRunOptions> = {}): Promise<TrainRunResult> {
  const o: TrainRunOptions = { steps: 5, batchSize: 8, seqLen: 128, seed: 1, rank: 8, model: 'default', genre: 'fiction', warmupSteps: 1, ...partial };
  const backend = await backendReady;
  log(`backend: ${backend.reason}`);
  const config = o.model === 'gpt2-small' ? GPT2_SMALL_CONFIG : DEFAULT_MODEL_CONFIG;
  const weights =
    o.model === 'default'
      ? (await loadHfCheckpoint(urlSource(DEFAULT_MODEL_PATH, (url) => fetch(url)))).weights
      : initGpt2Weights(config, o.seed);
  const tokens = new TextEncoder().encode(await (await fetch(`/data/brown/${o.genre}.train.txt`)).text());
  const heapBytes = () => (performance as Performance & { memory?: { usedJSHeapSize: number } }).memory?.usedJSHeapSize ?? null;
  const result = await benchmarkTraining(o, { config, weights, tokens, log, heapBytes });
  return { ...result, backend };
}

declare global {
  interface Window {
    trainHarness: { ready: Promise<BackendChoice>; run: typeof run };
  }
}
window.trainHarness = { ready: backendReady, run };
