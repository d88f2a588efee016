// Unit tests run tfjs on the WASM backend in Node (several times faster than the pure-JS CPU backend), loading the
// .wasm files from the installed package. Test-only, so it may use Node's modules (core/tsconfig.json excludes it);
// hosts that run peers in Node use cli/tf-node.ts, which also offers WebGPU through Dawn.
import * as tf from '@tensorflow/tfjs';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';

export async function useTestBackend(): Promise<string> {
  const dist = dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm/package.json'));
  setWasmPaths(pathToFileURL(join(dist, 'dist') + '/').href);
  if (!(await tf.setBackend('wasm'))) throw new Error('the tfjs WASM backend did not start');
  await tf.ready();
  return 'wasm';
}
