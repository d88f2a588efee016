// Starts the app's Vite dev server on its own port for a benchmark, so a bench never collides with `npm start`
// or a test run on the default port.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';

const NODE = existsSync('node_modules/.bin/node') ? 'node_modules/.bin/node' : process.execPath;

export interface AppServer {
  url: string;
  stop(): Promise<void>;
}

/** extraArgs go to the vite command line (simulations pass `--config` for a server without HMR reloads). */
export async function startAppServer(port: number, extraArgs: string[] = []): Promise<AppServer> {
  const child = spawn(NODE, ['node_modules/vite/bin/vite.js', '--port', String(port), '--strictPort', ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, SWARM_APP_PORT: String(port) },
  });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`vite exited with ${child.exitCode}:\n${output}`);
    try {
      if ((await fetch(`${url}/@vite/client`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill();
      throw new Error(`vite did not answer on ${url} within 60 s:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return {
    url,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}
