// Where a tab finds its bootstrap relays and ICE servers. Relays: the run link (?relays=a,b or ?relay=a), then the
// app setting in storage, then the deploy-time config baked into the build (swarm-config.json), then the relay.json
// that the local relay writes next to the dev app. ICE servers: the run link (?ice=...), then the deploy config.
// Several relays are allowed; any one suffices.
import { multiaddr } from '@multiformats/multiaddr';

export const RELAYS_STORAGE_KEY = 'swarm.relays';
export const RELAY_CONFIG_PATH = '/relay.json';
/** Relative, so a build served from any folder of any static host finds its own config. */
export const DEPLOY_CONFIG_PATH = './swarm-config.json';

export class NoRelayConfiguredError extends Error {
  static override readonly name = 'NoRelayConfiguredError';
  override readonly name = 'NoRelayConfiguredError';
}

export class InvalidRelayAddressError extends Error {
  static override readonly name = 'InvalidRelayAddressError';
  override readonly name = 'InvalidRelayAddressError';
}

export class InvalidIceServerError extends Error {
  static override readonly name = 'InvalidIceServerError';
  override readonly name = 'InvalidIceServerError';
}

/** An RTCIceServer, spelled out so that Node code (the config plugin, tests) can use it without DOM types. */
export interface IceServer {
  urls: string[];
  username?: string;
  credential?: string;
}

function checkRelay(entry: string): string | undefined {
  try {
    return multiaddr(entry).getComponents().some((c) => c.name === 'p2p') ? undefined : `'${entry}' does not end in /p2p/<relay peer id>`;
  } catch {
    return `'${entry}' is not a multiaddr`;
  }
}

function splitList(text: string): string[] {
  return text.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
}

/** Splits a comma/whitespace separated list and checks each entry is a multiaddr naming the relay's peer id. */
export function parseRelayList(text: string): string[] {
  const entries = splitList(text);
  for (const entry of entries) {
    const problem = checkRelay(entry);
    if (problem) throw new InvalidRelayAddressError(`${problem}; a relay address looks like /ip4/203.0.113.7/udp/9091/webrtc-direct/certhash/<hash>/p2p/<peer id>`);
  }
  return [...new Set(entries)];
}

/** Like parseRelayList, but keeps the good entries of a list with bad ones, so one typo does not cost the others. */
export function parseRelayListLenient(text: string): { relays: string[]; problems: string[] } {
  const relays: string[] = [];
  const problems: string[] = [];
  for (const entry of splitList(text)) {
    const problem = checkRelay(entry);
    if (problem) problems.push(problem);
    else if (!relays.includes(entry)) relays.push(entry);
  }
  return { relays, problems };
}

const ICE_URL = /^(stun|stuns|turn|turns):[^\s]+$/;

function iceServer(value: unknown): IceServer {
  const v = (value ?? {}) as Record<string, unknown>;
  const urls = typeof v.urls === 'string' ? [v.urls] : Array.isArray(v.urls) ? v.urls : [];
  if (urls.length === 0 || !urls.every((u): u is string => typeof u === 'string' && ICE_URL.test(u))) {
    throw new InvalidIceServerError(`ICE server ${JSON.stringify(value)} needs "urls" of stun:, stuns:, turn: or turns: URLs`);
  }
  const turn = urls.some((u) => u.startsWith('turn'));
  if (turn && (typeof v.username !== 'string' || typeof v.credential !== 'string')) {
    throw new InvalidIceServerError(`TURN server ${urls[0]} needs a username and a credential`);
  }
  return turn ? { urls, username: v.username as string, credential: v.credential as string } : { urls };
}

/**
 * ICE servers from a run link or a deploy setting: either JSON (an RTCIceServer array) or a comma-separated list of
 * URLs where a TURN URL carries its credentials as user:credential@ (turn:alice:s3cret@turn.example.org:3478).
 */
export function parseIceServers(text: string): IceServer[] {
  const trimmed = text.trim();
  if (trimmed === '') return [];
  if (trimmed.startsWith('[')) {
    let value: unknown;
    try {
      value = JSON.parse(trimmed);
    } catch (err) {
      throw new InvalidIceServerError(`ICE servers are not valid JSON: ${(err as Error).message}`);
    }
    if (!Array.isArray(value)) throw new InvalidIceServerError('ICE servers must be a JSON array');
    return value.map(iceServer);
  }
  return trimmed.split(',').map((entry) => {
    const match = entry.trim().match(/^(turns?):([^:@/]+):([^@]+)@(.+)$/);
    if (match) return iceServer({ urls: [`${match[1]}:${match[4]}`], username: decodeURIComponent(match[2]), credential: decodeURIComponent(match[3]) });
    return iceServer({ urls: [entry.trim()] });
  });
}

export interface RelaySources {
  search: string;
  storage?: Pick<Storage, 'getItem'>;
  fetchJson?: (url: string) => Promise<unknown>;
}

export interface DeployConfig {
  relays?: string[];
  iceServers?: IceServer[];
}

/** The build's swarm-config.json, or undefined where there is none (the dev server answers with its HTML page). */
export async function loadDeployConfig(fetchJson: ((url: string) => Promise<unknown>) | undefined): Promise<DeployConfig | undefined> {
  if (!fetchJson) return undefined;
  let value: unknown;
  try {
    value = await fetchJson(DEPLOY_CONFIG_PATH);
  } catch {
    return undefined;
  }
  if (!value || typeof value !== 'object') return undefined;
  const v = value as Record<string, unknown>;
  return {
    relays: Array.isArray(v.relays) ? v.relays.filter((r): r is string => typeof r === 'string') : undefined,
    iceServers: Array.isArray(v.iceServers) ? parseIceServers(JSON.stringify(v.iceServers)) : undefined,
  };
}

export async function resolveRelays(sources: RelaySources, deploy?: DeployConfig): Promise<string[]> {
  const params = new URLSearchParams(sources.search);
  const fromUrl = [params.get('relays'), params.get('relay')].filter((v): v is string => !!v).join(',');
  if (fromUrl) return parseRelayList(fromUrl);
  const stored = sources.storage?.getItem(RELAYS_STORAGE_KEY);
  if (stored) return parseRelayList(stored);
  if (deploy?.relays?.length) return parseRelayList(deploy.relays.join(','));
  if (sources.fetchJson) {
    let config: unknown;
    try {
      config = await sources.fetchJson(RELAY_CONFIG_PATH);
    } catch (err) {
      throw new NoRelayConfiguredError(`no relay configured and ${RELAY_CONFIG_PATH} could not be read (is \`npm run relay\` running?): ${(err as Error).message}`);
    }
    const relays = (config as { relays?: unknown })?.relays;
    if (Array.isArray(relays) && relays.every((r) => typeof r === 'string') && relays.length > 0) return parseRelayList(relays.join(','));
    throw new NoRelayConfiguredError(`${RELAY_CONFIG_PATH} holds no "relays" list`);
  }
  throw new NoRelayConfiguredError('no relay configured: pass ?relays=<multiaddr>, set it in the app settings, or run `npm run relay`');
}

export interface NetworkConfig {
  relays: string[];
  iceServers: IceServer[];
  /** Entries that were skipped, each a sentence for the page. */
  problems: string[];
}

/**
 * Relays and ICE servers for a tab. A relay list with some bad entries keeps the good ones and names the bad ones
 * in `problems`; a list with no good entry, or bad ICE servers, throws a named error whose message the page shows.
 */
export async function resolveNetworkConfig(sources: RelaySources): Promise<NetworkConfig> {
  const params = new URLSearchParams(sources.search);
  const deploy = await loadDeployConfig(sources.fetchJson);
  const problems: string[] = [];
  let relays: string[];
  const fromUrl = [params.get('relays'), params.get('relay')].filter((v): v is string => !!v).join(',');
  if (fromUrl) {
    const lenient = parseRelayListLenient(fromUrl);
    if (lenient.relays.length === 0) throw new InvalidRelayAddressError(`the run link names no usable relay: ${lenient.problems.join('; ')}`);
    relays = lenient.relays;
    problems.push(...lenient.problems.map((p) => `Relay skipped: ${p}.`));
  } else {
    relays = await resolveRelays(sources, deploy);
  }
  const ice = params.get('ice');
  const iceServers = ice !== null ? parseIceServers(ice) : (deploy?.iceServers ?? []);
  return { relays, iceServers, problems };
}
