/// <reference lib="webworker" />
// The swarm worker: hosts a PeerEngine on the chosen tfjs backend, with IndexedDB checkpoints and the corpus and
// base model fetched from the app's origin. The page talks to it only through protocol.ts messages.
import * as tf from '@tensorflow/tfjs';
import { initBrowserBackend } from '../lib/backend.ts';
import { loadHfCheckpoint } from '../../core/io/hf-checkpoint.ts';
import { urlSource } from '../../core/io/source.ts';
import { indexedDbStore } from './indexeddb-store.ts';
import { PeerEngine, type EngineHost } from '../../core/swarm/peer-engine.ts';
import type { MainToWorker, WorkerToMain } from '../../core/swarm/engine-protocol.ts';

declare const self: DedicatedWorkerGlobalScope;

const post = (message: WorkerToMain, transfer: ArrayBuffer[] = []) => self.postMessage(message, transfer);

const host: EngineHost = {
  async readCorpus(path) {
    const response = await fetch(`/data/brown/${path}`);
    if (!response.ok) throw new Error(`the Brown corpus file /data/brown/${path} is missing (HTTP ${response.status}); run \`npm run prepare-assets\``);
    return response.text();
  },
  async loadBase(url) {
    const loaded = await loadHfCheckpoint(urlSource(url, (u) => fetch(u)), { sha256: true });
    return { config: loaded.config, weights: loaded.weights, sha256: loaded.weightsSha256! };
  },
  store: indexedDbStore(),
  post,
  async switchBackend(name) {
    await tf.setBackend(name);
    await tf.ready();
    return tf.getBackend();
  },
  backendName: () => tf.getBackend() ?? 'none',
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

const engine = new PeerEngine(host);

/** tfjs' WebGPU backend exposes its GPUDevice; when the device is lost, training moves to WASM. */
function watchDeviceLoss(): void {
  const device = (tf.backend() as unknown as { device?: { lost?: Promise<{ message: string }> } }).device;
  device?.lost?.then((info) => {
    post({ type: 'notice', level: 'warning', message: `the GPU device was lost (${info.message || 'no reason given'}); switching to WASM` });
    engine.signalDeviceLost();
  });
}

let queue: Promise<void> = Promise.resolve();

self.onmessage = (event: MessageEvent<MainToWorker>) => {
  const message = event.data;
  if (message.type === 'init') {
    queue = queue.then(async () => {
      const choice = await initBrowserBackend(message.backend);
      if (message.backend === 'webgpu' && choice.backend !== 'webgpu') {
        post({ type: 'error', kind: 'no-webgpu', fatal: false, message: `WebGPU is not available here (${choice.reason}); training on ${choice.backend} instead` });
      }
      if (choice.backend === 'webgpu') watchDeviceLoss();
      engine.setBackendInfo(choice.reason, choice.adapterInfo, choice.threads);
      await engine.handle(message);
    });
    return;
  }
  // Everything else waits for init to finish, then runs in arrival order.
  queue = queue.then(() => engine.handle(message));
};
