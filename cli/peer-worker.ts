// The engine thread of `swarm peer`: a PeerEngine on its own tfjs WASM backend, with file checkpoints, the prepared
// corpus and the base model from disk. It runs beside the libp2p node's thread as a tab's worker runs beside its page:
// a training step blocks its thread for hundreds of ms, which on the node's thread delayed relay reservations and
// WebRTC handshakes. The parent talks to it with engine-protocol messages, plus 'shutdown'.
import { parentPort, workerData } from 'node:worker_threads';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadHfCheckpoint } from '../core/io/hf-checkpoint.ts';
import { urlSource } from '../core/io/source.ts';
import { PeerEngine, type EngineHost } from '../core/swarm/peer-engine.ts';
import type { EngineStatus, MainToWorker, WorkerToMain } from '../core/swarm/engine-protocol.ts';
import { directorySource } from './hf-source.ts';
import { initNodeBackend, type NodeBackend } from './tf-node.ts';
import { fileStore } from './file-store.ts';

export interface PeerWorkerInit {
  backend: NodeBackend;
  corpusDir: string;
  /** Where a run's base model path (`/models/<id>/`) is looked up: the app's public folder. */
  publicDir: string;
  /** Overrides the run's base model location. */
  modelDir?: string;
  storeDir: string;
}

export type ToPeerWorker = MainToWorker | { type: 'shutdown' };
export type FromPeerWorker = WorkerToMain | { type: 'shut-down'; status: EngineStatus | null };

const init = workerData as PeerWorkerInit;
const port = parentPort!;
const post = (message: FromPeerWorker, transfer: ArrayBuffer[] = []) => port.postMessage(message, transfer);
const backend = await initNodeBackend(init.backend);

const host: EngineHost = {
  readCorpus: (path) => readFile(join(init.corpusDir, path), 'utf8'),
  async loadBase(url) {
    const source = /^https?:\/\//.test(url) && !init.modelDir ? urlSource(url, (u) => fetch(u)) : directorySource(init.modelDir ?? join(init.publicDir, url));
    const loaded = await loadHfCheckpoint(source, { sha256: true });
    return { config: loaded.config, weights: loaded.weights, sha256: loaded.weightsSha256! };
  },
  store: fileStore(init.storeDir),
  post,
  backendName: () => backend,
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

const engine = new PeerEngine(host);
let initialized = false;
let queue: Promise<void> = Promise.resolve();

/**
 * The engine checkpoints at merges and every `checkpointEvery` steps; a stop needs one more so no step is lost.
 * PeerEngine has no public call for that yet (asked of core/swarm: a checkpointNow()), so this reaches its
 * checkpoint routine under the engine's own lock, after its loop has ended.
 */
async function finalCheckpoint(): Promise<void> {
  await engine.checkpointNow();
}

port.on('message', (message: ToPeerWorker) => {
  if (message.type === 'shutdown') {
    engine.stop();
    queue = queue.then(async () => {
      await engine.finished;
      if (initialized) await finalCheckpoint();
      post({ type: 'shut-down', status: initialized ? engine.snapshot() : null });
    });
    return;
  }
  // In arrival order, each after the one before (init first), as the tab's worker does.
  queue = queue.then(async () => {
    await engine.handle(message);
    if (message.type === 'init') initialized = engine.snapshot().phase !== 'error' && engine.snapshot().phase !== 'loading';
  });
});
