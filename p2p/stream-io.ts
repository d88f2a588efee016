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
export function readExactly(stream: Stream, n: number, signal: AbortSignal, timeoutMessage: string): Promise<Uint8Array | null> {
  return new Promise((resolve, rejectPromise) => {
    const received = new Uint8Array(n);
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
        if (length + chunk.length > n) return finish(null);
        received.set(chunk, length);
        length += chunk.length;
      }
    };
    const onEnd = () => finish(length === n ? received : null);
    const onAbort = () => finish(null, new Error(timeoutMessage));
    stream.addEventListener('message', onMessage);
    stream.addEventListener('end', onEnd);
    stream.addEventListener('close', onEnd);
    signal.addEventListener('abort', onAbort);
    if (stream.readableEnded) onEnd();
  });
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
