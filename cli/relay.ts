// `swarm relay`: run a bootstrap relay and publish its address where the app finds it (public/relay.json).
import { parseArgs } from 'node:util';
import { mkdir, readFile, writeFile, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys';
import type { PrivateKey } from '@libp2p/interface';
import { startRelay, type SwarmRelay } from '../p2p/relay.ts';
import { DEFAULT_RELAY_HOST, DEFAULT_RELAY_MAX_RESERVATIONS, DEFAULT_RELAY_PORT } from '../p2p/constants.ts';

export const DEFAULT_KEY_FILE = '.data/relay.key';
export const DEFAULT_CONFIG_FILE = 'public/relay.json';

const HELP = `usage: swarm relay [options]

  --host <ip>              interface to listen on (default ${DEFAULT_RELAY_HOST}; 0.0.0.0 to serve other machines)
  --port <n>               WebSockets port (default ${DEFAULT_RELAY_PORT}; 0 = any free port)
  --max-reservations <n>   circuit reservations granted at once (default ${DEFAULT_RELAY_MAX_RESERVATIONS})
  --key-file <path>        persistent identity, created if missing (default ${DEFAULT_KEY_FILE})
  --ephemeral              new identity each start, nothing written to disk for it
  --config-out <path>      where to write {"relays": [...]} for the app (default ${DEFAULT_CONFIG_FILE})
  --no-config              do not write the app config file
`;

export class RelayArgumentError extends Error {
  static override readonly name = 'RelayArgumentError';
  override readonly name = 'RelayArgumentError';
}

export interface RelayOptions {
  host: string;
  port: number;
  maxReservations: number;
  keyFile?: string;
  configOut?: string;
}

function positiveInt(name: string, raw: string | undefined, fallback: number, allowZero = false): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < (allowZero ? 0 : 1)) throw new RelayArgumentError(`--${name} must be a ${allowZero ? 'non-negative' : 'positive'} integer, got '${raw}'`);
  return n;
}

export function parseRelayArgs(argv: string[]): RelayOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      'max-reservations': { type: 'string' },
      'key-file': { type: 'string' },
      ephemeral: { type: 'boolean' },
      'config-out': { type: 'string' },
      'no-config': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) return 'help';
  return {
    host: values.host ?? DEFAULT_RELAY_HOST,
    port: positiveInt('port', values.port, DEFAULT_RELAY_PORT, true),
    maxReservations: positiveInt('max-reservations', values['max-reservations'], DEFAULT_RELAY_MAX_RESERVATIONS),
    keyFile: values.ephemeral ? undefined : (values['key-file'] ?? DEFAULT_KEY_FILE),
    configOut: values['no-config'] ? undefined : (values['config-out'] ?? DEFAULT_CONFIG_FILE),
  };
}

/** Loads the relay's identity, creating it on first use so the printed multiaddr stays valid across restarts. */
export async function loadOrCreateKey(path: string): Promise<PrivateKey> {
  try {
    return privateKeyFromProtobuf(new Uint8Array(await readFile(path)));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const key = await generateKeyPair('Ed25519');
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, privateKeyToProtobuf(key), { mode: 0o600 });
  return key;
}

/** Starts a relay from parsed options and writes the app config; used by `swarm relay` and `swarm start`. */
export async function runRelay(options: RelayOptions): Promise<SwarmRelay & { close(): Promise<void> }> {
  const privateKey = options.keyFile ? await loadOrCreateKey(options.keyFile) : undefined;
  const relay = await startRelay({
    host: options.host,
    port: options.port,
    maxReservations: options.maxReservations,
    privateKey,
  });
  if (options.configOut) {
    await mkdir(dirname(options.configOut), { recursive: true });
    await writeFile(
      options.configOut,
      JSON.stringify({ relays: relay.multiaddrs, peerId: relay.peerId, startedAt: new Date().toISOString() }, null, 2) + '\n',
    );
  }
  return {
    ...relay,
    async close() {
      await relay.stop();
      if (options.configOut) await rm(options.configOut, { force: true });
    },
  };
}

export async function main(argv: string[]): Promise<number> {
  let options: RelayOptions | 'help';
  try {
    options = parseRelayArgs(argv);
  } catch (err) {
    console.error(`swarm relay: ${(err as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (options === 'help') {
    console.log(HELP);
    return 0;
  }
  const relay = await runRelay(options);
  console.log(`relay ${relay.peerId} listening (max ${options.maxReservations} reservations)`);
  for (const ma of relay.multiaddrs) console.log(`  ${ma}`);
  if (options.configOut) console.log(`app config written to ${options.configOut}`);

  await new Promise<void>((resolve) => {
    const shutdown = () => resolve();
    process.once('SIGINT', shutdown);
    process.once('SIGTERM', shutdown);
  });
  await relay.close();
  return 0;
}
