import { describe, expect, it } from 'vitest';
import {
  DEPLOY_CONFIG_PATH,
  InvalidIceServerError,
  InvalidRelayAddressError,
  parseIceServers,
  RELAY_CONFIG_PATH,
  resolveNetworkConfig,
} from './relay-config.ts';

const ID = '12D3KooWEZxX9nGRQhXjLfGNWaoVCtWVc8Ufphk7NrdubV3bBF1J';
const DIRECT = `/ip4/203.0.113.7/udp/9091/webrtc-direct/certhash/uEiAlkwNI_Kpt6syeN6xIviuS4J2Iw5yvlnOEuPJWvZr4AQ/p2p/${ID}`;
const WSS = `/dns4/relay.example.org/tcp/443/tls/ws/p2p/${ID}`;

describe('ICE servers', () => {
  it('reads the compact run-link form, TURN credentials included', () => {
    expect(parseIceServers('stun:stun.example.org:3478, turn:alice:s%40cret@turn.example.org:3478?transport=udp')).toEqual([
      { urls: ['stun:stun.example.org:3478'] },
      { urls: ['turn:turn.example.org:3478?transport=udp'], username: 'alice', credential: 's@cret' },
    ]);
  });

  it('reads the JSON form', () => {
    const json = JSON.stringify([{ urls: 'turns:turn.example.org:5349', username: 'u', credential: 'p' }]);
    expect(parseIceServers(json)).toEqual([{ urls: ['turns:turn.example.org:5349'], username: 'u', credential: 'p' }]);
  });

  it('names what is wrong', () => {
    expect(() => parseIceServers('turn:turn.example.org:3478')).toThrow(/needs a username and a credential/);
    expect(() => parseIceServers('http://example.org')).toThrow(InvalidIceServerError);
    expect(() => parseIceServers('[{"urls": 3}]')).toThrow(InvalidIceServerError);
    expect(() => parseIceServers('[not json')).toThrow(/not valid JSON/);
  });
});

describe('network configuration', () => {
  const files = (deploy: unknown, relayJson: unknown = undefined) => async (url: string) => {
    if (url === DEPLOY_CONFIG_PATH && deploy !== undefined) return deploy;
    if (url === RELAY_CONFIG_PATH && relayJson !== undefined) return relayJson;
    throw new Error('404');
  };

  it('takes relays and ICE servers from the run link over the deploy config', async () => {
    const fetchJson = files({ relays: [WSS], iceServers: [{ urls: ['stun:deploy.example.org'] }] });
    const config = await resolveNetworkConfig({ search: `?relays=${encodeURIComponent(DIRECT)}&ice=stun:link.example.org`, fetchJson });
    expect(config).toEqual({ relays: [DIRECT], iceServers: [{ urls: ['stun:link.example.org'] }], problems: [] });
  });

  it('falls back to the deploy config, then to the local relay.json', async () => {
    const deployed = await resolveNetworkConfig({ search: '', fetchJson: files({ relays: [DIRECT, WSS], iceServers: [{ urls: 'stun:deploy.example.org' }] }) });
    expect(deployed).toEqual({ relays: [DIRECT, WSS], iceServers: [{ urls: ['stun:deploy.example.org'] }], problems: [] });
    // The dev server answers unknown paths with its HTML page, which is not JSON: no deploy config.
    const local = await resolveNetworkConfig({ search: '', fetchJson: files(undefined, { relays: [WSS] }) });
    expect(local).toEqual({ relays: [WSS], iceServers: [], problems: [] });
  });

  it('keeps the good relays of a link with a typo, and refuses a link with none', async () => {
    const config = await resolveNetworkConfig({ search: `?relays=${encodeURIComponent(`${DIRECT},/ip4/1.2.3.4/tcp/1/ws`)}` });
    expect(config.relays).toEqual([DIRECT]);
    expect(config.problems).toEqual(["Relay skipped: '/ip4/1.2.3.4/tcp/1/ws' does not end in /p2p/<relay peer id>."]);
    await expect(resolveNetworkConfig({ search: '?relays=nonsense' })).rejects.toThrow(InvalidRelayAddressError);
    await expect(resolveNetworkConfig({ search: `?relays=${encodeURIComponent(DIRECT)}&ice=turn:nocreds.example.org` })).rejects.toThrow(InvalidIceServerError);
  });
});
