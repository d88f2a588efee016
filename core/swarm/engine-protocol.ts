/**
 * Messages between a peer engine and its host: in a tab, the page (main thread, which owns the p2p node) and the
 * swarm worker (which owns the model); in the node simulator, the simulated network. A received adapter arrives
 * decoded and validated once by the transport (its Float32Arrays travel as transferables); a published one leaves
 * as payload bytes. Local training text goes in, and by design nothing derived from it goes out except adapters,
 * losses and counters.
 */
import type { RunManifest } from '../wire/run-manifest.ts';
import type { RejectReason } from '../wire/verdict.ts';
import type { NeighbourSummary } from './neighbours.ts';
import type { PayloadCodec } from '../wire/codec.ts';
import type { Adapter } from '../model/adapter.ts';
import type { PrivacyStatus } from '../privacy/budget.ts';

export type BackendPreference = 'auto' | 'webgpu' | 'wasm' | 'cpu';

export interface EngineOptions {
  /** Identifies this tab's checkpoint (kept in sessionStorage, so a reload finds it). */
  peerKey: string;
  /** Partition slot (which share of the data this peer trains on). */
  slot: number;
  /** Train on this genre only, overriding the partition (simulations). */
  genre?: string;
  /** Stop after this many local steps (simulations, benchmarks); 0 = never. */
  maxSteps: number;
  /** false: a local-only run that ignores neighbours (the baseline of the acceptance comparison). */
  mergeEnabled: boolean;
  /** A tab without a checkpoint waits this long for a neighbour's adapter to start from (0 = start at once). */
  bootstrapWaitMs: number;
  evaluateEvery: number;
  checkpointEvery: number;
  /** Share of wall time spent training, (0, 1]. */
  duty: number;
  /** Rest more while the page is hidden (only if the volunteer chose so). */
  slowWhenHidden: boolean;
  /** Staleness half-life and drop-after in ms (neighbour weights). */
  halfLifeMs: number;
  dropAfterMs: number;
  /** Batches of each genre's held-out text per evaluation. */
  evalBatches: number;
  /** What the peer evaluates on: the reported held-out split (default) or the validation split (tuning runs). */
  evalSplit?: 'heldout' | 'validation';
}

export type MainToWorker =
  | { type: 'init'; manifest: RunManifest | null; baseModelUrl: string; backend: BackendPreference; options: EngineOptions }
  | { type: 'adapter'; adapter: Adapter; peerId: string; version: number; step: number; samplesSeen: number; localLoss: number | null;
      runId: string; baseModelSha256: string; schemaHash: string; receivedAtMs: number }
  | { type: 'pause' }
  | { type: 'resume' }
  | { type: 'throttle'; duty: number; slowWhenHidden?: boolean }
  | { type: 'visibility'; hidden: boolean }
  | { type: 'local-text'; name: string; text: string }
  | { type: 'generate'; requestId: number; prompt: string; maxNewTokens: number; temperature: number; seed: number }
  | { type: 'export-peft'; requestId: number }
  | { type: 'simulate-device-loss' };

export interface LossPoint {
  step: number;
  loss: number;
  atMs: number;
}

export interface HeldOutPoint {
  step: number;
  /** Mean held-out loss (nats/byte) on this peer's own data mixture. */
  own: number;
  /** Mean over every genre of the run's partition. */
  allGenres: number;
  byGenre: Record<string, number>;
  atMs: number;
}

export interface MergeRecord {
  step: number;
  atMs: number;
  strategy: string;
  inputs: Array<{ peerId: string; weight: number; ageMs: number }>;
  ms: number;
  /** merged; kept-own: the result failed the guard's bounds; no-usable-input: the guard refused every neighbour. */
  outcome?: 'merged' | 'kept-own' | 'no-usable-input';
}

/** What the update guard did, in total and per neighbour. */
export interface GuardCounts {
  clipped: number;
  refused: number;
  /** Merges whose result failed the bounds, so the peer kept its own adapter. */
  mergesRefused: number;
  byPeer: Record<string, { clipped: number; refused: number }>;
}

export interface PeerHealth {
  state: 'ok' | 'unhealthy';
  reason: string | null;
}

export interface DataSourceInfo {
  name: string;
  kind: 'corpus' | 'local';
  bytes: number;
  weight: number;
}

export interface EngineStatus {
  phase: 'loading' | 'bootstrapping' | 'training' | 'paused' | 'done' | 'error';
  backend: string;
  step: number;
  samplesSeen: number;
  tokensSeen: number;
  tokensPerSecond: number | null;
  trainLoss: number | null;
  heldOut: HeldOutPoint | null;
  baseHeldOut: HeldOutPoint | null;
  merges: number;
  publishedVersion: number;
  neighbours: NeighbourSummary[];
  lastMerge: MergeRecord | null;
  checkpoint: { step: number; atMs: number; bytes: number } | null;
  resumedFromStep: number | null;
  adoptedFrom: { peerId: string; step: number } | null;
  donatedMs: number;
  duty: number;
  data: DataSourceInfo[];
  adaptersAccepted: number;
  adaptersRefused: Partial<Record<RejectReason, number>>;
  /** Mean ‖ΔWself − ΔWneighbour‖ over the neighbours' adapters at the last merge (before merging); absent before one. */
  consensusDistance?: number | null;
  guard: GuardCounts;
  health: PeerHealth;
  /**
   * What differential privacy has cost the volunteer's own files so far (core/privacy/budget.ts): ε spent of the
   * target at δ, releases made, and whether the budget is spent (the peer then shares nothing more). null (or absent,
   * from hosts that build a status themselves) when the run does not use DP.
   */
  privacy?: PrivacyStatus | null;
}

export interface ReadyInfo {
  manifest: RunManifest;
  manifestId: string;
  wireRunId: string;
  schemaHash: string;
  baseModelId: string;
  baseModelSha256: string;
  backend: string;
  backendReason: string;
  adapterInfo?: string;
  /** WASM thread pool size (absent on other backends). */
  threads?: number;
  codec: PayloadCodec;
  /** The exact size of this run's adapter payloads (its schema in its codec): the transport refuses any other. */
  payloadBytes: number;
  lossHistory: LossPoint[];
  heldOutHistory: HeldOutPoint[];
  mergeHistory: MergeRecord[];
}

export type ErrorKind = 'no-webgpu' | 'model-load' | 'run-mismatch' | 'storage-full' | 'storage' | 'data' | 'backend-lost' | 'internal';

export type WorkerToMain =
  | { type: 'ready'; info: ReadyInfo; status: EngineStatus }
  | { type: 'status'; status: EngineStatus; newLoss?: LossPoint; newHeldOut?: HeldOutPoint; newMerge?: MergeRecord }
  | { type: 'publish'; bytes: ArrayBuffer; version: number; step: number; samplesSeen: number; localLoss: number | null; codec: PayloadCodec; schemaHash: string }
  | { type: 'adapter-verdict'; peerId: string; version: number; ok: boolean; reason?: RejectReason; detail?: string }
  | { type: 'generated'; requestId: number; base: string; adapted: string; ms: number }
  | { type: 'peft'; requestId: number; files: Record<string, ArrayBuffer> }
  | { type: 'notice'; level: 'info' | 'warning'; message: string }
  | { type: 'error'; kind: ErrorKind; message: string; fatal: boolean };

/** The distinct buffers behind an adapter's tensors: what postMessage can transfer instead of copying. */
export function adapterBuffers(adapter: Adapter): ArrayBuffer[] {
  const buffers = new Set<ArrayBuffer>();
  for (const pair of adapter.modules.values()) {
    for (const values of [pair.a, pair.b]) if (values.buffer instanceof ArrayBuffer) buffers.add(values.buffer);
  }
  return [...buffers];
}
