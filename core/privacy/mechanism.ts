/**
 * What a peer does to an update before it leaves the worker: the update (current − anchor, over every LoRA tensor
 * together) is clipped to L2 norm C and Gaussian noise is added, and only anchor + noised update is published.
 *
 * Sensitivity. The update is clipped as a whole, not per record, so adding or removing one record of the
 * volunteer's text can move it anywhere in the ball of radius C: two clipped updates differ by at most 2C. The
 * noise is therefore N(0, (z·2C)²) per coordinate for noise multiplier z, and the accountant sees multiplier z with
 * sensitivity 1 — the factor two that TF-Privacy's statement calls "microbatching doubles sensitivity" (Ponomareva
 * et al. 2023, "How to DP-fy ML", Section 5.6). The records of each round are a Poisson sample (poissonSample).
 */
import { moduleNames, type Adapter, type LoraPair } from '../model/adapter.ts';
import type { NoiseSource } from './noise-source.ts';

export class PrivacyInputError extends Error {
  static override readonly name = 'PrivacyInputError';
  override readonly name = PrivacyInputError.name;
}

/** How far apart two clipped updates can be when one record is added or removed. */
export function sensitivityOf(clipNorm: number): number {
  return 2 * clipNorm;
}

/** Standard deviation of the noise added to each coordinate. */
export function noiseStdFor(clipNorm: number, noiseMultiplier: number): number {
  return noiseMultiplier * sensitivityOf(clipNorm);
}

function forEachTensor(adapter: Adapter, visit: (tensor: Float32Array, module: string, kind: 'a' | 'b') => void): void {
  for (const name of moduleNames(adapter)) {
    const pair = adapter.modules.get(name)!;
    visit(pair.a, name, 'a');
    visit(pair.b, name, 'b');
  }
}

/** L2 norm over every tensor of the adapter together, accumulated in double precision. */
export function updateNorm(update: Adapter): number {
  let sum = 0;
  forEachTensor(update, (t) => {
    for (let i = 0; i < t.length; i++) sum += t[i] * t[i];
  });
  return Math.sqrt(sum);
}

/** current − anchor, tensor by tensor; both must have the same modules and shapes. */
export function adapterDifference(current: Adapter, anchor: Adapter): Adapter {
  const names = moduleNames(current);
  const anchorNames = moduleNames(anchor);
  if (names.length !== anchorNames.length || names.some((n, i) => n !== anchorNames[i])) {
    throw new PrivacyInputError('the update and its anchor have different modules');
  }
  const modules = new Map<string, LoraPair>();
  for (const name of names) {
    const c = current.modules.get(name)!;
    const a = anchor.modules.get(name)!;
    if (c.a.length !== a.a.length || c.b.length !== a.b.length) throw new PrivacyInputError(`${name}: the update and its anchor differ in shape`);
    modules.set(name, { a: subtract(c.a, a.a), b: subtract(c.b, a.b), inDim: c.inDim, outDim: c.outDim });
  }
  return { baseModelId: current.baseModelId, config: { ...current.config, targetModules: [...current.config.targetModules] }, modules };
}

function subtract(x: Float32Array, y: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i] - y[i];
  return out;
}

export interface ClipResult {
  /** Norm before clipping. */
  norm: number;
  /** Factor applied: min(1, C / norm). */
  scale: number;
}

/**
 * Scales the update in place so its norm is at most clipNorm. The factor is shrunk by a few float32 ulps so that
 * rounding the scaled values to float32 can never leave the norm above C.
 */
export function clipUpdateInPlace(update: Adapter, clipNorm: number): ClipResult {
  if (!(clipNorm > 0) || !Number.isFinite(clipNorm)) throw new PrivacyInputError(`clip norm must be a positive finite number, got ${clipNorm}`);
  const norm = updateNorm(update);
  if (!Number.isFinite(norm)) throw new PrivacyInputError('the update has non-finite values; it cannot be published');
  if (norm <= clipNorm) return { norm, scale: 1 };
  const scale = (clipNorm / norm) * (1 - 4 * 2 ** -24);
  forEachTensor(update, (t) => {
    for (let i = 0; i < t.length; i++) t[i] *= scale;
  });
  return { norm, scale };
}

/** Adds independent N(0, std²) to every coordinate, in place, in canonical tensor order. */
export function addGaussianNoiseInPlace(update: Adapter, std: number, source: NoiseSource): void {
  if (!(std >= 0) || !Number.isFinite(std)) throw new PrivacyInputError(`noise standard deviation must be finite and ≥ 0, got ${std}`);
  forEachTensor(update, (t) => {
    for (let i = 0; i < t.length; i++) t[i] += std * source.normal();
  });
}

export interface PrivatizeOptions {
  clipNorm: number;
  noiseMultiplier: number;
  source: NoiseSource;
}

export interface PrivatizedUpdate {
  /** anchor + clip(current − anchor) + noise: the only thing that may leave the worker. */
  published: Adapter;
  clip: ClipResult;
  noiseStd: number;
}

/** The whole mechanism for one publish. Neither input is modified. */
export function privatizeUpdate(current: Adapter, anchor: Adapter, options: PrivatizeOptions): PrivatizedUpdate {
  const update = adapterDifference(current, anchor);
  const clip = clipUpdateInPlace(update, options.clipNorm);
  const noiseStd = noiseStdFor(options.clipNorm, options.noiseMultiplier);
  addGaussianNoiseInPlace(update, noiseStd, options.source);
  for (const name of moduleNames(update)) {
    const u = update.modules.get(name)!;
    const a = anchor.modules.get(name)!;
    for (let i = 0; i < u.a.length; i++) u.a[i] += a.a[i];
    for (let i = 0; i < u.b.length; i++) u.b[i] += a.b[i];
  }
  return { published: update, clip, noiseStd };
}

/** Indices of the records in this round's Poisson sample: each of `count` records independently with probability q. */
export function poissonSample(count: number, samplingRate: number, source: NoiseSource): number[] {
  if (!Number.isInteger(count) || count < 0) throw new PrivacyInputError(`record count must be a non-negative integer, got ${count}`);
  if (!(samplingRate >= 0 && samplingRate <= 1)) throw new PrivacyInputError(`sampling rate must be in [0, 1], got ${samplingRate}`);
  const chosen: number[] = [];
  for (let i = 0; i < count; i++) if (source.uniform() < samplingRate) chosen.push(i);
  return chosen;
}
