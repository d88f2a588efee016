/**
 * Messages between the page (main thread, which owns the p2p node) and the swarm worker (which owns the model).
 * Adapter bytes travel as transferable ArrayBuffers. Local training text goes in, and by design nothing derived
 * from it goes out except adapters, losses and counters.
 */
import type { RunManifest } from '../../core/wire/run-manifest.ts';
import type { RejectReason } from '../../core/wire/verdict.ts';
import type { NeighbourSummary } from '../../core/swarm/neighbours.ts';
import type { PayloadCodec } from '../../core/wire/codec.ts';

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
}

export type MainToWorker =
  | { type: 'init'; manifest: RunManifest | null; baseModelUrl: string; backend: BackendPreference; options: EngineOptions }
  | { type: 'adapter'; bytes: ArrayBuffer; peerId: string; version: number; step: number; samplesSeen: number; localLoss: number | null;
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
