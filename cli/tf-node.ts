// tfjs in Node: the WASM backend (about 6x faster than the pure-JS CPU backend for a training step here),
// loading its .wasm files from the installed package.
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-cpu';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';

export type NodeBackend = 'wasm' | 'cpu';

export async function initNodeBackend(preferred: NodeBackend = 'wasm'): Promise<NodeBackend> {
  if (preferred === 'wasm') {
    const require = createRequire(import.meta.url);
    const dist = dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json'));
    setWasmPaths(pathToFileURL(join(dist, 'dist') + '/').href);
    if (await tf.setBackend('wasm')) {
      await tf.ready();
      return 'wasm';
    }
  }
  await tf.setBackend('cpu');
  await tf.ready();
  return 'cpu';
}
