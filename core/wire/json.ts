/**
 * Strict JSON for the wire: printable-ASCII bytes, a plain object at the top, exact key sets and typed fields.
 * Field checks raise FieldRejection, which each decoder catches at its boundary and returns as a verdict.
 */
import { bytesToAscii, WireFormatError } from './bytes.ts';
import { MAX_JSON_DEPTH, MAX_JSON_ENTRIES, MAX_JSON_STRING_LENGTH } from './constants.ts';
import { reject, type RejectReason, type Rejection } from './verdict.ts';

/** Internal: a field failed its check. Never escapes a decoder. */
export class FieldRejection extends Error {
  static override readonly name = 'FieldRejection';
  override readonly name = FieldRejection.name;
  constructor(readonly reason: RejectReason, detail: string) {
    super(detail);
  }
}

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** Parses bytes (or text) into a plain object, or says why not. */
export function parseJsonObject(
  input: Uint8Array | string,
  maxBytes: number,
  what: string,
  allowLayoutWhitespace = false,
): { ok: true; value: Record<string, unknown> } | Rejection {
  if (input.length > maxBytes) return reject('oversized', `${what} of ${input.length} bytes exceeds ${maxBytes}`);
  let text: string | null;
  if (typeof input === 'string') {
    text = input;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if ((c < 0x20 || c > 0x7e) && !(allowLayoutWhitespace && (c === 0x09 || c === 0x0a || c === 0x0d))) {
        return reject('malformed', `${what} holds a character outside printable ASCII at index ${i} (use \\u escapes)`);
      }
    }
  } else if (input instanceof Uint8Array) {
    text = bytesToAscii(input, allowLayoutWhitespace);
    if (text === null) return reject('malformed', `${what} holds a byte outside printable ASCII`);
  } else {
    return reject('malformed', `${what} is neither bytes nor text`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    return reject('malformed', `${what} is not JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (!isPlainObject(parsed)) return reject('malformed', `${what} is not a JSON object`);
  return { ok: true, value: parsed };
}

/** Refuses missing required keys and any key not listed. */
export function requireKeys(obj: Record<string, unknown>, required: readonly string[], optional: readonly string[], where: string): void {
  for (const key of required) {
    if (!Object.prototype.hasOwnProperty.call(obj, key)) throw new FieldRejection('malformed', `${where}: missing field '${key}'`);
  }
  for (const key of Object.keys(obj)) {
    if (!required.includes(key) && !optional.includes(key)) throw new FieldRejection('malformed', `${where}: unknown field '${key.slice(0, 40)}'`);
  }
}

export function stringField(obj: Record<string, unknown>, key: string, pattern: RegExp, where: string): string {
  const value = obj[key];
  if (typeof value !== 'string') throw new FieldRejection('malformed', `${where}.${key} must be a string`);
  if (!pattern.test(value)) throw new FieldRejection('malformed', `${where}.${key} '${value.slice(0, 80)}' does not match ${pattern}`);
  return value;
}

/** A safe integer in [min, max]. */
export function intField(obj: Record<string, unknown>, key: string, min: number, max: number, where: string): number {
  const value = obj[key];
  if (typeof value !== 'number') throw new FieldRejection('malformed', `${where}.${key} must be a number`);
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new FieldRejection('malformed', `${where}.${key} = ${value} must be an integer in ${min}..${max}`);
  }
  return value;
}

/** A finite number in [min, max] (NaN/Infinity cannot appear in JSON, but a huge literal parses to Infinity). */
export function numberField(obj: Record<string, unknown>, key: string, min: number, max: number, where: string): number {
  const value = obj[key];
  if (typeof value !== 'number') throw new FieldRejection('malformed', `${where}.${key} must be a number`);
  if (!Number.isFinite(value)) throw new FieldRejection('non-finite', `${where}.${key} is ${value}`);
  if (value < min || value > max) throw new FieldRejection('malformed', `${where}.${key} = ${value} outside ${min}..${max}`);
  return value;
}

export function nullableNumberField(obj: Record<string, unknown>, key: string, min: number, max: number, where: string): number | null {
  return obj[key] === null ? null : numberField(obj, key, min, max, where);
}

/** Checks that a value is plain JSON within the depth, entry and string caps; returns it typed. */
export function boundedJson(value: unknown, where: string, depth = 0, budget = { entries: 0 }): JsonValue {
  if (depth > MAX_JSON_DEPTH) throw new FieldRejection('malformed', `${where} nests deeper than ${MAX_JSON_DEPTH}`);
  if (++budget.entries > MAX_JSON_ENTRIES) throw new FieldRejection('malformed', `${where} has more than ${MAX_JSON_ENTRIES} entries`);
  if (value === null || typeof value === 'boolean') return value;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new FieldRejection('non-finite', `${where} is ${value}`);
    return value;
  }
  if (typeof value === 'string') {
    if (value.length > MAX_JSON_STRING_LENGTH) throw new FieldRejection('malformed', `${where} is a string longer than ${MAX_JSON_STRING_LENGTH}`);
    return value;
  }
  if (Array.isArray(value)) return value.map((item, i) => boundedJson(item, `${where}[${i}]`, depth + 1, budget));
  if (isPlainObject(value)) {
    const out: JsonObject = {};
    for (const [key, item] of Object.entries(value)) {
      if (key.length > MAX_JSON_STRING_LENGTH) throw new FieldRejection('malformed', `${where} has a key longer than ${MAX_JSON_STRING_LENGTH}`);
      // Assigning '__proto__' would replace the copy's prototype instead of adding a field.
      if (key === '__proto__') throw new FieldRejection('malformed', `${where} has a '__proto__' key`);
      out[key] = boundedJson(item, `${where}.${key}`, depth + 1, budget);
    }
    return out;
  }
  throw new FieldRejection('malformed', `${where} is not a JSON value`);
}

/**
 * JSON with object keys sorted (by UTF-16 code units), no whitespace, and ASCII-only output (other characters
 * as \u escapes), so equal values give equal text on every peer. Throws WireFormatError for values JSON cannot
 * carry (undefined, functions, NaN, Infinity, class instances).
 */
export function canonicalJson(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new WireFormatError(`canonical JSON cannot hold ${value}`);
    return JSON.stringify(value);
  }
  if (typeof value === 'string') return asciiJsonString(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (isPlainObject(value)) {
    const keys = Object.keys(value).filter((k) => value[k] !== undefined).sort();
    return `{${keys.map((k) => `${asciiJsonString(k)}:${canonicalJson(value[k])}`).join(',')}}`;
  }
  throw new WireFormatError(`canonical JSON cannot hold a ${typeof value}`);
}

function asciiJsonString(text: string): string {
  return JSON.stringify(text).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Runs a field-checking body and turns a FieldRejection (or anything unexpected) into a rejection. */
export function guarded<T>(body: () => T, what: string): { ok: true; value: T } | Rejection {
  try {
    return { ok: true, value: body() };
  } catch (error) {
    if (error instanceof FieldRejection) return reject(error.reason, error.message);
    return reject('malformed', `${what}: ${error instanceof Error ? error.message : String(error)}`);
  }
}
