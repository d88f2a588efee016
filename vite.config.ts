import { defineConfig, type Plugin } from 'vite';
import react from '@vitejs/plugin-react';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseIceServers, parseRelayList, type DeployConfig } from './p2p/relay-config.ts';

const CROSS_ORIGIN_ISOLATION = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

/**
 * The deploy-time network config: relays and ICE servers from SWARM_CONFIG (a JSON file like
 * deploy/swarm-config.example.json), overridden by SWARM_RELAYS and SWARM_ICE_SERVERS (the ?relays= and ?ice=
 * syntax), checked at build time and written into the build as swarm-config.json. A run link's parameters still win.
 */
export function deployConfigFromEnv(env: NodeJS.ProcessEnv): DeployConfig | undefined {
  const config: DeployConfig = {};
  if (env.SWARM_CONFIG) {
    const file = JSON.parse(readFileSync(env.SWARM_CONFIG, 'utf8')) as { relays?: unknown; iceServers?: unknown };
    if (file.relays !== undefined) config.relays = parseRelayList((file.relays as string[]).join(','));
    if (file.iceServers !== undefined) config.iceServers = parseIceServers(JSON.stringify(file.iceServers));
  }
  if (env.SWARM_RELAYS) config.relays = parseRelayList(env.SWARM_RELAYS);
  if (env.SWARM_ICE_SERVERS) config.iceServers = parseIceServers(env.SWARM_ICE_SERVERS);
  return config.relays || config.iceServers ? config : undefined;
}

function deployFiles(): Plugin {
  return {
    name: 'swarm-deploy-files',
    apply: 'build',
    generateBundle() {
      const config = deployConfigFromEnv(process.env);
      if (config) this.emitFile({ type: 'asset', fileName: 'swarm-config.json', source: JSON.stringify(config, null, 2) + '\n' });
      // Hosts that read a _headers file (Netlify, Cloudflare Pages) isolate the page by headers; elsewhere
      // coi-serviceworker.js does it.
      const headers = Object.entries(CROSS_ORIGIN_ISOLATION).map(([k, v]) => `  ${k}: ${v}`).join('\n');
      this.emitFile({ type: 'asset', fileName: '_headers', source: `/*\n${headers}\n  Cross-Origin-Resource-Policy: same-origin\n` });
    },
  };
}

/**
 * Threaded WASM in the production build. tfjs-backend-wasm 4.22 starts each pthread worker from a Blob holding the
 * text of its module factory (`wasmFactoryThreadedSimd.toString()`); once bundled and minified, that text names
 * variables of the bundle's scope (`_scriptDir` and the minifier's renamings) that the worker does not have, and the
 * workers die with a ReferenceError. This swaps the Blob for the module's own unbundled script, served from
 * public/tfjs/ (prepare-assets copies it from the package) at the URL the backend puts in WASM_THREADED_SCRIPT_GLOBAL
 * (app/lib/backend.ts). A tfjs version whose code no longer matches fails the build instead of silently losing threads.
 */
function wasmThreadsInBuild(): Plugin {
  const blob = /new Blob\(\[`var WasmBackendModuleThreadedSimd = ` \+\s*wasmFactoryThreadedSimd\.toString\(\)\], \{ type: 'text\/javascript' \}\)/;
  return {
    name: 'swarm-wasm-threads',
    apply: 'build',
    transform(code, id) {
      if (!/tfjs-backend-wasm[\\/]dist[\\/]backend_wasm\.js$/.test(id)) return null;
      if (!blob.test(code)) this.error('tfjs-backend-wasm changed: the threaded module Blob this build replaces is not in backend_wasm.js');
      return { code: code.replace(blob, (original) => `(globalThis.__swarmWasmThreadedScript ?? ${original})`), map: null };
    },
  };
}

// The app lives in app/; static assets (the default base model, prepared corpus, tfjs .wasm files) in public/.
export default defineConfig({
  root: 'app',
  publicDir: '../public',
  // Relative URLs: the built site works from any folder of any static host.
  base: './',
  plugins: [react(), deployFiles(), wasmThreadsInBuild()],
  // Cross-origin isolation gives the page SharedArrayBuffer, which multi-threaded WASM needs.
  server: { host: '127.0.0.1', port: 5173, strictPort: true, headers: CROSS_ORIGIN_ISOLATION },
  preview: { host: '127.0.0.1', port: 4173, strictPort: true, headers: CROSS_ORIGIN_ISOLATION },
  build: { outDir: '../dist', emptyOutDir: true, target: 'es2022' },
  // Workers are bundled by their own pipeline: the training worker is where threaded WASM starts.
  worker: { format: 'es', plugins: () => [wasmThreadsInBuild()] },
  // Pre-bundle the dependencies of every page at start-up: discovering them on a first visit makes Vite reload
  // the page, which kills whatever a test or benchmark had started in it.
  optimizeDeps: { entries: ['**/*.html'] },
  // One dependency cache per server: two dev servers sharing one cache re-optimise over each other and reload pages.
  cacheDir: fileURLToPath(new URL(`./node_modules/.vite-${process.env.SWARM_APP_PORT ?? 'default'}`, import.meta.url)),
});
