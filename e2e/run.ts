// Runs the Playwright suite against the system Chromium, or says how to get one.
import { spawnSync } from 'node:child_process';
import { findChromium, NO_CHROMIUM_MESSAGE } from './chromium.ts';

const executable = await findChromium();
if (!executable) {
  console.error(NO_CHROMIUM_MESSAGE);
  process.exit(1);
}
const result = spawnSync(
  process.execPath,
  ['node_modules/@playwright/test/cli.js', 'test', '-c', 'e2e/playwright.config.ts', ...process.argv.slice(2)],
  { stdio: 'inherit', env: { ...process.env, CHROMIUM_PATH: executable } },
);
process.exit(result.status ?? 1);
