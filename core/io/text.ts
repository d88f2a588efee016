/**
 * UTF-8 and JSON helpers for core/io.
 * core/ compiles without DOM or Node typings, so TextEncoder/TextDecoder (present in every runtime Swarm targets:
 * browsers, workers, Node >= 11) are declared here by the minimal shape we use instead of pulling a lib.
 */

interface Utf8DecoderLike {
  decode(bytes?: Uint8Array, options?: { stream?: boolean }): string;
}
declare const TextDecoder: new (label?: string, options?: { fatal?: boolean }) => Utf8DecoderLike;
declare const TextEncoder: new () => { encode(text: string): Uint8Array };

const encoder = new TextEncoder();

export function utf8Encode(text: string): Uint8Array {
  return encoder.encode(text);
}

/** Lenient decode: malformed sequences become U+FFFD. */
export function utf8Decode(bytes: Uint8Array): string {
  return new TextDecoder('utf-8').decode(bytes);
}

/** Strict decode: throws a TypeError on malformed UTF-8 (used where a corrupt file must be refused). */
export function utf8DecodeStrict(bytes: Uint8Array): string {
  return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
}

/** A decoder that keeps an incomplete trailing sequence for the next call (streaming generation output). */
export function createStreamingUtf8Decoder(): Utf8DecoderLike {
  return new TextDecoder('utf-8');
}

export function jsonBytes(value: unknown): Uint8Array {
  return utf8Encode(JSON.stringify(value, null, 2) + '\n');
}
