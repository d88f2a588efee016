/**
 * Byzantine peers, for simulations in real tabs (app/lib/faults.ts) and in the node engine (cli/simulate/node): an
 * attacker trains honestly, so it looks alive and current, and corrupts what it publishes. The honest peers'
 * transports, update guards and engines must survive it. Each mode is one documented rule; pure functions.
 */
import type { Adapter } from '../model/adapter.ts';
import { decodeAdapter, encodeAdapter, type PayloadCodec } from '../wire/codec.ts';
import { createNormal, createRng, deriveSeed } from '../util/random.ts';

export const BYZANTINE_MODES = ['sign-flip', 'scaled', 'random', 'stale', 'huge', 'drift', 'sybil', 'joiner', 'flood'] as const;
export type ByzantineMode = (typeof BYZANTINE_MODES)[number];
/** The modes that only change what a peer publishes; joiner and flood also need the transport's cooperation. */
export const PUBLISHED_VALUE_MODES = ['sign-flip', 'scaled', 'random', 'stale', 'huge', 'drift', 'sybil'] as const satisfies readonly ByzantineMode[];

export const BYZANTINE_DESCRIPTIONS: Record<ByzantineMode, string> = {
  'sign-flip': 'publishes −scale·B (scale 1)',
  scaled: 'publishes scale·B (scale 10)',
  random: 'publishes noise of scale × each tensor\'s honest RMS (scale 1)',
  stale: 'always publishes its first adapter',
  huge: "publishes values at the codec's limit (65504 in fp16, 1e30 in fp32/int8)",
  drift: 'adds a small push along one fixed direction, growing by scale × 5% of its RMS every round (scale 1)',
  sybil: 'all attackers publish the same poison (noise of 0.05 × scale, identical bytes)',
  joiner: 'publishes honestly, but answers a newcomer first with its adapter ×(−10·scale), hoping to be adopted whole',
  flood: 'sends 50 junk payloads with every adapter (rate limits and the decoder must refuse them)',
};

export interface AttackState {
  /** The attacker's first published adapter (stale mode). */
  first: Uint8Array | null;
  rounds: number;
}

export interface Attack {
  mode: ByzantineMode;
  scale: number;
  /** The run seed: sybils and drift derive their shared direction from it. */
  seed: number;
}

const FLOOD_PER_PUBLICATION = 50;

function mapValues(adapter: Adapter, f: (v: number, i: number, name: string, kind: 'a' | 'b') => number): Adapter {
  const modules = new Map(
    [...adapter.modules].map(([name, p]) => [name, { ...p, a: p.a.map((v, i) => f(v, i, name, 'a')), b: p.b.map((v, i) => f(v, i, name, 'b')) }]),
  );
  return { ...adapter, modules };
}

function tensorRms(values: Float32Array): number {
  let sum = 0;
  for (const v of values) sum += v * v;
  return values.length === 0 ? 0 : Math.sqrt(sum / values.length);
}

function rms(adapter: Adapter): number {
  let sum = 0;
  let n = 0;
  for (const p of adapter.modules.values()) {
    for (const values of [p.a, p.b]) for (const v of values) (sum += v * v), n++;
  }
  return n === 0 ? 0 : Math.sqrt(sum / n);
}

/** A standard normal value per (seed, module, factor, index): the same on every attacker. */
function sharedNormal(seed: number, label: string): () => number {
  return createNormal(createRng(deriveSeed(seed, label)));
}

/** Gaussian noise in place of every tensor, of scale × that tensor's RMS. */
export function randomLike(adapter: Adapter, scale: number, seed: number): Adapter {
  const normal = createNormal(createRng(seed));
  const modules = new Map(
    [...adapter.modules].map(([name, p]) => {
      const noise = (like: Float32Array) => {
        const sigma = scale * tensorRms(like);
        return like.map(() => sigma * normal());
      };
      return [name, { ...p, a: noise(p.a), b: noise(p.b) }];
    }),
  );
  return { ...adapter, modules };
}

/** What an attacker publishes instead of its honest payload, and how many junk payloads go with it. */
export interface Poisoned {
  /** What the attacker publishes to its neighbours. */
  bytes: Uint8Array;
  /** Junk payloads sent with it. */
  flood: number;
  /** What it sends a newcomer first (joiner mode). */
  bootstrapPoison?: Uint8Array;
}

export function poisonPublished(attack: Attack, honest: Uint8Array, state: AttackState, codec: PayloadCodec): Poisoned {
  state.rounds++;
  state.first ??= honest;
  const decoded = decodeAdapter(honest);
  if (!decoded.ok) return { bytes: honest, flood: 0 };
  const own = decoded.adapter;
  let poisoned: Adapter;
  switch (attack.mode) {
    case 'sign-flip':
      poisoned = mapValues(own, (v, _i, _n, kind) => (kind === 'b' ? -attack.scale * v : v));
      break;
    case 'scaled':
      poisoned = mapValues(own, (v, _i, _n, kind) => (kind === 'b' ? attack.scale * v : v));
      break;
    case 'random':
      poisoned = randomLike(own, attack.scale, deriveSeed(attack.seed, `random/${state.rounds}`));
      break;
    case 'stale':
      return { bytes: state.first, flood: 0 };
    case 'huge': {
      const limit = codec === 'fp16' ? 65504 : 1e30;
      poisoned = mapValues(own, (v) => (v < 0 ? -limit : limit));
      break;
    }
    case 'drift': {
      const push = attack.scale * 0.05 * rms(own) * state.rounds;
      const normals = new Map<string, () => number>();
      poisoned = mapValues(own, (v, _i, name, kind) => {
        const key = `${name}/${kind}`;
        if (!normals.has(key)) normals.set(key, sharedNormal(attack.seed, `drift/${key}`));
        return v + push * Math.sign(normals.get(key)!());
      });
      break;
    }
    case 'sybil': {
      const normals = new Map<string, () => number>();
      poisoned = mapValues(own, (_v, _i, name, kind) => {
        const key = `${name}/${kind}`;
        if (!normals.has(key)) normals.set(key, sharedNormal(attack.seed, `sybil/${state.rounds}/${key}`));
        return 0.05 * attack.scale * normals.get(key)!();
      });
      break;
    }
    case 'joiner': {
      const poison = mapValues(own, (v, _i, _n, kind) => (kind === 'b' ? -10 * attack.scale * v : v));
      return { bytes: honest, flood: 0, bootstrapPoison: encodeAdapter(poison, codec) };
    }
    case 'flood':
      return { bytes: honest, flood: FLOOD_PER_PUBLICATION };
  }
  try {
    return { bytes: encodeAdapter(poisoned, codec), flood: 0 };
  } catch {
    // A value the codec cannot carry: the attacker falls back to the largest one it can.
    return { bytes: encodeAdapter(mapValues(own, (v) => (v < 0 ? -65504 : 65504)), codec), flood: 0 };
  }
}

/** Junk a flooding attacker sends: random bytes of a plausible size, refused by the receiver's decoder. */
export function floodPayload(seed: number, index: number, length: number): Uint8Array {
  const rng = createRng(deriveSeed(seed, `flood/${index}`));
  return Uint8Array.from({ length: Math.min(length, 4096) }, () => Math.floor(rng() * 256));
}
