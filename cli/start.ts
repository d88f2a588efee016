// `swarm start`: the relay and the app together, one Ctrl-C stops both.
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { runRelay, DEFAULT_CONFIG_FILE, DEFAULT_KEY_FILE } from './relay.ts';
import { DEFAULT_RELAY_HOST, DEFAULT_RELAY_MAX_RESERVATIONS, DEFAULT_RELAY_PORT } from '../p2p/constants.ts';

const HELP = `usage: swarm start [--preview] [--relay-port <n>] [--app-port <n>]

Starts a relay (its address goes to ${DEFAULT_CONFIG_FILE}, which the app reads) and the app
(vite dev server on 127.0.0.1:5173, or with --preview a preview of the last \`npm run build\`).`;

export async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      preview: { type: 'boolean' },
      'relay-port': { type: 'string' },
      'app-port': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const relay = await runRelay({
    host: DEFAULT_RELAY_HOST,
    port: values['relay-port'] ? Number(values['relay-port']) : DEFAULT_RELAY_PORT,
    maxReservations: DEFAULT_RELAY_MAX_RESERVATIONS,
    keyFile: DEFAULT_KEY_FILE,
    configOut: DEFAULT_CONFIG_FILE,
  });
  console.log(`relay  ${relay.multiaddrs[0]}`);
  const appPort = values['app-port'] ?? (values.preview ? '4173' : '5173');
  const app = spawn(process.execPath, ['node_modules/vite/bin/vite.js', ...(values.preview ? ['preview'] : []), '--host', '127.0.0.1', '--port', appPort, '--strictPort'], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const exited = new Promise<number>((resolve) => app.once('exit', (exitCode) => resolve(exitCode ?? 1)));
  const url = `http://127.0.0.1:${appPort}/`;
  // The address is printed only once the app answers, so that a busy port or a broken build is not reported as
  // a running app.
  let appExited = false;
  void exited.then(() => (appExited = true));
  const up = await waitForHttp(url, 60_000, () => appExited);
  if (!up) {
    console.error(`swarm start: the app did not start on ${url} (is port ${appPort} in use? try --app-port)`);
    app.kill('SIGTERM');
    await relay.close();
    return 1;
  }
  console.log(`app    ${url}   (Ctrl-C stops the app and the relay)`);
  const stop = () => app.kill('SIGTERM');
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const code = await exited;
  await relay.close();
  return code;
}

async function waitForHttp(url: string, timeoutMs: number, givenUp: () => boolean): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && !givenUp()) {
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      if (response.ok) return true;
    } catch {
      // Not listening yet.
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return false;
}
