import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// The app lives in app/; static assets (the default base model, prepared corpus, tfjs .wasm files) in public/.
export default defineConfig({
  root: 'app',
  publicDir: '../public',
  plugins: [react()],
  server: { host: '127.0.0.1', port: 5173, strictPort: true },
  preview: { host: '127.0.0.1', port: 4173, strictPort: true },
  build: { outDir: '../dist', emptyOutDir: true, target: 'es2022' },
  worker: { format: 'es' },
  optimizeDeps: { exclude: ['@tensorflow/tfjs-backend-wasm'] },
});
