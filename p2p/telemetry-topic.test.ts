import { describe, expect, it } from 'vitest';
import { TelemetryAdmission, TelemetryRateLimiter } from './telemetry-topic.ts';
import { encodeTelemetry, type TelemetryReport } from '../core/wire/telemetry.ts';

const RUN = 'e2e-run.0123456789abcdef';
const ALICE = '12D3KooWAlice111111';
const MALLORY = '12D3KooWMallory9999';

function report(peerId: string, timeMs: number, patch: Partial<TelemetryReport> = {}): TelemetryReport {
  return {
    formatVersion: 1, peerId, runId: RUN, timeMs, step: 3, trainLoss: 3.5, heldOutLoss: null, merges: 0, bytesSent: 0, bytesReceived: 0,
    versionsAnnounced: 0, versionsFetched: 0, neighbours: [], rejections: {}, tokensPerSecond: null, backend: 'wasm', ...patch,
  };
}

describe('telemetry rate limiter', () => {
  it('lets a burst of 2 through, then one per interval, per sender', () => {
    const limiter = new TelemetryRateLimiter(2000, 2);
    // t=0: two tokens; the third message is refused.
    expect([limiter.take(ALICE, 0), limiter.take(ALICE, 0), limiter.take(ALICE, 0)]).toEqual([true, true, false]);
    // Another sender has its own bucket.
    expect(limiter.take(MALLORY, 0)).toBe(true);
    // 1 s later half a token has come back: still refused; at 2 s a whole one.
    expect(limiter.take(ALICE, 1000)).toBe(false);
    expect(limiter.take(ALICE, 2000)).toBe(true);
    expect(limiter.take(ALICE, 2100)).toBe(false);
    // A long silence refills to the burst, never beyond it.
    expect([limiter.take(ALICE, 100_000), limiter.take(ALICE, 100_000), limiter.take(ALICE, 100_000)]).toEqual([true, true, false]);
  });

  it('holds a flood of 20 messages a second to one every 2 s sustained', () => {
    const limiter = new TelemetryRateLimiter(2000, 2);
    let passed = 0;
    for (let t = 0; t < 60_000; t += 50) if (limiter.take(MALLORY, t)) passed++;
    // 2 at once, then one per 2 s over the remaining 60 s: 2 + floor(59_950 / 2000) = 31.
    expect(passed).toBe(31);
  });
});

describe('telemetry admission', () => {
  const at = (t: number) => () => t;

  it('accepts a well-formed report from its own peer and names each defect', () => {
    let now = 0;
    const admission = new TelemetryAdmission({ wireRunId: RUN, now: () => now, burst: 100 });
    const ok = admission.admit(encodeTelemetry(report(ALICE, 1000)), ALICE);
    expect(ok).toEqual({ ok: true, value: report(ALICE, 1000) });
    const reason = (bytes: Uint8Array, sender = ALICE) => {
      now += 1;
      const v = admission.admit(bytes, sender);
      return v.ok ? 'accepted' : v.reason;
    };
    expect(reason(new TextEncoder().encode('{"not":"telemetry"'))).toBe('malformed');
    expect(reason(new TextEncoder().encode('x'.repeat(17_000)))).toBe('oversized');
    expect(reason(encodeTelemetry(report(ALICE, 2000)), MALLORY)).toBe('bad-signature');
    expect(reason(encodeTelemetry(report(ALICE, 2000, { runId: 'other-run.0123456789abcdef' })))).toBe('wrong-run');
    expect(reason(encodeTelemetry(report(ALICE, 1000)))).toBe('replayed');
    expect(reason(encodeTelemetry(report(ALICE, 999)))).toBe('replayed');
    expect(reason(encodeTelemetry(report(ALICE, 3000)))).toBe('accepted');
  });

  it('refuses a flood as rate-limited before parsing it', () => {
    const admission = new TelemetryAdmission({ wireRunId: RUN, now: at(5000) });
    const junk = new TextEncoder().encode('junk');
    const reasons = Array.from({ length: 5 }, () => {
      const v = admission.admit(junk, MALLORY);
      return v.ok ? 'accepted' : v.reason;
    });
    expect(reasons).toEqual(['malformed', 'malformed', 'rate-limited', 'rate-limited', 'rate-limited']);
    // Alice is unaffected by Mallory's flood.
    expect(admission.admit(encodeTelemetry(report(ALICE, 1)), ALICE).ok).toBe(true);
  });
});
