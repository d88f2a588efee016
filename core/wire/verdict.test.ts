import { describe, expect, it } from 'vitest';
import { gossipDisposition, REJECT_REASONS, RejectionLedger, REJECTION_WEIGHTS } from './verdict.ts';

function clock(start = 1_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

describe('RejectionLedger', () => {
  it('disconnects a peer once weighted rejections in the window reach the threshold', () => {
    const time = clock();
    const ledger = new RejectionLedger({ windowMs: 10_000, disconnectThreshold: 3, now: time.now });
    expect(ledger.record('peerA', 'bad-hash')).toBe(false);
    expect(ledger.record('peerA', 'malformed')).toBe(false);
    expect(ledger.shouldDisconnect('peerB')).toBe(false);
    expect(ledger.record('peerA', 'non-finite')).toBe(true);
    expect(ledger.shouldDisconnect('peerA')).toBe(true);
  });

  it('counts timeouts and failed fetches fully (issue 12): eight stalls within the window lead to a disconnect', () => {
    const time = clock();
    const ledger = new RejectionLedger({ now: time.now });
    for (let i = 0; i < 7; i++) {
      expect(ledger.record('staller', i % 2 ? 'timeout' : 'fetch-failed')).toBe(false);
      time.advance(5_000);
    }
    expect(ledger.record('staller', 'timeout')).toBe(true);
    expect(ledger.recentWeight('staller')).toBe(8);
  });

  it('forgets rejections older than the window', () => {
    const time = clock();
    const ledger = new RejectionLedger({ windowMs: 10_000, disconnectThreshold: 3, now: time.now });
    ledger.record('peerA', 'bad-hash');
    ledger.record('peerA', 'bad-hash');
    time.advance(10_001);
    expect(ledger.record('peerA', 'bad-hash')).toBe(false);
    expect(ledger.recentWeight('peerA')).toBe(1);
    expect(ledger.countFor('peerA')).toBe(3);
  });

  it('weighs reasons an honest peer can cause less than proof of bad data', () => {
    const time = clock();
    const ledger = new RejectionLedger({ windowMs: 60_000, disconnectThreshold: 2, now: time.now });
    for (let i = 0; i < 7; i++) ledger.record('slow', 'replayed');
    expect(ledger.recentWeight('slow')).toBeCloseTo(7 * 0.25);
    expect(ledger.shouldDisconnect('slow')).toBe(false);
    expect(ledger.record('slow', 'replayed')).toBe(true);
    expect(REJECTION_WEIGHTS['bad-signature']).toBe(1);
    expect(gossipDisposition('bad-signature')).toBe('reject');
    expect(gossipDisposition('replayed')).toBe('ignore');
  });

  it('snapshots totals per reason and per peer, heaviest peer first', () => {
    const time = clock();
    const ledger = new RejectionLedger({ now: time.now });
    ledger.record('a', 'replayed', 'version 3 ≤ 4');
    ledger.record('b', 'bad-hash');
    ledger.record('b', 'truncated');
    ledger.recordVerdict('b', { ok: true, value: undefined });
    ledger.recordVerdict('a', { ok: false, reason: 'replayed', detail: 'again' });
    const snap = ledger.snapshot();
    expect(snap.total).toBe(4);
    expect(snap.byReason).toEqual({ replayed: 2, 'bad-hash': 1, truncated: 1 });
    expect(snap.peers.map((p) => p.peerId)).toEqual(['b', 'a']);
    expect(snap.peers[0]).toMatchObject({ total: 2, recentWeight: 2, byReason: { 'bad-hash': 1, truncated: 1 }, lastReason: 'truncated' });
    expect(snap.peers[1]).toMatchObject({ total: 2, recentWeight: 0.5, lastDetail: 'again' });
  });

  it('bounds memory: the least recently rejected peer is evicted beyond maxPeers', () => {
    const ledger = new RejectionLedger({ maxPeers: 2 });
    ledger.record('first', 'malformed');
    ledger.record('second', 'malformed');
    ledger.record('first', 'malformed');
    ledger.record('third', 'malformed');
    expect(ledger.countFor('second')).toBe(0);
    expect(ledger.countFor('first')).toBe(2);
    expect(ledger.countFor('third')).toBe(1);
    ledger.forget('first');
    expect(ledger.countFor('first')).toBe(0);
  });

  it('has a weight for every reason', () => {
    for (const reason of REJECT_REASONS) expect(REJECTION_WEIGHTS[reason]).toBeGreaterThan(0);
  });
});
