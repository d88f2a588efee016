import { describe, expect, it } from 'vitest';
import { KNOWN_PEER_MAX_AGE_MS, KNOWN_PEERS_STORAGE_KEY, KnownPeers } from './known-peers.ts';

function memoryStorage(initial: Record<string, string> = {}) {
  const data = new Map(Object.entries(initial));
  return { getItem: (k: string) => data.get(k) ?? null, setItem: (k: string, v: string) => void data.set(k, v), data };
}

describe('known peers', () => {
  it('puts relays reached on an earlier visit first, and survives a reload', () => {
    const storage = memoryStorage();
    let now = 1_000;
    const first = new KnownPeers(storage, () => now);
    first.rememberRelay('R2', '/dns4/r2/tcp/443/tls/ws/p2p/R2');
    now += 10;
    first.rememberPeer('P1', ['/dns4/r2/tcp/443/tls/ws/p2p/R2/p2p-circuit/webrtc/p2p/P1']);
    const next = new KnownPeers(storage, () => now);
    expect(next.orderRelays(['/dns4/r1/tcp/443/tls/ws/p2p/R1', '/dns4/r2/tcp/443/tls/ws/p2p/R2'])).toEqual([
      '/dns4/r2/tcp/443/tls/ws/p2p/R2',
      '/dns4/r1/tcp/443/tls/ws/p2p/R1',
    ]);
    expect(next.peers()).toEqual([{ peerId: 'P1', addrs: ['/dns4/r2/tcp/443/tls/ws/p2p/R2/p2p-circuit/webrtc/p2p/P1'] }]);
  });

  it('forgets old entries and keeps a bounded number', () => {
    const storage = memoryStorage();
    let now = 0;
    const known = new KnownPeers(storage, () => now);
    for (let i = 0; i < 40; i++) {
      now = i;
      known.rememberPeer(`P${i}`, [`/p2p/P${i}`]);
    }
    expect(known.peers().length).toBe(16);
    expect(known.peers()[0].peerId).toBe('P39');
    now = 39 + KNOWN_PEER_MAX_AGE_MS + 1;
    expect(new KnownPeers(storage, () => now).peers()).toEqual([]);
  });

  it('drops malformed stored data instead of trusting it', () => {
    const bad = memoryStorage({ [KNOWN_PEERS_STORAGE_KEY]: '{"relays": {"R": {"addrs": [1, "javascript:x", "/ok/p2p/R"], "lastSeen": 5}, "S": "x"}, "peers": []}' });
    expect(new KnownPeers(bad, () => 10).relays()).toEqual(['/ok/p2p/R']);
    expect(new KnownPeers(memoryStorage({ [KNOWN_PEERS_STORAGE_KEY]: '{not json' })).relays()).toEqual([]);
  });
});
