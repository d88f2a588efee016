// tfjs in Node: the WASM backend (about 6x faster than the pure-JS CPU backend for a training step here),
// loading its .wasm files from the installed package; or WebGPU through Dawn's Node binding (the `webgpu` dev
// dependency), so the browser's GPU path can be measured and tested without a browser.
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-cpu';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';

export type NodeBackend = 'wasm' | 'cpu' | 'webgpu';

export class NodeWebGpuUnavailableError extends Error {
  static override readonly name = 'NodeWebGpuUnavailableError';
  override readonly name = NodeWebGpuUnavailableError.name;
}

/**
 * Software Vulkan drivers tried when the system's own find no adapter. Debian 12's lavapipe (Mesa 22.3) lacks
 * shaderUniformBufferArrayDynamicIndexing, which Dawn requires, so Dawn refuses it; Chromium ships SwiftShader's
 * Vulkan driver, the one Chrome itself falls back to.
 */
const SOFTWARE_VULKAN_ICDS = ['/usr/lib/chromium/vk_swiftshader_icd.json', '/usr/lib/chromium-browser/vk_swiftshader_icd.json'];

export interface NodeWebGpu {
  /** vendor, architecture, device, description of the adapter Dawn chose. */
  adapterInfo: string;
  /** The Vulkan driver manifest forced through VK_ICD_FILENAMES, when the system's drivers offered no adapter. */
  forcedIcd?: string;
}

type DawnModule = { create(options: string[]): GPU; globals: Record<string, unknown> };
type AdapterWithInfo = GPUAdapter & { info?: Record<string, string> };

/**
 * Installs a Dawn GPU as navigator.gpu, first with the system's Vulkan drivers, then with a software one.
 * Call once per process, before tfjs-backend-webgpu is imported: it registers its backend only if navigator.gpu
 * exists at import time.
 */
let installed: Promise<NodeWebGpu> | undefined;

export function installNodeWebGpu(): Promise<NodeWebGpu> {
  installed ??= install();
  return installed;
}

async function install(): Promise<NodeWebGpu> {
  let dawn: DawnModule;
  try {
    dawn = (await import('webgpu')) as unknown as DawnModule;
  } catch (error) {
    throw new NodeWebGpuUnavailableError(`the 'webgpu' package (Dawn for Node) is not installed: ${(error as Error).message}`);
  }
  Object.assign(globalThis, dawn.globals);
  // The Vulkan loader warns about XDG_RUNTIME_DIR when it is unset; it does not need it for compute.
  process.env.XDG_RUNTIME_DIR ??= '/tmp';
  const candidates: (string | undefined)[] = [undefined];
  if (!process.env.VK_ICD_FILENAMES) candidates.push(...SOFTWARE_VULKAN_ICDS.filter((p) => existsSync(p)));
  for (const icd of candidates) {
    if (icd) process.env.VK_ICD_FILENAMES = icd;
    const gpu = dawn.create([]);
    const adapter = (await gpu.requestAdapter()) as AdapterWithInfo | null;
    if (!adapter) continue;
    const info = adapter.info ?? {};
    Object.defineProperty(globalThis.navigator, 'gpu', { configurable: true, value: gpu });
    return { adapterInfo: [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ') || 'unknown adapter', forcedIcd: icd };
  }
  if (candidates.length > 1) delete process.env.VK_ICD_FILENAMES;
  throw new NodeWebGpuUnavailableError(
    'Dawn found no WebGPU adapter: install a Vulkan loader and driver (Debian: apt-get install -y libvulkan1 mesa-vulkan-drivers, ' +
      'plus chromium for its SwiftShader driver where Mesa is older than Dawn needs)',
  );
}

export async function initNodeBackend(preferred: NodeBackend = 'wasm'): Promise<NodeBackend> {
  if (preferred === 'webgpu') {
    await installNodeWebGpu();
    await import('@tensorflow/tfjs-backend-webgpu');
    if (!(await tf.setBackend('webgpu'))) throw new NodeWebGpuUnavailableError('tfjs could not start its WebGPU backend on the Dawn adapter');
    await tf.ready();
    return 'webgpu';
  }
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
