// Faults a simulation injects into one tab through URL parameters (`swarm simulate`): added latency and dropped
// adapter messages, and Byzantine behaviour (what the tab publishes is corrupted; its own training is honest).
// No DOM use here, so the corruption is unit-tested in Node.
import type { PayloadCodec } from '../../core/wire/codec.ts';
import { poisonPublished, PUBLISHED_VALUE_MODES, type AttackState } from '../../core/swarm/byzantine.ts';

/** What a tab can play (core/swarm/byzantine.ts); joiner and flood need the node engine's simulated transport. */
export const BYZANTINE_BEHAVIOURS = PUBLISHED_VALUE_MODES;
export type ByzantineBehaviour = (typeof BYZANTINE_BEHAVIOURS)[number];

export interface FaultParams {
  /** Added delay (ms) before an adapter is announced and before a received one reaches the worker. */
  latencyMs: number;
  /** Share of announcements and received adapters silently dropped, [0, 1). */
  drop: number;
  byzantine: ByzantineBehaviour | null;
  /** The mode's scale (core/swarm/byzantine.ts: sign-flip, scaled, random, drift, sybil). */
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

export interface FaultCounters {
  droppedOut: number;
  droppedIn: number;
  delayed: number;
  corrupted: number;
}

/** The faults of one tab, applied by the peer controller on the way out (announce) and in (received adapters). */
export class PageFaults {
  readonly counters: FaultCounters = { droppedOut: 0, droppedIn: 0, delayed: 0, corrupted: 0 };
  private readonly attack: AttackState = { first: null, rounds: 0 };

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

  /** The payload to publish: the honest bytes, or for a Byzantine tab what its mode publishes instead. */
  outgoing(bytes: Uint8Array, codec: PayloadCodec): Uint8Array {
    const mode = this.params.byzantine;
    if (mode === null) return bytes;
    const out = poisonPublished({ mode, scale: this.params.byzantineScale, seed: 0x5eed }, bytes, this.attack, codec).bytes;
    if (out !== bytes && (mode !== 'stale' || this.attack.rounds > 1)) this.counters.corrupted++;
    return out;
  }
}
