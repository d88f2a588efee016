import { describe, expect, it } from 'vitest';
import { multiaddr } from '@multiformats/multiaddr';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { TypedEventEmitter, type PeerId } from '@libp2p/interface';
import { backoffDelay, dialPolicy, dialTimeoutFor, isWebRtcAddress, rankRelays, withPeerId, type DialPolicyComponents } from './dial-policy.ts';
import { parseRelayList, resolveRelays, InvalidRelayAddressError, NoRelayConfiguredError } from './relay-config.ts';

const RELAY = '/ip4/127.0.0.1/tcp/9090/ws/p2p/12D3KooWRF1uH6fh39NqA62p4JwJGiMSf1VmcasnQ18jgQaA8HjR';
const PEER = '12D3KooWGVdMtYANA5w2hozYHGgpJ3TYvLzu3MMf3WPqBUy5XYQc';

describe('dial policy helpers', () => {
  it('ranks a run\'s relays per peer so that the first two spread peers evenly and stay put across reloads', () => {
    const relays = Array.from({ length: 10 }, (_, i) => ({ peerId: `relay${i}` }));
    const firstTwo = new Map<string, number>();
    for (let p = 0; p < 2000; p++) {
      const ranked = rankRelays(relays, `peer${p}`);
      expect(new Set(ranked.map((r) => r.peerId)).size).toBe(10);
      // The same peer ranks the same list alike, in any input order.
      expect(rankRelays([...relays].reverse(), `peer${p}`)).toEqual(ranked);
      for (const r of ranked.slice(0, 2)) firstTwo.set(r.peerId, (firstTwo.get(r.peerId) ?? 0) + 1);
    }
    // 4000 picks over 10 relays: 400 each on average; none far off.
    for (const r of relays) {
      expect(firstTwo.get(r.peerId)).toBeGreaterThan(300);
      expect(firstTwo.get(r.peerId)).toBeLessThan(500);
    }
  });

  it('doubles the backoff per attempt up to the cap, with ±25% jitter', () => {
    // random() = 0.5 means no jitter: 500, 1000, 2000, 4000, then capped at 5000.
    expect([1, 2, 3, 4, 5, 9].map((n) => backoffDelay(n, 500, 5000, () => 0.5))).toEqual([500, 1000, 2000, 4000, 5000, 5000]);
    expect(backoffDelay(2, 500, 5000, () => 0)).toBe(750);
    expect(backoffDelay(2, 500, 5000, () => 1)).toBe(1250);
  });

  it('keeps the first retries of a failed dial short, then gives each one twice as long, up to the cap', () => {
    expect([0, 1, 2, 3, 4, 5, 50].map((n) => dialTimeoutFor(n, 5_000, 30_000))).toEqual([5_000, 5_000, 5_000, 10_000, 20_000, 30_000, 30_000]);
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

describe('dial policy under load', () => {
  // A fake connection manager whose dials hang until their timeout, as WebRTC handshakes do on a saturated CPU.
  async function setup(candidates: number, init: Parameters<typeof dialPolicy>[0]) {
    const ids: PeerId[] = [];
    for (let i = 0; i <= candidates; i++) ids.push(peerIdFromPrivateKey(await generateKeyPair('Ed25519')));
    ids.sort((a, b) => (a.toString() < b.toString() ? -1 : 1));
    const [me, ...others] = ids; // the smallest id: every tie-break says this side dials
    const dials: Array<{ target: string; timeoutMs: number; startedAt: number }> = [];
    const events = new TypedEventEmitter<Record<string, CustomEvent>>();
    const connectionManager = {
      getConnections: () => [],
      openConnection: (addrs: ReturnType<typeof multiaddr>[], options: { signal: AbortSignal }) => {
        const target = addrs[0].getComponents().findLast((c) => c.name === 'p2p')!.value!;
        dials.push({ target, timeoutMs: -1, startedAt: Date.now() });
        return new Promise((_, rejectDial) => options.signal.addEventListener('abort', () => rejectDial(new Error('dial timed out'))));
      },
    };
    const silent = Object.assign(() => {}, { error: () => {}, trace: () => {}, enabled: false });
    const components = {
      peerId: me,
      connectionManager,
      peerStore: {},
      events,
      logger: { forComponent: () => silent },
    } as unknown as DialPolicyComponents;
    const policy = dialPolicy({ tickMs: 10, initialBackoffMs: 10, maxBackoffMs: 20, ...init })(components) as unknown as {
      start(): void; afterStart(): void; stop(): void; pending(): Array<{ attempts: number }>;
    };
    policy.start();
    for (const id of others) {
      events.dispatchEvent(new CustomEvent('peer:discovery', { detail: { id, multiaddrs: [multiaddr(`${RELAY}/p2p-circuit/webrtc/p2p/${id}`)] } }));
    }
    policy.afterStart();
    return { policy, dials };
  }

  it('keeps at most maxConcurrentDials WebRTC dials in flight, and retries each with a longer timeout', async () => {
    const { policy, dials } = await setup(6, { maxConcurrentDials: 2, dialTimeoutMs: 40, maxDialTimeoutMs: 160 });
    await new Promise((r) => setTimeout(r, 30));
    // Six candidates, all hanging: only two dials started in the first ticks.
    expect(dials.length).toBe(2);
    await new Promise((r) => setTimeout(r, 600));
    policy.stop();
    // Every candidate was tried in the end, and the ones tried again had failed before.
    expect(new Set(dials.map((d) => d.target)).size).toBe(6);
    expect(policy.pending().some((p) => p.attempts >= 2)).toBe(true);
    // Never more than two at once: a dial lasts at least its timeout (40 ms), so starts come in pairs at most.
    const starts = dials.map((d) => d.startedAt).sort((a, b) => a - b);
    for (let i = 2; i < starts.length; i++) expect(starts[i] - starts[i - 2]).toBeGreaterThanOrEqual(35);
  });
});
