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

/**
 * The first key that appears twice in one object of a JSON text, as "path.key", or null. JSON.parse keeps the
 * last of two equal keys without a word, so a file could show one value to a reviewer and load another.
 * The text must already be valid JSON (parse it first); this only walks its strings and brackets.
 */
export function findDuplicateJsonKey(text: string): string | null {
  const stack: { keys: Set<string> | null; name: string }[] = [];
  let pendingKey: string | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      const raw = text.slice(i, j + 1);
      i = j;
      const top = stack[stack.length - 1];
      if (!top || top.keys === null) continue;
      // A string in an object is a key when a colon follows it.
      let k = i + 1;
      while (k < text.length && (text[k] === ' ' || text[k] === '\n' || text[k] === '\r' || text[k] === '\t')) k++;
      if (text[k] !== ':') continue;
      const key = JSON.parse(raw) as string;
      if (top.keys.has(key)) return top.name ? `${top.name}.${key}` : key;
      top.keys.add(key);
      pendingKey = key;
    } else if (c === '{' || c === '[') {
      const parent = stack[stack.length - 1];
      const name = parent ? (parent.keys !== null && pendingKey !== null ? (parent.name ? `${parent.name}.${pendingKey}` : pendingKey) : parent.name) : '';
      stack.push({ keys: c === '{' ? new Set() : null, name });
      pendingKey = null;
    } else if (c === '}' || c === ']') {
      stack.pop();
    } else if (c === ',') {
      pendingKey = null;
    }
  }
  return null;
}
