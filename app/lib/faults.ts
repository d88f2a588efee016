// Faults a simulation injects into one tab through URL parameters (`swarm simulate`): added latency and dropped
// adapter messages, and Byzantine behaviour (what the tab publishes is corrupted; its own training is honest).
// No DOM use here, so the corruption is unit-tested in Node.
import type { Adapter, LoraPair } from '../../core/model/adapter.ts';
import { createNormal, createRng } from '../../core/util/random.ts';
import { decodeAdapter, encodeAdapter, type PayloadCodec } from '../../core/wire/codec.ts';

export const BYZANTINE_BEHAVIOURS = ['sign-flip', 'scaled', 'random', 'stale'] as const;
export type ByzantineBehaviour = (typeof BYZANTINE_BEHAVIOURS)[number];

export interface FaultParams {
  /** Added delay (ms) before an adapter is announced and before a received one reaches the worker. */
  latencyMs: number;
  /** Share of announcements and received adapters silently dropped, [0, 1). */
  drop: number;
  byzantine: ByzantineBehaviour | null;
  /** sign-flip: B → -scale·B; scaled: B → scale·B; random: noise of scale × each tensor's RMS. */
  byzantineScale: number;
}

export const NO_FAULTS: FaultParams = { latencyMs: 0, drop: 0, byzantine: null, byzantineScale: 1 };

/** Reads `latency`, `drop`, `byzantine` and `byzScale`; out-of-range values fall back to no fault. */
export function readFaultParams(p: URLSearchParams): FaultParams {
  const latency = Number(p.get('latency') ?? 0);
  const drop = Number(p.get('drop') ?? 0);
  const mode = p.get('byzantine');
  const byzantine = mode !== null && (BYZANTINE_BEHAVIOURS as readonly string[]).includes(mode) ? (mode as ByzantineBehaviour) : null;
  const scaleRaw = p.get('byzScale');
  const scale = scaleRaw === null ? (byzantine === 'scaled' ? 10 : 1) : Number(scaleRaw);
  return {
    latencyMs: Number.isFinite(latency) && latency > 0 && latency <= 600_000 ? latency : 0,
    drop: Number.isFinite(drop) && drop > 0 && drop < 1 ? drop : 0,
    byzantine,
    byzantineScale: Number.isFinite(scale) && scale > 0 && scale <= 1000 ? scale : 1,
  };
}

function rms(values: Float32Array): number {
  let sum = 0;
  for (const v of values) sum += v * v;
  return values.length === 0 ? 0 : Math.sqrt(sum / values.length);
}

function mapModules(adapter: Adapter, f: (pair: LoraPair, name: string) => LoraPair): Adapter {
  return { ...adapter, modules: new Map([...adapter.modules].map(([name, pair]) => [name, f(pair, name)])) };
}

/**
 * The adapter a Byzantine tab publishes instead of its honest one. sign-flip and scaled change B only, which
 * multiplies every module's ΔW = (alpha/r)·B·A by -scale or scale; random replaces A and B by Gaussian noise of
 * the honest tensors' RMS times scale. 'stale' is handled by the caller (it republishes its first payload).
 */
export function corruptAdapter(adapter: Adapter, behaviour: Exclude<ByzantineBehaviour, 'stale'>, scale: number, seed: number): Adapter {
  switch (behaviour) {
    case 'sign-flip':
      return mapModules(adapter, (p) => ({ ...p, b: p.b.map((v) => -scale * v) }));
    case 'scaled':
      return mapModules(adapter, (p) => ({ ...p, b: p.b.map((v) => scale * v) }));
    case 'random': {
      const normal = createNormal(createRng(seed));
      const noise = (like: Float32Array) => {
        const sigma = scale * rms(like);
        return like.map(() => sigma * normal());
      };
      return mapModules(adapter, (p) => ({ ...p, a: noise(p.a), b: noise(p.b) }));
    }
  }
}

export interface FaultCounters {
  droppedOut: number;
  droppedIn: number;
  delayed: number;
  corrupted: number;
}

/** The faults of one tab, applied by the peer controller on the way out (announce) and in (received adapters). */
export class PageFaults {
  readonly counters: FaultCounters = { droppedOut: 0, droppedIn: 0, delayed: 0, corrupted: 0 };
  private firstPayload: Uint8Array | null = null;
  private published = 0;

  constructor(
    readonly params: FaultParams,
    private readonly random: () => number = Math.random,
    private readonly wait: (ms: number) => Promise<void> = (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  ) {}

  get active(): boolean {
    return this.params.latencyMs > 0 || this.params.drop > 0 || this.params.byzantine !== null;
  }

  /** Whether this outgoing announcement is dropped. */
  dropOutgoing(): boolean {
    const dropped = this.params.drop > 0 && this.random() < this.params.drop;
    if (dropped) this.counters.droppedOut++;
    return dropped;
  }

  /** Whether this received adapter is dropped before the worker sees it. */
  dropIncoming(): boolean {
    const dropped = this.params.drop > 0 && this.random() < this.params.drop;
    if (dropped) this.counters.droppedIn++;
    return dropped;
  }

  async delay(): Promise<void> {
    if (this.params.latencyMs <= 0) return;
    this.counters.delayed++;
    await this.wait(this.params.latencyMs);
  }

  /** The payload to publish: the honest bytes, or for a Byzantine tab its corrupted (or first, when stale) adapter. */
  outgoing(bytes: Uint8Array, codec: PayloadCodec): Uint8Array {
    const behaviour = this.params.byzantine;
    this.published++;
    if (behaviour === null) return bytes;
    if (behaviour === 'stale') {
      this.firstPayload ??= bytes.slice();
      if (this.published > 1) this.counters.corrupted++;
      return this.firstPayload;
    }
    const decoded = decodeAdapter(bytes);
    if (!decoded.ok) return bytes;
    const corrupted = corruptAdapter(decoded.adapter, behaviour, this.params.byzantineScale, 0x5eed + this.published);
    try {
      const out = encodeAdapter(corrupted, codec);
      this.counters.corrupted++;
      return out;
    } catch {
      // Beyond the codec's range (fp16 with a huge scale): send the honest adapter rather than nothing.
      return bytes;
    }
  }
}
