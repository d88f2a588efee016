import { describe, expect, it } from 'vitest';
import { PageFaults, readFaultParams, NO_FAULTS } from './faults.ts';
import { poisonPublished } from '../../core/swarm/byzantine.ts';
import { handAdapter } from '../../core/swarm/byzantine-fixtures.ts';
import { decodeAdapter, encodeAdapter } from '../../core/wire/codec.ts';
import type { Adapter } from '../../core/model/adapter.ts';

describe('PageFaults', () => {
  it('publishes the honest bytes when no Byzantine behaviour is set', () => {
    const bytes = encodeAdapter(handAdapter(), 'fp32');
    expect(new PageFaults(NO_FAULTS).outgoing(bytes, 'fp32')).toBe(bytes);
  });

  it('a sign-flip tab publishes a decodable adapter whose B is -scale × the honest B', () => {
    const honest = handAdapter();
    const faults = new PageFaults({ ...NO_FAULTS, byzantine: 'sign-flip', byzantineScale: 2 });
    const out = decodeAdapter(faults.outgoing(encodeAdapter(honest, 'fp32'), 'fp32'));
    expect(out.ok).toBe(true);
    if (!out.ok) return;
    expect([...out.adapter.modules.get('transformer.h.1.attn.c_attn')!.b]).toEqual([...honest.modules.get('transformer.h.1.attn.c_attn')!.b].map((v) => -2 * v));
    expect(faults.counters.corrupted).toBe(1);
  });

  it('a stale tab keeps publishing its first payload', () => {
    const faults = new PageFaults({ ...NO_FAULTS, byzantine: 'stale' });
    const first = encodeAdapter(handAdapter(), 'fp32');
    const later = poisonPublished({ mode: 'scaled', scale: 5, seed: 0 }, encodeAdapter(handAdapter(), 'fp32'), { first: null, rounds: 0 }, 'fp32').bytes;
    expect([...faults.outgoing(first, 'fp32')]).toEqual([...first]);
    expect([...faults.outgoing(later, 'fp32')]).toEqual([...first]);
    expect(faults.counters.corrupted).toBe(1);
  });

  it('drops the share of messages its random source says, counting each direction', () => {
    const draws = [0.1, 0.9, 0.29, 0.31];
    const faults = new PageFaults({ ...NO_FAULTS, drop: 0.3 }, () => draws.shift()!);
    expect([faults.dropOutgoing(), faults.dropOutgoing(), faults.dropIncoming(), faults.dropIncoming()]).toEqual([true, false, true, false]);
    expect(faults.counters).toMatchObject({ droppedOut: 1, droppedIn: 1 });
  });

  it('waits the configured latency', async () => {
    const waited: number[] = [];
    const faults = new PageFaults({ ...NO_FAULTS, latencyMs: 250 }, Math.random, async (ms) => void waited.push(ms));
    await faults.delay();
    expect(waited).toEqual([250]);
  });
});

describe('readFaultParams', () => {
  it('reads the URL parameters and ignores out-of-range ones', () => {
    expect(readFaultParams(new URLSearchParams('latency=300&drop=0.2&byzantine=scaled'))).toEqual({ latencyMs: 300, drop: 0.2, byzantine: 'scaled', byzantineScale: 10 });
    expect(readFaultParams(new URLSearchParams('latency=-1&drop=1.5&byzantine=evil&byzScale=0'))).toEqual(NO_FAULTS);
  });
});
