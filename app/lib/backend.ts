/**
 * Picks the tfjs backend by capability: WebGPU only on a real GPU adapter (a software adapter such as SwiftShader
 * trains about 14x slower than WASM), then WASM (SIMD; threads when the page is cross-origin isolated), then the
 * pure-JS CPU backend. The user can force any of them; the choice and the reason are reported.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-webgpu';
import { getThreadsCount, setThreadsCount, setWasmPaths } from '@tensorflow/tfjs-backend-wasm';

export type BackendPreference = 'auto' | 'webgpu' | 'wasm' | 'cpu';

export interface BackendChoice {
  backend: 'webgpu' | 'wasm' | 'cpu';
  reason: string;
  /** GPU adapter description, when WebGPU was probed. */
  adapterInfo?: string;
  /** WASM threads in use (1 = single-threaded): the XNNPACK pool size, read back from the backend. */
  threads?: number;
  /** WASM threads asked for; `threads` below this means the pool was capped (see withThreadCapLifted). */
  threadsWanted?: number;
  simd?: boolean;
}

export interface BackendOptions {
  /** Where the tfjs .wasm binaries are served (prepare-assets copies them to public/tfjs/). */
  wasmPath?: string;
  /** WASM pool size: 'auto' = every logical core; 1 = single-threaded (for benchmarks). */
  wasmThreads?: number | 'auto';
}

/** The threaded WASM module's unbundled script in the wasm folder, and the global the built backend reads it from. */
export const WASM_THREADED_SCRIPT = 'tfjs-backend-wasm-threaded-simd.js';
export const WASM_THREADED_SCRIPT_GLOBAL = '__swarmWasmThreadedScript';

/** XNNPACK's pool never exceeds the 8 web workers tfjs-backend-wasm 4.22 pre-creates (PTHREAD_POOL_SIZE=8). */
export const MAX_WASM_THREADS = 8;

/**
 * Runs `init` while `navigator.hardwareConcurrency` reports twice `threads`.
 *
 * tfjs-backend-wasm 4.22 sizes its XNNPACK pool as min(asked, num_cores, 8), where num_cores =
 * emscripten_num_logical_cores() / 2 is read once, by a static initialiser, when the module is instantiated; in a
 * page or worker emscripten_num_logical_cores() is navigator.hardwareConcurrency. The halving assumes two
 * hyper-threads per core, so a 2-core machine gets one thread whatever setThreadsCount asks for
 * (tensorflow/tfjs#8513). Doubling what navigator reports while the module starts lifts that cap to the count
 * asked for; the real value is restored as soon as the backend is up.
 */
async function withThreadCapLifted<T>(threads: number, init: () => Promise<T>): Promise<T> {
  const nav = globalThis.navigator as Navigator | undefined;
  if (!nav) return init();
  const own = Object.getOwnPropertyDescriptor(nav, 'hardwareConcurrency');
  try {
    Object.defineProperty(nav, 'hardwareConcurrency', { configurable: true, get: () => 2 * threads });
  } catch {
    return init(); // a frozen navigator: the backend keeps its own cap, and the reported thread count shows it
  }
  try {
    return await init();
  } finally {
    if (own) Object.defineProperty(nav, 'hardwareConcurrency', own);
    else delete (nav as unknown as Record<string, unknown>).hardwareConcurrency;
  }
}

/** Every logical core, within what the backend can use. */
export function wasmThreadsFor(wanted: number | 'auto', logicalCores: number | undefined): number {
  const n = wanted === 'auto' ? (logicalCores ?? 1) : wanted;
  return Math.max(1, Math.min(MAX_WASM_THREADS, Math.floor(n)));
}

const SOFTWARE_ADAPTER = /swiftshader|llvmpipe|lavapipe|software|basic render/i;

interface AdapterProbe {
  available: boolean;
  software: boolean;
  description: string;
}

async function probeWebGpu(): Promise<AdapterProbe> {
  const gpu = (globalThis.navigator as Navigator & { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
  if (!gpu) return { available: false, software: false, description: 'navigator.gpu is missing (WebGPU not supported or disabled)' };
  type AdapterLike = { isFallbackAdapter?: boolean; info?: Record<string, string> };
  let adapter: AdapterLike | null;
  try {
    adapter = (await gpu.requestAdapter()) as AdapterLike | null;
  } catch (error) {
    return { available: false, software: false, description: `requestAdapter failed: ${(error as Error).message}` };
  }
  if (!adapter) return { available: false, software: false, description: 'no WebGPU adapter' };
  const info = adapter.info ?? {};
  const description = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ') || 'unknown adapter';
  return { available: true, software: Boolean(adapter.isFallbackAdapter) || SOFTWARE_ADAPTER.test(description), description };
}

async function tryBackend(name: string): Promise<boolean> {
  try {
    return await tf.setBackend(name);
  } catch {
    return false;
  }
}

export async function initBrowserBackend(preference: BackendPreference = 'auto', options: BackendOptions = {}): Promise<BackendChoice> {
  const wasmPath = options.wasmPath ?? '/tfjs/';
  setWasmPaths(wasmPath);
  // Where the production build's pthread workers load the threaded module from (vite.config.ts, swarm-wasm-threads):
  // an absolute URL, because they run from blob: URLs that cannot resolve a relative one.
  (globalThis as Record<string, unknown>)[WASM_THREADED_SCRIPT_GLOBAL] = new URL(`${wasmPath}${WASM_THREADED_SCRIPT}`, globalThis.location?.href).href;
  const threadsWanted = wasmThreadsFor(options.wasmThreads ?? 'auto', globalThis.navigator?.hardwareConcurrency);
  if (threadsWanted <= 1) tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
  else setThreadsCount(threadsWanted);
  const reasons: string[] = [];
  const probe = preference === 'auto' || preference === 'webgpu' ? await probeWebGpu() : undefined;

  if (preference === 'webgpu' || (preference === 'auto' && probe?.available && !probe.software)) {
    if (probe?.available && (await tryBackend('webgpu'))) {
      await tf.ready();
      const why = preference === 'webgpu' ? 'chosen by the user' : 'a hardware GPU adapter is available';
      return { backend: 'webgpu', reason: `WebGPU: ${why}`, adapterInfo: probe.description };
    }
    reasons.push(`WebGPU unavailable (${probe?.description ?? 'not probed'})`);
  } else if (probe?.available && probe.software) {
    reasons.push(`WebGPU adapter is software (${probe.description}), slower than WASM`);
  } else if (probe) {
    reasons.push(probe.description);
  }

  if (preference !== 'cpu' && (await withThreadCapLifted(threadsWanted, () => tryBackend('wasm')))) {
    await tf.ready();
    const simd = Boolean(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'));
    const multithread = Boolean(await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT'));
    const threads = multithread ? getThreadsCount() : 1;
    const threadNote = multithread
      ? `${threads} of ${threadsWanted} threads asked for`
      : threadsWanted <= 1 ? 'single thread (by request)' : 'single thread (page is not cross-origin isolated)';
    const lead = preference === 'wasm' ? 'chosen by the user' : reasons.join('; ') || 'default';
    return { backend: 'wasm', reason: `WASM (${simd ? 'SIMD' : 'no SIMD'}, ${threadNote}): ${lead}`, threads, threadsWanted, simd, adapterInfo: probe?.description };
  }
  if (preference !== 'cpu') reasons.push('WASM failed to initialise');

  await tryBackend('cpu');
  await tf.ready();
  return { backend: 'cpu', reason: `CPU (pure JavaScript): ${preference === 'cpu' ? 'chosen by the user' : reasons.join('; ')}`, adapterInfo: probe?.description };
}

/** Parses a `?backend=` value; anything else means auto. */
export { parseBackendPreference } from './backend-preference.ts';
