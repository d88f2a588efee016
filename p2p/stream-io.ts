// Small reads and writes on libp2p 3 streams shared by the stream protocols (adapter payloads, run manifests).
import type { Stream, StreamMessageEvent } from '@libp2p/interface';

/** A stream message carries one chunk or a list of them. */
export function* chunksOf(data: Uint8Array | Iterable<Uint8Array>): Iterable<Uint8Array> {
  if (data instanceof Uint8Array) yield data;
  else yield* data;
}

export async function sendWithBackpressure(stream: Stream, chunk: Uint8Array, signal: AbortSignal): Promise<void> {
  if (!stream.send(chunk)) await stream.onDrain({ signal });
}

/**
 * Reads a whole request of exactly n bytes up to the remote's end of writing; null when the peer sent more or
 * fewer (more is refused before it is stored). Rejects with `timeoutMessage` when the signal aborts first.
 */
export async function readExactly(stream: Stream, n: number, signal: AbortSignal, timeoutMessage: string): Promise<Uint8Array | null> {
  const whole = await readAll(stream, n, signal, timeoutMessage);
  return whole !== null && whole.length === n ? whole : null;
}

export interface TransferPace {
  /** Give up when no byte has arrived for this long (ms). */
  idleTimeoutMs: number;
  /** Give up when fewer than this many bytes per second arrived over the last rateWindowMs. */
  minBytesPerSecond: number;
  /** Window over which the minimum rate is judged; also the grace period before it is first judged (ms). */
  rateWindowMs: number;
}

/**
 * Watches a transfer's pace: call `received(n)` as bytes arrive; `onStall` fires once, with the reason in words,
 * when the sender goes idle or trickles below the minimum rate (a 1-byte-per-50-ms sender would otherwise keep a
 * fetch slot for the whole fetch timeout). `stop()` ends the watch.
 */
export class TransferWatchdog {
  private total = 0;
  private lastByteAt: number;
  /** Cumulative byte counts at each tick, oldest first, covering at least one rate window. */
  private readonly samples: { atMs: number; total: number }[] = [];
  private readonly timer: ReturnType<typeof setInterval>;
  private stopped = false;

  constructor(private readonly pace: TransferPace, private readonly onStall: (detail: string) => void, private readonly now: () => number = Date.now) {
    const start = now();
    this.lastByteAt = start;
    this.samples.push({ atMs: start, total: 0 });
    const tick = Math.max(10, Math.min(1000, pace.rateWindowMs / 4, pace.idleTimeoutMs / 4));
    this.timer = setInterval(() => this.check(), tick);
  }

  received(bytes: number): void {
    if (bytes <= 0) return;
    this.total += bytes;
    this.lastByteAt = this.now();
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }

  private check(): void {
    if (this.stopped) return;
    const at = this.now();
    if (at - this.lastByteAt >= this.pace.idleTimeoutMs) {
      this.stop();
      this.onStall(`no byte for ${at - this.lastByteAt} ms after ${this.total} bytes`);
      return;
    }
    this.samples.push({ atMs: at, total: this.total });
    // Keep the newest sample that is at least a window old as the reference, and nothing older.
    while (this.samples.length > 1 && at - this.samples[1].atMs >= this.pace.rateWindowMs) this.samples.shift();
    const reference = this.samples[0];
    const span = at - reference.atMs;
    if (span < this.pace.rateWindowMs) return;
    const rate = ((this.total - reference.total) * 1000) / span;
    if (rate < this.pace.minBytesPerSecond) {
      this.stop();
      this.onStall(`${rate.toFixed(1)} bytes/s over the last ${span} ms, below the minimum of ${this.pace.minBytesPerSecond}`);
    }
  }
}

/**
 * Reads a whole message up to the remote's end of writing; null when it is longer than maxBytes (refused before it
 * is stored). Rejects with `timeoutMessage` when the signal aborts first.
 */
export function readAll(stream: Stream, maxBytes: number, signal: AbortSignal, timeoutMessage: string): Promise<Uint8Array | null> {
  return new Promise((resolve, rejectPromise) => {
    const chunks: Uint8Array[] = [];
    let length = 0;
    const finish = (value: Uint8Array | null, err?: Error) => {
      stream.removeEventListener('message', onMessage);
      stream.removeEventListener('end', onEnd);
      stream.removeEventListener('close', onEnd);
      signal.removeEventListener('abort', onAbort);
      if (err) rejectPromise(err);
      else resolve(value);
    };
    const onMessage = (evt: StreamMessageEvent) => {
      for (const chunk of chunksOf(evt.data)) {
        if (length + chunk.length > maxBytes) return finish(null);
        chunks.push(chunk.slice());
        length += chunk.length;
      }
    };
    const onEnd = () => {
      const whole = new Uint8Array(length);
      let at = 0;
      for (const c of chunks) (whole.set(c, at), (at += c.length));
      finish(whole);
    };
    const onAbort = () => finish(null, new Error(timeoutMessage));
    stream.addEventListener('message', onMessage);
    stream.addEventListener('end', onEnd);
    stream.addEventListener('close', onEnd);
    signal.addEventListener('abort', onAbort);
    if (stream.readableEnded) onEnd();
  });
}
