// Test fixture for the CLI commands' end-to-end tests: a fresh temp folder and captured console output per test.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, vi } from 'vitest';

export interface CommandSandbox {
  dir: string;
  stdout: string[];
  stderr: string[];
}

/** Registers the hooks; the returned object is refilled before each test. */
export function useCommandSandbox(prefix: string): CommandSandbox {
  const sandbox: CommandSandbox = { dir: '', stdout: [], stderr: [] };
  beforeEach(() => {
    sandbox.dir = mkdtempSync(join(tmpdir(), prefix));
    sandbox.stdout = [];
    sandbox.stderr = [];
    vi.spyOn(console, 'log').mockImplementation((...args) => void sandbox.stdout.push(args.join(' ')));
    vi.spyOn(console, 'error').mockImplementation((...args) => void sandbox.stderr.push(args.join(' ')));
  });
  afterEach(() => {
    vi.restoreAllMocks();
    rmSync(sandbox.dir, { recursive: true, force: true });
  });
  return sandbox;
}
