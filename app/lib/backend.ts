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
  /** WASM threads in use (1 = single-threaded). */
  threads?: number;
  simd?: boolean;
}

export interface BackendOptions {
  /** Where the tfjs .wasm binaries are served (prepare-assets copies them to public/tfjs/). */
  wasmPath?: string;
  /** Force single-threaded WASM even when threads are available (for benchmarks). */
  wasmThreads?: number | 'auto';
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
  // In the production build threaded WASM cannot start: tfjs starts each pthread worker from the text of a function
  // (fn.toString()) that reads `_scriptDir` from the scope around it, which the worker does not have once bundled
  // ("ReferenceError: _scriptDir is not defined", seen on the built site served with COOP/COEP, mangled or not).
  const threadsWanted = options.wasmThreads ?? (import.meta.env?.PROD ? 1 : 'auto');
  if (threadsWanted !== 'auto' && threadsWanted <= 1) tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
  else {
    // Left alone, the WASM module sizes its pool from its own default, which gave one thread on a 2-core machine.
    setThreadsCount(threadsWanted === 'auto' ? Math.max(1, globalThis.navigator?.hardwareConcurrency ?? 1) : threadsWanted);
  }
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

  if (preference !== 'cpu' && (await tryBackend('wasm'))) {
    await tf.ready();
    const simd = Boolean(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'));
    const multithread = Boolean(await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT'));
    const threads = multithread ? getThreadsCount() : 1;
    const threadNote = multithread ? `${threads} threads` : crossOriginIsolated ? 'single thread (by request)' : 'single thread (page is not cross-origin isolated)';
    const lead = preference === 'wasm' ? 'chosen by the user' : reasons.join('; ') || 'default';
    return { backend: 'wasm', reason: `WASM (${simd ? 'SIMD' : 'no SIMD'}, ${threadNote}): ${lead}`, threads, simd, adapterInfo: probe?.description };
  }
  if (preference !== 'cpu') reasons.push('WASM failed to initialise');

  await tryBackend('cpu');
  await tf.ready();
  return { backend: 'cpu', reason: `CPU (pure JavaScript): ${preference === 'cpu' ? 'chosen by the user' : reasons.join('; ')}`, adapterInfo: probe?.description };
}

/** Parses a `?backend=` value; anything else means auto. */
export { parseBackendPreference } from './backend-preference.ts';
