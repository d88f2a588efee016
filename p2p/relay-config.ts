// Where a tab finds its bootstrap relays: the URL (?relays=a,b or ?relay=a), then the app setting in storage,
// then the relay.json that the local relay writes next to the app. Several relays are allowed; any one suffices.
import { multiaddr } from '@multiformats/multiaddr';

export const RELAYS_STORAGE_KEY = 'swarm.relays';
export const RELAY_CONFIG_PATH = '/relay.json';

export class NoRelayConfiguredError extends Error {
  static override readonly name = 'NoRelayConfiguredError';
  override readonly name = 'NoRelayConfiguredError';
}

export class InvalidRelayAddressError extends Error {
  static override readonly name = 'InvalidRelayAddressError';
  override readonly name = 'InvalidRelayAddressError';
}

/** Splits a comma/whitespace separated list and checks each entry is a multiaddr naming the relay's peer id. */
export function parseRelayList(text: string): string[] {
  const entries = text.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
  for (const entry of entries) {
    let ok = false;
    try {
      ok = multiaddr(entry).getComponents().some((c) => c.name === 'p2p');
    } catch {
      ok = false;
    }
    if (!ok) throw new InvalidRelayAddressError(`'${entry}' is not a relay multiaddr ending in /p2p/<peer id>`);
  }
  return [...new Set(entries)];
}

export interface RelaySources {
  search: string;
  storage?: Pick<Storage, 'getItem'>;
  fetchJson?: (url: string) => Promise<unknown>;
}

export async function resolveRelays(sources: RelaySources): Promise<string[]> {
  const params = new URLSearchParams(sources.search);
  const fromUrl = [params.get('relays'), params.get('relay')].filter((v): v is string => !!v).join(',');
  if (fromUrl) return parseRelayList(fromUrl);
  const stored = sources.storage?.getItem(RELAYS_STORAGE_KEY);
  if (stored) return parseRelayList(stored);
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
