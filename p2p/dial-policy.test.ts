import { describe, expect, it } from 'vitest';
import { multiaddr } from '@multiformats/multiaddr';
import { backoffDelay, isWebRtcAddress, withPeerId } from './dial-policy.ts';
import { parseRelayList, resolveRelays, InvalidRelayAddressError, NoRelayConfiguredError } from './relay-config.ts';

const RELAY = '/ip4/127.0.0.1/tcp/9090/ws/p2p/12D3KooWRF1uH6fh39NqA62p4JwJGiMSf1VmcasnQ18jgQaA8HjR';
const PEER = '12D3KooWGVdMtYANA5w2hozYHGgpJ3TYvLzu3MMf3WPqBUy5XYQc';

describe('dial policy helpers', () => {
  it('doubles the backoff per attempt up to the cap, with ±25% jitter', () => {
    // random() = 0.5 means no jitter: 500, 1000, 2000, 4000, then capped at 5000.
    expect([1, 2, 3, 4, 5, 9].map((n) => backoffDelay(n, 500, 5000, () => 0.5))).toEqual([500, 1000, 2000, 4000, 5000, 5000]);
    expect(backoffDelay(2, 500, 5000, () => 0)).toBe(750);
    expect(backoffDelay(2, 500, 5000, () => 1)).toBe(1250);
  });

  it('dials only browser-to-browser WebRTC addresses, never the relay or a plain circuit', () => {
    expect(isWebRtcAddress(multiaddr(`${RELAY}/p2p-circuit/webrtc/p2p/${PEER}`))).toBe(true);
    expect(isWebRtcAddress(multiaddr(`${RELAY}/p2p-circuit/p2p/${PEER}`))).toBe(false);
    expect(isWebRtcAddress(multiaddr(RELAY))).toBe(false);
  });

  it('ends every dialled address with the target peer id', () => {
    expect(withPeerId(multiaddr(`${RELAY}/p2p-circuit/webrtc`), PEER).toString()).toBe(`${RELAY}/p2p-circuit/webrtc/p2p/${PEER}`);
    const already = `${RELAY}/p2p-circuit/webrtc/p2p/${PEER}`;
    expect(withPeerId(multiaddr(already), PEER).toString()).toBe(already);
  });
});

describe('relay configuration', () => {
  const other = RELAY.replace('9090', '9091');

  it('takes the URL first, then the stored setting, then relay.json', async () => {
    const storage = { getItem: () => other };
    const fetchJson = async () => ({ relays: [RELAY] });
    expect(await resolveRelays({ search: `?relays=${encodeURIComponent(`${RELAY},${other}`)}`, storage, fetchJson })).toEqual([RELAY, other]);
    expect(await resolveRelays({ search: '', storage, fetchJson })).toEqual([other]);
    expect(await resolveRelays({ search: '', storage: { getItem: () => null }, fetchJson })).toEqual([RELAY]);
  });

  it('names what is wrong with a bad relay list', async () => {
    expect(() => parseRelayList('/ip4/127.0.0.1/tcp/9090/ws')).toThrow(InvalidRelayAddressError);
    expect(() => parseRelayList('not-a-multiaddr')).toThrow(InvalidRelayAddressError);
    await expect(resolveRelays({ search: '', fetchJson: async () => ({}) })).rejects.toThrow(NoRelayConfiguredError);
    await expect(resolveRelays({ search: '' })).rejects.toThrow(NoRelayConfiguredError);
  });
});
