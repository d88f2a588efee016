// Unit tests run tfjs on the WASM backend in Node (several times faster than the pure-JS CPU backend).
import { initNodeBackend } from '../cli/tf-node.ts';

export async function useTestBackend(): Promise<string> {
  return initNodeBackend('wasm');
}
