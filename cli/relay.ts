// `swarm relay`: run a bootstrap relay. Locally it listens on ws://127.0.0.1 and publishes its address where the dev
// app finds it (public/relay.json); publicly it listens on WebRTC-Direct and WSS, with a health and metrics endpoint.
import { parseArgs } from 'node:util';
import { mkdir, readFile, writeFile, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys';
import type { PrivateKey } from '@libp2p/interface';
import { multiaddr } from '@multiformats/multiaddr';
import { startRelay, type SwarmRelay } from '../p2p/relay.ts';
import { startStatusServer, type StatusServer } from '../p2p/relay-metrics.ts';
import { createWebRTCDirectCertificate, parseWebRTCDirectCertificate, type WebRTCDirectCertificate } from '../p2p/webrtc-certificate.ts';
import { DEFAULT_RELAY_HOST, DEFAULT_RELAY_MAX_RESERVATIONS, DEFAULT_RELAY_PORT } from '../p2p/constants.ts';

export const DEFAULT_KEY_FILE = '.data/relay.key';
export const DEFAULT_CONFIG_FILE = 'public/relay.json';

const HELP = `usage: swarm relay [options]

Where it listens (a local swarm needs none of these; a public relay gives --listen):
  --host <ip>              interface of the default ws listener (default ${DEFAULT_RELAY_HOST})
  --port <n>               port of the default ws listener (default ${DEFAULT_RELAY_PORT}; 0 = any free port)
  --listen <multiaddr>     listen address, repeatable; replaces the default ws one. For https pages:
                             /ip4/0.0.0.0/udp/9091/webrtc-direct   (browsers need no certificate for it)
                             /ip4/0.0.0.0/tcp/9443/tls/ws          (needs --tls-cert and --tls-key)
  --announce <multiaddr>   address to advertise instead of the listen ones, repeatable (public IP or DNS name)
  --tls-cert <path>        PEM certificate (chain) for /tls/ws listeners
  --tls-key <path>         PEM private key for /tls/ws listeners
  --webrtc-cert <path>     WebRTC-Direct certificate, created if missing, so the certhash survives restarts
                           (default: <key-file>.webrtc.json)

Identity and limits:
  --key-file <path>        persistent identity, created if missing (default ${DEFAULT_KEY_FILE})
  --ephemeral              new identity and WebRTC certificate each start, nothing written to disk for them
  --max-reservations <n>   circuit reservations granted at once (default ${DEFAULT_RELAY_MAX_RESERVATIONS})
  --max-connections <n>    connections kept open at once (default max(1024, 2 x reservations))

Operations:
  --status <host:port>     serve GET /health and GET /metrics (Prometheus text) there, e.g. 127.0.0.1:9100
  --config-out <path>      where to write {"relays": [...]} for the dev app (default ${DEFAULT_CONFIG_FILE})
  --no-config              do not write the app config file
`;

export class RelayArgumentError extends Error {
  static override readonly name = 'RelayArgumentError';
  override readonly name = 'RelayArgumentError';
}

export interface RelayOptions {
  host: string;
  port: number;
  listen?: string[];
  announce?: string[];
  tlsCertFile?: string;
  tlsKeyFile?: string;
  webrtcCertFile?: string;
  maxReservations: number;
  maxConnections?: number;
  keyFile?: string;
  configOut?: string;
  status?: { host: string; port: number };
}

function positiveInt(name: string, raw: string | undefined, fallback: number, allowZero = false): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < (allowZero ? 0 : 1) || n > (name.includes('port') ? 65535 : Number.MAX_SAFE_INTEGER)) {
    throw new RelayArgumentError(`--${name} must be a ${allowZero ? 'non-negative' : 'positive'} integer${name.includes('port') ? ' up to 65535' : ''}, got '${raw}'`);
  }
  return n;
}

function multiaddrList(name: string, values: string[] | undefined): string[] | undefined {
  if (!values?.length) return undefined;
  for (const value of values) {
    try {
      multiaddr(value);
    } catch (err) {
      throw new RelayArgumentError(`--${name} '${value}' is not a multiaddr (${(err as Error).message})`);
    }
  }
  return values;
}

function hostPort(name: string, raw: string | undefined): { host: string; port: number } | undefined {
  if (raw === undefined) return undefined;
  const match = raw.match(/^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/);
  if (!match) throw new RelayArgumentError(`--${name} must be <host>:<port>, got '${raw}'`);
  return { host: match[1] ?? match[2], port: positiveInt(`${name} port`, match[3], 0, true) };
}

export function parseRelayArgs(argv: string[]): RelayOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      listen: { type: 'string', multiple: true },
      announce: { type: 'string', multiple: true },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'webrtc-cert': { type: 'string' },
      'max-reservations': { type: 'string' },
      'max-connections': { type: 'string' },
      'key-file': { type: 'string' },
      ephemeral: { type: 'boolean' },
      status: { type: 'string' },
      'config-out': { type: 'string' },
      'no-config': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) return 'help';
  if (!!values['tls-cert'] !== !!values['tls-key']) throw new RelayArgumentError('--tls-cert and --tls-key go together');
  const listen = multiaddrList('listen', values.listen);
  const wantsTls = listen?.some((a) => /\/(tls\/ws|wss)(\/|$)/.test(a)) ?? false;
  if (wantsTls && !values['tls-cert']) throw new RelayArgumentError('a /tls/ws listen address needs --tls-cert and --tls-key');
  const keyFile = values.ephemeral ? undefined : (values['key-file'] ?? DEFAULT_KEY_FILE);
  const wantsWebRTCDirect = listen?.some((a) => a.includes('/webrtc-direct')) ?? false;
  return {
    host: values.host ?? DEFAULT_RELAY_HOST,
    port: positiveInt('port', values.port, DEFAULT_RELAY_PORT, true),
    listen,
    announce: multiaddrList('announce', values.announce),
    tlsCertFile: values['tls-cert'],
    tlsKeyFile: values['tls-key'],
    webrtcCertFile: wantsWebRTCDirect && !values.ephemeral ? (values['webrtc-cert'] ?? `${keyFile}.webrtc.json`) : undefined,
    maxReservations: positiveInt('max-reservations', values['max-reservations'], DEFAULT_RELAY_MAX_RESERVATIONS),
    maxConnections: values['max-connections'] === undefined ? undefined : positiveInt('max-connections', values['max-connections'], 0),
    keyFile,
    status: hostPort('status', values.status),
    configOut: values['no-config'] ? undefined : (values['config-out'] ?? DEFAULT_CONFIG_FILE),
  };
}

/** Loads the relay's identity, creating it on first use so the printed multiaddr stays valid across restarts. */
export async function loadOrCreateKey(path: string): Promise<PrivateKey> {
  try {
    return privateKeyFromProtobuf(new Uint8Array(await readFile(path)));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new RelayArgumentError(`identity file ${path}: ${(err as Error).message}`);
  }
  const key = await generateKeyPair('Ed25519');
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, privateKeyToProtobuf(key), { mode: 0o600 });
  return key;
}

export async function loadOrCreateWebRTCCertificate(path: string): Promise<WebRTCDirectCertificate> {
  let text: string | undefined;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new RelayArgumentError(`WebRTC certificate ${path}: ${(err as Error).message}`);
  }
  if (text !== undefined) {
    try {
      return parseWebRTCDirectCertificate(text);
    } catch (err) {
      throw new RelayArgumentError(`WebRTC certificate ${path}: ${(err as Error).message} (delete it to make a new one; run links that name this relay change)`);
    }
  }
  const certificate = await createWebRTCDirectCertificate();
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, JSON.stringify({ privateKey: certificate.privateKey, pem: certificate.pem }, null, 2) + '\n', { mode: 0o600 });
  return certificate;
}

/** Reads and checks the WSS certificate and key, so a wrong file is reported as such and not as a TLS failure later. */
export async function loadTls(certFile: string, keyFile: string): Promise<{ cert: string; key: string }> {
  const read = async (what: string, path: string) => {
    try {
      return await readFile(path, 'utf8');
    } catch (err) {
      throw new RelayArgumentError(`${what} ${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
    }
  };
  const cert = await read('--tls-cert', certFile);
  const key = await read('--tls-key', keyFile);
  let parsed: X509Certificate;
  try {
    parsed = new X509Certificate(cert);
  } catch {
    throw new RelayArgumentError(`--tls-cert ${certFile}: not a PEM certificate`);
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch {
    throw new RelayArgumentError(`--tls-key ${keyFile}: not a PEM private key`);
  }
  if (!parsed.checkPrivateKey(privateKey)) throw new RelayArgumentError(`--tls-key ${keyFile} does not belong to the certificate in ${certFile}`);
  if (parsed.validToDate.getTime() < Date.now()) throw new RelayArgumentError(`--tls-cert ${certFile} expired on ${parsed.validToDate.toISOString()}`);
  return { cert, key };
}

export type RunningRelay = SwarmRelay & { status?: StatusServer; close(): Promise<void> };

/** Starts a relay from parsed options and writes the app config; used by `swarm relay` and `swarm start`. */
export async function runRelay(options: RelayOptions): Promise<RunningRelay> {
  const privateKey = options.keyFile ? await loadOrCreateKey(options.keyFile) : undefined;
  const tls = options.tlsCertFile && options.tlsKeyFile ? await loadTls(options.tlsCertFile, options.tlsKeyFile) : undefined;
  const webrtcDirectCertificate = options.webrtcCertFile ? await loadOrCreateWebRTCCertificate(options.webrtcCertFile) : undefined;
  const relay = await startRelay({
    host: options.host,
    port: options.port,
    listen: options.listen,
    announce: options.announce,
    tls,
    webrtcDirectCertificate,
    maxReservations: options.maxReservations,
    maxConnections: options.maxConnections,
    privateKey,
  });
  let status: StatusServer | undefined;
  if (options.status) {
    try {
      status = await startStatusServer(options.status.host, options.status.port, relay.node, relay.snapshot);
    } catch (err) {
      await relay.stop();
      throw new RelayArgumentError(`--status ${options.status.host}:${options.status.port}: ${(err as Error).message}`);
    }
  }
  if (options.configOut) {
    await mkdir(dirname(options.configOut), { recursive: true });
    await writeFile(
      options.configOut,
      JSON.stringify({ relays: relay.multiaddrs, peerId: relay.peerId, startedAt: new Date().toISOString() }, null, 2) + '\n',
    );
  }
  return {
    ...relay,
    status,
    async close() {
      await status?.close();
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
  let relay: RunningRelay;
  try {
    relay = await runRelay(options);
  } catch (err) {
    // One line: an operator's log or a systemd status shows it whole.
    console.error(`swarm relay: ${(err as Error).message.split('\n')[0]}`);
    return 1;
  }
  console.log(`relay ${relay.peerId} listening (max ${options.maxReservations} reservations)`);
  for (const ma of relay.multiaddrs) console.log(`  ${ma}`);
  if (relay.status) console.log(`status ${relay.status.url}/health ${relay.status.url}/metrics`);
  if (options.configOut) console.log(`app config written to ${options.configOut}`);

  await new Promise<void>((resolve) => {
    const shutdown = () => resolve();
    process.once('SIGINT', shutdown);
    process.once('SIGTERM', shutdown);
  });
  await relay.close();
  return 0;
}
