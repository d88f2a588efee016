/** core/wire: everything that turns peer bytes into trusted values, or into a reasoned rejection. */
export * from './constants.ts';
export * from './verdict.ts';
export { sha256Hex, WireFormatError } from './bytes.ts';
export { canonicalJson, type JsonObject, type JsonValue } from './json.ts';
export * from './fp16.ts';
export * from './codec.ts';
export * from './manifest.ts';
export * from './sparse-delta.ts';
export * from './delta-stream.ts';
