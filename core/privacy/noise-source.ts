/**
 * The noise source: a ChaCha20 keystream (RFC 8439 block function; key = the 32-byte seed, nonce 0, block counter
 * from 0) read as 53-bit uniforms, with Gaussian samples by Box–Muller. In production the seed comes from
 * crypto.getRandomValues; tests and studies pass a fixed seed to repeat a run. ChaCha20 is the generator behind
 * arc4random and Linux's /dev/urandom; 2^64 blocks of 64 bytes are far more than a run draws.
 */

export class NoiseSourceError extends Error {
  static override readonly name = 'NoiseSourceError';
  override readonly name = NoiseSourceError.name;
}

const SEED_BYTES = 32;
const BLOCKS_PER_REFILL = 64;
const CONSTANTS = [0x61707865, 0x3320646e, 0x79622d32, 0x6b206574]; // "expand 32-byte k"

function rotl(x: number, n: number): number {
  return (x << n) | (x >>> (32 - n));
}

/** The ChaCha20 block function: 64 bytes of keystream for (key, counter, nonce), as RFC 8439 Section 2.3. */
export function chacha20Block(key: Uint32Array, counter: number, nonce: Uint32Array, out: Uint32Array, at = 0): void {
  const s = new Uint32Array(16);
  s.set(CONSTANTS, 0);
  s.set(key, 4);
  s[12] = counter >>> 0;
  s.set(nonce, 13);
  const x = s.slice();
  const quarter = (a: number, b: number, c: number, d: number) => {
    x[a] += x[b]; x[d] = rotl(x[d] ^ x[a], 16);
    x[c] += x[d]; x[b] = rotl(x[b] ^ x[c], 12);
    x[a] += x[b]; x[d] = rotl(x[d] ^ x[a], 8);
    x[c] += x[d]; x[b] = rotl(x[b] ^ x[c], 7);
  };
  for (let round = 0; round < 10; round++) {
    quarter(0, 4, 8, 12); quarter(1, 5, 9, 13); quarter(2, 6, 10, 14); quarter(3, 7, 11, 15);
    quarter(0, 5, 10, 15); quarter(1, 6, 11, 12); quarter(2, 7, 8, 13); quarter(3, 4, 9, 14);
  }
  for (let i = 0; i < 16; i++) out[at + i] = (x[i] + s[i]) >>> 0;
}

/** Little-endian words of bytes whose length is a multiple of 4. */
export function littleEndianWords(bytes: Uint8Array): Uint32Array {
  const words = new Uint32Array(bytes.length / 4);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < words.length; i++) words[i] = view.getUint32(4 * i, true);
  return words;
}

export class NoiseSource {
  private readonly key: Uint32Array;
  private readonly nonce = new Uint32Array(3);
  private readonly words = new Uint32Array(16 * BLOCKS_PER_REFILL);
  private offset = this.words.length;
  private counter = 0;
  private spareNormal: number | null = null;

  constructor(seed: Uint8Array) {
    if (seed.length !== SEED_BYTES) throw new NoiseSourceError(`the noise source needs a seed of exactly ${SEED_BYTES} bytes, got ${seed.length}`);
    this.key = littleEndianWords(seed);
  }

  /** A source seeded from globalThis.crypto.getRandomValues (browsers, workers, Node ≥ 19). */
  static fromPlatformEntropy(): NoiseSource {
    const platform = (globalThis as { crypto?: { getRandomValues?: (array: Uint8Array) => Uint8Array } }).crypto;
    if (typeof platform?.getRandomValues !== 'function') throw new NoiseSourceError('no cryptographic random source (crypto.getRandomValues) on this platform');
    return new NoiseSource(platform.getRandomValues(new Uint8Array(SEED_BYTES)));
  }

  /** A source for tests and studies: the seed is a number, spread over the key by a fixed rule (not secret). */
  static fromTestSeed(seed: number): NoiseSource {
    const bytes = new Uint8Array(SEED_BYTES);
    new DataView(bytes.buffer).setFloat64(0, seed, true);
    bytes[31] = 0x5e; // never the all-zero key
    return new NoiseSource(bytes);
  }

  private nextWord(): number {
    if (this.offset === this.words.length) {
      if (this.counter + BLOCKS_PER_REFILL > 0xffffffff) {
        this.counter = 0;
        this.nonce[0]++; // 2^32 blocks per nonce; the nonce words extend the stream
      }
      for (let b = 0; b < BLOCKS_PER_REFILL; b++) chacha20Block(this.key, this.counter++, this.nonce, this.words, 16 * b);
      this.offset = 0;
    }
    return this.words[this.offset++];
  }

  /** Uniform in [0, 1) with 53 random bits. */
  uniform(): number {
    const high = this.nextWord() >>> 11; // 21 bits
    const low = this.nextWord(); // 32 bits
    return (high * 4294967296 + low) / 9007199254740992;
  }

  /** Standard normal sample (Box–Muller; both values of each pair are used). */
  normal(): number {
    if (this.spareNormal !== null) {
      const spare = this.spareNormal;
      this.spareNormal = null;
      return spare;
    }
    const radius = Math.sqrt(-2 * Math.log(1 - this.uniform())); // 1 − u ∈ (0, 1]: the logarithm stays finite
    const angle = 2 * Math.PI * this.uniform();
    this.spareNormal = radius * Math.sin(angle);
    return radius * Math.cos(angle);
  }
}
