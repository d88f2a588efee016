import { describe, expect, it } from 'vitest';
import { cloneAdapter, type Adapter } from '../model/adapter.ts';
import { randomAdapter, type ModuleShape } from '../merge/testing.ts';
import { adapterDifference, addGaussianNoiseInPlace, clipUpdateInPlace, noiseStdFor, poissonSample, PrivacyInputError, privatizeUpdate, updateNorm } from './mechanism.ts';
import { chacha20Block, littleEndianWords, NoiseSource, NoiseSourceError } from './noise-source.ts';
import { logErfc } from './rdp.ts';

/** The default model's LoRA layout: 4 layers × 4 targets at n_embd 128, r = 8 — 65 536 values. */
const MODEL_MODULES: ModuleShape[] = [0, 1, 2, 3].flatMap((h) => [
  { name: `transformer.h.${h}.attn.c_attn`, inDim: 128, outDim: 384 },
  { name: `transformer.h.${h}.attn.c_proj`, inDim: 128, outDim: 128 },
  { name: `transformer.h.${h}.mlp.c_fc`, inDim: 128, outDim: 512 },
  { name: `transformer.h.${h}.mlp.c_proj`, inDim: 512, outDim: 128 },
]);

function values(adapter: Adapter): number[] {
  const out: number[] = [];
  for (const name of [...adapter.modules.keys()].sort()) {
    const p = adapter.modules.get(name)!;
    out.push(...p.a, ...p.b);
  }
  return out;
}

function zeroLike(adapter: Adapter): Adapter {
  const z = cloneAdapter(adapter);
  for (const p of z.modules.values()) {
    p.a.fill(0);
    p.b.fill(0);
  }
  return z;
}

describe('ChaCha20 noise source', () => {
  it('produces the keystream block of RFC 8439, Section 2.3.2', () => {
    const key = littleEndianWords(Uint8Array.from({ length: 32 }, (_, i) => i));
    const nonce = littleEndianWords(Uint8Array.from([0, 0, 0, 9, 0, 0, 0, 0x4a, 0, 0, 0, 0]));
    const out = new Uint32Array(16);
    chacha20Block(key, 1, nonce, out);
    expect(Buffer.from(out.buffer).toString('hex')).toBe(
      '10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4ed2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e',
    );
  });

  it('repeats for one seed, differs between seeds, and refuses a short seed', () => {
    const a = NoiseSource.fromTestSeed(7);
    const b = NoiseSource.fromTestSeed(7);
    const c = NoiseSource.fromTestSeed(8);
    const xs = Array.from({ length: 5 }, () => a.normal());
    expect(Array.from({ length: 5 }, () => b.normal())).toEqual(xs);
    expect(Array.from({ length: 5 }, () => c.normal())).not.toEqual(xs);
    expect(() => new NoiseSource(new Uint8Array(16))).toThrow(NoiseSourceError);
    const platform = NoiseSource.fromPlatformEntropy();
    expect(platform.uniform()).not.toBe(NoiseSource.fromPlatformEntropy().uniform());
  });
});

describe('clipping an update', () => {
  it('bounds the norm over all tensors together by C, keeps the direction, and leaves small updates untouched', () => {
    for (const [seed, scale, clip] of [[1, 1, 0.5], [2, 0.01, 0.5], [3, 100, 1e-3], [4, 3, 2.5]] as const) {
      const update = randomAdapter(seed, { scale, modules: MODEL_MODULES, r: 8 });
      const before = values(update);
      const normBefore = updateNorm(update);
      const { norm, scale: factor } = clipUpdateInPlace(update, clip);
      expect(norm).toBeCloseTo(normBefore, 6);
      expect(updateNorm(update)).toBeLessThanOrEqual(clip);
      const after = values(update);
      if (normBefore <= clip) {
        expect(factor).toBe(1);
        expect(after).toEqual(before);
      } else {
        expect(updateNorm(update)).toBeGreaterThan(clip * 0.9999);
        for (let i = 0; i < after.length; i += 997) expect(after[i]).toBeCloseTo(before[i] * factor, 6);
      }
    }
  });

  it('refuses non-finite updates and a bad clip norm', () => {
    const update = randomAdapter(5);
    expect(() => clipUpdateInPlace(update, 0)).toThrow(PrivacyInputError);
    update.modules.values().next().value!.a[0] = NaN;
    expect(() => clipUpdateInPlace(update, 1)).toThrow(/non-finite/);
  });

  it('takes the difference from the anchor and refuses anchors of another shape', () => {
    const current = randomAdapter(6);
    const anchor = randomAdapter(7);
    const diff = adapterDifference(current, anchor);
    const [c, a, d] = [values(current), values(anchor), values(diff)];
    d.forEach((v, i) => expect(v).toBeCloseTo(c[i] - a[i], 6));
    expect(() => adapterDifference(current, randomAdapter(7, { r: 2 }))).toThrow(PrivacyInputError);
    expect(() => adapterDifference(current, randomAdapter(7, { modules: MODEL_MODULES }))).toThrow(PrivacyInputError);
  });
});

describe('Gaussian noise', () => {
  const std = 0.37;
  const noise = zeroLike(randomAdapter(1, { modules: MODEL_MODULES, r: 8 }));
  addGaussianNoiseInPlace(noise, std, NoiseSource.fromTestSeed(11));
  const xs = values(noise);
  const n = xs.length;

  it('has mean 0 and standard deviation σ·2C within 5 standard errors', () => {
    expect(n).toBe(65536);
    const mean = xs.reduce((s, x) => s + x, 0) / n;
    const variance = xs.reduce((s, x) => s + (x - mean) ** 2, 0) / (n - 1);
    expect(Math.abs(mean)).toBeLessThan((5 * std) / Math.sqrt(n));
    // The sample variance of n normals has relative standard error √(2/(n−1)) ≈ 0.55 % here.
    expect(Math.abs(variance / std ** 2 - 1)).toBeLessThan(5 * Math.sqrt(2 / (n - 1)));
  });

  it('is normal: Kolmogorov–Smirnov distance below the 1 % critical value 1.63/√n', () => {
    const sorted = xs.map((x) => x / std).sort((a, b) => a - b);
    const cdf = (x: number) => 0.5 * Math.exp(logErfc(-x / Math.SQRT2));
    let d = 0;
    sorted.forEach((x, i) => {
      const f = cdf(x);
      d = Math.max(d, Math.abs(f - i / n), Math.abs(f - (i + 1) / n));
    });
    expect(d).toBeLessThan(1.63 / Math.sqrt(n));
  });

  it('publishes anchor + clipped update + N(0, (z·2C)²), leaving the inputs unchanged', () => {
    const anchor = randomAdapter(21, { modules: MODEL_MODULES, r: 8, scale: 0.1 });
    const current = randomAdapter(22, { modules: MODEL_MODULES, r: 8, scale: 0.1 });
    const [anchorBefore, currentBefore] = [values(anchor), values(current)];
    const clipNorm = 0.5;
    const z = 0.8;
    const { published, clip, noiseStd } = privatizeUpdate(current, anchor, { clipNorm, noiseMultiplier: z, source: NoiseSource.fromTestSeed(3) });
    expect(noiseStd).toBeCloseTo(z * 2 * clipNorm, 12);
    expect(noiseStdFor(clipNorm, z)).toBe(noiseStd);
    expect(values(anchor)).toEqual(anchorBefore);
    expect(values(current)).toEqual(currentBefore);
    const clipped = adapterDifference(current, anchor);
    clipUpdateInPlace(clipped, clipNorm);
    const [p, a, c] = [values(published), anchorBefore, values(clipped)];
    const residual = p.map((v, i) => v - a[i] - c[i]);
    const variance = residual.reduce((s, x) => s + x * x, 0) / residual.length;
    expect(Math.abs(Math.sqrt(variance) / noiseStd - 1)).toBeLessThan(0.02);
    expect(clip.scale).toBeLessThan(1);
  });
});

describe('Poisson sampling of records', () => {
  it('includes each record with probability q (count within 5 binomial standard deviations)', () => {
    const n = 20000;
    const q = 0.05;
    const chosen = poissonSample(n, q, NoiseSource.fromTestSeed(5));
    expect(Math.abs(chosen.length - n * q)).toBeLessThan(5 * Math.sqrt(n * q * (1 - q)));
    expect(new Set(chosen).size).toBe(chosen.length);
    expect(chosen.every((i) => Number.isInteger(i) && i >= 0 && i < n)).toBe(true);
    expect(poissonSample(100, 1, NoiseSource.fromTestSeed(5))).toHaveLength(100);
    expect(() => poissonSample(10, 1.5, NoiseSource.fromTestSeed(5))).toThrow(PrivacyInputError);
  });
});
