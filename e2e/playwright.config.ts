import { defineConfig } from '@playwright/test';
import { CHROMIUM_ARGS } from './chromium.ts';

// SWARM_APP_PORT lets two suites run side by side on one machine.
export const APP_PORT = Number(process.env.SWARM_APP_PORT ?? 5173);

export default defineConfig({
  testDir: '.',
  testMatch: '**/*.spec.ts',
  // Tabs are real Chromium renderers training real models: two cores fit one spec at a time.
  workers: 1,
  fullyParallel: false,
  retries: 0,
  timeout: 240_000,
  reporter: [['list']],
  use: {
    baseURL: `http://127.0.0.1:${APP_PORT}`,
    launchOptions: { executablePath: process.env.CHROMIUM_PATH, args: CHROMIUM_ARGS },
  },
  webServer: [
    {
      command: `npx vite --port ${APP_PORT} --strictPort`,
      // Playwright runs it from this folder; Vite must start at the repository root to find its config.
      cwd: '..',
      // Vite always serves its client module, whatever pages exist.
      url: `http://127.0.0.1:${APP_PORT}/@vite/client`,
      reuseExistingServer: !process.env.CI,
      timeout: 120_000,
    },
  ],
});
