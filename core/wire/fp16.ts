/**
 * IEEE 754 binary16 conversion. Float32 → float16 rounds to nearest, ties to even (what hardware does), and
 * reports overflow instead of producing Infinity; float16 → float32 is exact.
 */

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** Largest finite float16. */
export const FP16_MAX = 65504;
/** Smallest float32 magnitude that rounds to float16 Infinity: halfway between 65504 and 65536. */
export const FP16_OVERFLOW_THRESHOLD = 65520;
/** Returned by float32ToFloat16Bits when the value is non-finite or rounds beyond FP16_MAX. */
export const FP16_OUT_OF_RANGE = -1;

/** Bits of the float16 nearest to `value` (as a float32), or FP16_OUT_OF_RANGE. */
export function float32ToFloat16Bits(value: number): number {
  f32Scratch[0] = value;
  const bits = u32Scratch[0];
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return FP16_OUT_OF_RANGE;
  const halfExponent = exponent - 127 + 15;
  if (halfExponent >= 0x1f) return FP16_OUT_OF_RANGE;
  if (halfExponent <= 0) {
    // Subnormal float16 (or zero): shift the mantissa, implicit bit included, into the 10-bit field.
    const shift = 14 - halfExponent;
    if (shift > 24) return sign;
    const full = mantissa | 0x800000;
    let half = full >>> shift;
    const dropped = full & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (dropped > halfway || (dropped === halfway && (half & 1) === 1)) half++;
    return sign | half;
  }
  let half = (halfExponent << 10) | (mantissa >>> 13);
  const dropped = mantissa & 0x1fff;
  // A carry out of the mantissa increments the exponent, which is exactly the correctly rounded result.
  if (dropped > 0x1000 || (dropped === 0x1000 && (half & 1) === 1)) half++;
  if ((half & 0x7fff) >= 0x7c00) return FP16_OUT_OF_RANGE;
  return sign | half;
}

let decodeTable: Float32Array | null = null;

/** float16 bits → float32 value, for all 65536 patterns (NaN/Inf patterns map to NaN/Inf). */
export function float16Table(): Float32Array {
  if (decodeTable) return decodeTable;
  const table = new Float32Array(65536);
  for (let bits = 0; bits < 65536; bits++) table[bits] = float16BitsToNumber(bits);
  decodeTable = table;
  return table;
}

export function float16BitsToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : NaN;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}
