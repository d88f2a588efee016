import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';
import { fileURLToPath } from 'node:url';

const CROSS_ORIGIN_ISOLATION = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

// The app lives in app/; static assets (the default base model, prepared corpus, tfjs .wasm files) in public/.
export default defineConfig({
  root: 'app',
  publicDir: '../public',
  plugins: [react()],
  // Cross-origin isolation gives the page SharedArrayBuffer, which multi-threaded WASM needs.
  server: { host: '127.0.0.1', port: 5173, strictPort: true, headers: CROSS_ORIGIN_ISOLATION },
  preview: { host: '127.0.0.1', port: 4173, strictPort: true, headers: CROSS_ORIGIN_ISOLATION },
  build: { outDir: '../dist', emptyOutDir: true, target: 'es2022' },
  worker: { format: 'es' },
  // Pre-bundle the dependencies of every page at start-up: discovering them on a first visit makes Vite reload
  // the page, which kills whatever a test or benchmark had started in it.
  optimizeDeps: { entries: ['**/*.html'] },
  // One dependency cache per server: two dev servers sharing one cache re-optimise over each other and reload pages.
  cacheDir: fileURLToPath(new URL(`./node_modules/.vite-${process.env.SWARM_APP_PORT ?? 'default'}`, import.meta.url)),
});
