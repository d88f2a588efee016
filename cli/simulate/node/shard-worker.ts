// A worker thread holding one shard of the node simulator, on its own tfjs WASM backend.
import { parentPort, workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import { initNodeBackend } from '../../tf-node.ts';
import { Shard, type ShardInit } from './shard.ts';
import { NODE_SHARD_IO } from './io.ts';

const init = workerData as ShardInit;
await initNodeBackend('wasm');
const shard = new Shard(init, { ...NODE_SHARD_IO, backendName: () => tf.getBackend() });

parentPort!.on('message', async (m: { id: number; method: 'start' | 'runUntil' | 'kill'; args: unknown[] }) => {
  try {
    let value: unknown;
    if (m.method === 'start') value = await shard.start();
    else if (m.method === 'runUntil') value = await shard.runUntil(m.args[0] as number, m.args[1] as Parameters<Shard['runUntil']>[1]);
    else value = shard.kill(m.args[0] as number, m.args[1] as number | null);
    parentPort!.postMessage({ id: m.id, ok: true, value });
  } catch (error) {
    parentPort!.postMessage({ id: m.id, ok: false, error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) });
  }
});
