/**
 * The peer engine: the swarm loop of one peer, independent of how it is hosted. A browser tab's Web Worker wires it
 * to postMessage and IndexedDB (app/worker), the node simulator to a virtual clock and simulated links
 * (cli/simulate/node), the unit tests to arrays and a Map. Train H local steps, publish the adapter, merge the
 * freshest accepted neighbour adapters with the run's strategy, checkpoint, continue; never wait for a neighbour.
 *
 * Everything that reaches it from a neighbour has been decoded and validated once by the transport (core/wire);
 * the engine still treats the values as hostile: a neighbour's adapter goes through the update guard before any
 * merge, a merge result replaces the peer's own adapter only when it is finite and bounded, a late joiner picks the
 * candidate that fits its own data best, and checkpoints are validated on load and written to two slots in turn.
 *
 * The loop only ever moves on when host.sleep() returns (never on a callback), so a host with a virtual clock can
 * run many engines deterministically, one event at a time.
 */
import * as tf from '@tensorflow/tfjs';
import { generate, type Gpt2Model } from '../model/gpt2.ts';
import type { BaseWeights, Gpt2Config } from '../model/config.ts';
import { schemaHash as adapterSchemaHash, type Adapter } from '../model/adapter.ts';
import type { Trainer } from '../train/trainer.ts';
import { evaluate } from '../train/evaluate.ts';
import { mixtureSources, PreparedCorpus, slotSources } from '../data/corpus.ts';
import { slotBatch, type Batch, type MixtureSource } from '../data/batches.ts';
import { deriveSeed } from '../util/random.ts';
import { ByteTokenizer } from '../io/tokenizer.ts';
import { utf8Decode, utf8Encode } from '../io/text.ts';
import { exportPeft } from '../io/peft.ts';
import { mergeWith, getStrategy, resolveParams } from '../merge/registry.ts';
import type { MergeInput, MergeParams } from '../merge/types.ts';
import { getOuterOptimizer, resolveOuterParams } from '../outer/registry.ts';
import { roundFreshness } from '../outer/freshness.ts';
import type { OuterOptimizer, OuterStepResult } from '../outer/types.ts';
import { FrozenFactor } from './frozen-factor.ts';
import { checkCompatibility } from './compatibility.ts';
import { encodeAdapter, expectedPayloadBytes } from '../wire/codec.ts';
import { meanAdapterDistance } from './consensus.ts';
import { runManifestId, type RunManifest } from '../wire/run-manifest.ts';
import type { RejectReason } from '../wire/verdict.ts';
import { NeighbourTable } from './neighbours.ts';
import { actionsAfterStep, checkCadence, restAfterStep, type CadenceConfig } from './cadence.ts';
import { defaultRunManifest, runTrainingSettings, wireRunId, type RunTrainingSettings } from './run.ts';
import { checkpointSlotKeys, decodeCheckpoint, encodeCheckpoint, StorageFullError, validateCheckpoint, type KeyValueStore, type PeerCheckpoint } from './peer-checkpoint.ts';
import { MergeGuard, momentsProblem, storedAdapterProblem, type GuardEvent } from './guard.ts';
import { evaluatePeer, evaluationSets, peerModel, peerTrainer } from './peer-model.ts';
import { PeerPrivacy, platformRandomness, type PrivacyRandomness } from '../privacy/peer-privacy.ts';
import type { PrivacyBudgetState } from '../privacy/budget.ts';
import type {
  DataSourceInfo,
  EngineOptions,
  EngineStatus,
  ErrorKind,
  HeldOutPoint,
  LossPoint,
  MainToWorker,
  MergeRecord,
  ReadyInfo,
  WorkerToMain,
} from './engine-protocol.ts';

export interface LoadedBase {
  config: Gpt2Config;
  weights: BaseWeights;
  sha256: string;
}

export interface EngineHost {
  /** Reads a prepared-corpus file (`index.json`, `<genre>.train.txt`, …). */
  readCorpus(relativePath: string): Promise<string>;
  loadBase(url: string): Promise<LoadedBase>;
  store: KeyValueStore;
  post(message: WorkerToMain, transfer?: ArrayBuffer[]): void;
  /** Switches the tfjs backend (after a WebGPU device loss); returns the backend now in use. */
  switchBackend?(name: 'wasm' | 'cpu'): Promise<string>;
  backendName(): string;
  /** Screens neighbours' adapters before a merge and judges the result (default: the update guard, core/swarm/guard.ts). */
  guard?: MergeGuard;
  now?(): number;
  /**
   * Randomness of a run with differential privacy: each round's Poisson sample and the noise. Default: seeded from
   * crypto.getRandomValues (a volunteer's peer); tests and simulations pass seeded sources to repeat a run.
   */
  privacyRandomness?(): PrivacyRandomness;
  /** The engine's only way to wait: a tab or a Node peer uses a timer, the simulator its virtual clock. */
  sleep(ms: number): Promise<void>;
}

/** Named, so the page can say in words what went wrong. */
export class RunMismatchError extends Error {
  static override readonly name = 'RunMismatchError';
  override readonly name = RunMismatchError.name;
}

/** Share of the batches drawn from a volunteer's own files, once they added any. */
const LOCAL_SHARE = 0.5;
const MAX_HISTORY = 2000;
/** A late joiner decides once this many distinct neighbours offered an adapter (or its wait is over). */
export const BOOTSTRAP_QUORUM = 3;
/** How often a waiting late joiner looks at the offers it has (ms). */
const BOOTSTRAP_POLL_MS = 1000;

/** Copy of a slice of a typed array that owns its own ArrayBuffer (what postMessage can transfer). */
function ownBuffer(bytes: Uint8Array): ArrayBuffer {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer
    ? bytes.buffer
    : bytes.slice().buffer;
}

/**
 * With differential privacy, held-out loss leaves the peer in telemetry, so it is measured only at a round boundary,
 * where the model holds the public anchor: once per round in which an evaluation fell due.
 */
function evaluatedInRound(step: number, boundary: boolean, c: CadenceConfig): boolean {
  if (!boundary || c.evaluateEvery <= 0) return false;
  return Math.floor(step / c.evaluateEvery) > Math.floor((step - c.localSteps) / c.evaluateEvery);
}

function zeroB(adapter: Adapter): Adapter {
  const modules = new Map([...adapter.modules].map(([name, p]) => [name, { ...p, b: new Float32Array(p.b.length) }]));
  return { ...adapter, modules };
}

export class PeerEngine {
  private readonly now: () => number;
  private readonly guard: MergeGuard;
  private readonly sleep: (ms: number) => Promise<void>;
  private options!: EngineOptions;
  private manifest!: RunManifest;
  private settings!: RunTrainingSettings;
  private cadence!: CadenceConfig;
  private runWireId = '';
  private base!: LoadedBase;
  private model?: Gpt2Model;
  private trainer?: Trainer;
  private table!: NeighbourTable;
  private schema = '';
  private sources: MixtureSource[] = [];
  private corpusSources: MixtureSource[] = [];
  private localTexts: Array<{ name: string; bytes: Uint8Array }> = [];
  private heldOut = new Map<string, Batch[]>();
  private mixture: Record<string, number> = {};
  private lossHistory: LossPoint[] = [];
  private heldOutHistory: HeldOutPoint[] = [];
  private mergeHistory: MergeRecord[] = [];
  private lock: Promise<unknown> = Promise.resolve();
  private paused = false;
  private hidden = false;
  private stopped = false;
  private resumeWaiters: Array<() => void> = [];
  /**
   * The round anchor: the adapter this local round started from (set at every H boundary after publish and merge,
   * on a fresh start, on adoption and on restore). The public point an outer optimiser steps from and differential
   * privacy measures an update against; saved in the checkpoint.
   */
  private anchor?: Adapter;
  /** Differential privacy for the volunteer's files (core/privacy/peer-privacy.ts): absent in runs without it. */
  private privacy?: PeerPrivacy;
  private budgetSpentSaid = false;
  /** When the current round started (startRound), on this peer's clock: the unit an input's age is counted in. */
  private roundStartedAtMs = 0;
  /** The run's outer optimiser (core/outer) and its resolved parameters. */
  private outer!: OuterOptimizer;
  private outerParams: MergeParams = {};
  /** The outer optimiser's momentum buffer; null is zero (a fresh start, a late joiner, a rebuilt model). */
  private momentum: Adapter | null = null;
  /** Set in a run whose LoRA A is frozen: the run's A, which nothing from outside may move. */
  private frozen?: FrozenFactor;
  private bootstrapDone = false;
  private bootstrapOffers: Array<{ adapter: Adapter; peerId: string; step: number }> = [];
  private running?: Promise<void>;
  /** Which of the two checkpoint slots the next write goes to. */
  private nextSlot = 0;
  private deviceLost = false;
  private backendReason = '';
  private adapterInfo?: string;
  private threads?: number;
  private readonly status: EngineStatus = {
    phase: 'loading', backend: '', step: 0, samplesSeen: 0, tokensSeen: 0, tokensPerSecond: null, trainLoss: null, heldOut: null,
    baseHeldOut: null, merges: 0, publishedVersion: 0, neighbours: [], lastMerge: null, checkpoint: null, resumedFromStep: null,
    adoptedFrom: null, donatedMs: 0, duty: 1, data: [], adaptersAccepted: 0, adaptersRefused: {},
    guard: { clipped: 0, refused: 0, mergesRefused: 0, byPeer: {} }, health: { state: 'ok', reason: null },
  };

  constructor(private readonly host: EngineHost) {
    this.now = host.now ?? Date.now;
    this.sleep = (ms) => host.sleep(ms);
    this.guard = host.guard ?? new MergeGuard();
  }

  get checkpointKey(): string {
    return `checkpoint/${this.runWireId}/${this.options.peerKey}`;
  }

  /** Resolves when the loop has ended (its steps done, stopped, or a fatal error). */
  get finished(): Promise<void> {
    return this.running ?? Promise.resolve();
  }

  private get localTextKey(): string {
    return `local-text/${this.options.peerKey}`;
  }

  /** Runs body alone: training steps, merges, generation and export never interleave on the model. */
  private exclusive<T>(body: () => Promise<T>): Promise<T> {
    const next = this.lock.then(body, body);
    this.lock = next.catch(() => undefined);
    return next;
  }

  async handle(message: MainToWorker): Promise<void> {
    try {
      switch (message.type) {
        case 'init':
          try {
            await this.init(message.manifest, message.baseModelUrl, message.options);
          } catch (error) {
            this.fail(error, true);
            return;
          }
          this.running = this.loop();
          return;
        case 'adapter':
          await this.exclusive(() => this.receiveAdapter(message));
          return;
        case 'pause':
          this.paused = true;
          this.status.phase = this.status.phase === 'training' ? 'paused' : this.status.phase;
          this.postStatus();
          return;
        case 'resume':
          this.paused = false;
          if (this.status.phase === 'paused') this.status.phase = 'training';
          this.resumeWaiters.splice(0).forEach((wake) => wake());
          this.postStatus();
          return;
        case 'throttle':
          this.options.duty = Math.min(1, Math.max(0.05, message.duty));
          if (message.slowWhenHidden !== undefined) this.options.slowWhenHidden = message.slowWhenHidden;
          this.status.duty = this.options.duty;
          this.postStatus();
          return;
        case 'visibility':
          this.hidden = message.hidden;
          return;
        case 'local-text':
          await this.exclusive(() => this.addLocalText(message.name, message.text, true));
          return;
        case 'generate':
          await this.exclusive(() => this.generateBoth(message.requestId, message.prompt, message.maxNewTokens, message.temperature, message.seed));
          return;
        case 'export-peft':
          await this.exclusive(() => this.exportPeftFiles(message.requestId));
          return;
        case 'simulate-device-loss':
          this.deviceLost = true;
          return;
      }
    } catch (error) {
      this.fail(error);
    }
  }

  setBackendInfo(reason: string, adapterInfo?: string, threads?: number): void {
    this.backendReason = reason;
    this.adapterInfo = adapterInfo;
    this.threads = threads;
  }

  /** Writes a checkpoint now, between steps (a Node peer stopping on Ctrl-C); nothing before the model exists. */
  async checkpointNow(): Promise<void> {
    if (this.model) await this.exclusive(() => this.saveCheckpointReporting());
  }

  /** Called by the host when the GPU device is lost: the next step rebuilds on WASM from the last checkpoint. */
  signalDeviceLost(): void {
    this.deviceLost = true;
  }

  stop(): void {
    this.stopped = true;
    this.resumeWaiters.splice(0).forEach((wake) => wake());
  }

  /**
   * Stops the loop and frees the model's and optimiser's tensors. For hosts that run many engines in one tfjs
   * (the simulator's in-process shard): without it, every finished or killed peer kept its copy of the model.
   * Only call it once the loop can no longer run (it has finished, or it is parked in a sleep that never returns).
   */
  dispose(): void {
    this.stop();
    this.trainer?.dispose();
    this.model?.dispose();
    this.trainer = undefined;
    this.model = undefined;
  }

  private fail(error: unknown, fatal = false): void {
    const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    let kind: ErrorKind = 'internal';
    if (error instanceof StorageFullError) kind = 'storage-full';
    else if (error instanceof RunMismatchError) kind = 'run-mismatch';
    else if (error instanceof Error && /CheckpointFetchError|ModelConfigError|MissingTensorError|TensorShapeError/.test(error.name)) kind = 'model-load';
    else if (error instanceof Error && /DatasetError|PartitionError/.test(error.name)) kind = 'data';
    if (fatal) this.status.phase = 'error';
    this.host.post({ type: 'error', kind, message, fatal });
    if (fatal) this.postStatus();
  }

  private async init(given: RunManifest | null, baseModelUrl: string, options: EngineOptions): Promise<void> {
    this.options = { ...options };
    this.status.duty = options.duty;
    this.status.backend = this.host.backendName();
    this.base = await this.host.loadBase(given?.baseModel.url ?? baseModelUrl);
    const defaults = defaultRunManifest(this.base.sha256);
    const manifest = given ?? { ...defaults, baseModel: { ...defaults.baseModel, url: baseModelUrl } };
    if (manifest.baseModel.sha256 !== this.base.sha256) {
      throw new RunMismatchError(
        `the run expects base model sha256 ${manifest.baseModel.sha256.slice(0, 16)}…, but ${manifest.baseModel.url} serves ${this.base.sha256.slice(0, 16)}…`,
      );
    }
    this.manifest = manifest;
    this.settings = runTrainingSettings(manifest);
    if (manifest.privacy) {
      this.privacy = new PeerPrivacy(manifest.privacy, this.settings.seqLen + 1, this.host.privacyRandomness?.() ?? platformRandomness());
    }
    getStrategy(manifest.strategy.name);
    resolveParams(getStrategy(manifest.strategy.name), manifest.strategy.params);
    this.outer = getOuterOptimizer(manifest.outer?.name ?? 'none');
    this.outerParams = resolveOuterParams(this.outer, manifest.outer?.params);
    this.cadence = checkCadence({ localSteps: manifest.localSteps, checkpointEvery: options.checkpointEvery, evaluateEvery: options.evaluateEvery });
    this.runWireId = wireRunId(manifest);
    this.buildModel();
    this.frozen = manifest.lora.mode === 'frozen-a' ? new FrozenFactor(await this.model!.getAdapter(), manifest.codec) : undefined;
    this.table = new NeighbourTable(
      { runId: this.runWireId, baseModelSha256: manifest.baseModel.sha256, schemaHash: this.schema },
      { halfLifeMs: options.halfLifeMs, dropAfterMs: options.dropAfterMs },
    );
    await this.prepareData();
    if (await this.restoreLatestCheckpoint()) {
      this.bootstrapDone = true;
    } else {
      this.bootstrapDone = !options.mergeEnabled || options.bootstrapWaitMs <= 0;
      await this.startRound();
      const base = await this.evaluateHeldOut();
      this.status.baseHeldOut = base;
      this.status.heldOut = base;
      this.heldOutHistory.push(base);
    }
    const info: ReadyInfo = {
      manifest,
      manifestId: runManifestId(manifest),
      wireRunId: this.runWireId,
      schemaHash: this.schema,
      baseModelId: manifest.baseModel.id,
      baseModelSha256: manifest.baseModel.sha256,
      backend: this.host.backendName(),
      backendReason: this.backendReason,
      adapterInfo: this.adapterInfo,
      threads: this.threads,
      codec: manifest.codec,
      payloadBytes: expectedPayloadBytes(await this.model!.getAdapter(), manifest.codec),
      lossHistory: [...this.lossHistory],
      heldOutHistory: [...this.heldOutHistory],
      mergeHistory: [...this.mergeHistory],
    };
    this.status.phase = this.bootstrapDone ? (this.paused ? 'paused' : 'training') : 'bootstrapping';
    this.host.post({ type: 'ready', info, status: this.snapshot() });
  }

  private buildModel(): void {
    this.trainer?.dispose();
    this.model?.dispose();
    this.model = peerModel(this.base, this.manifest, this.settings);
    this.momentum = null;
    this.trainer = peerTrainer(this.model, this.settings);
    this.schema = this.model.adapterSchemaHash();
    this.status.backend = this.host.backendName();
  }

  private async prepareData(): Promise<void> {
    const corpus = await PreparedCorpus.open(this.host.readCorpus);
    if (this.options.genre) {
      this.mixture = { [this.options.genre]: 1 };
      this.corpusSources = await mixtureSources(corpus, this.mixture);
    } else ({ mixture: this.mixture, sources: this.corpusSources } = await slotSources(corpus, this.settings.partition, this.options.slot, this.settings.seed));
    const evalGenres = new Set([...this.settings.partition.genres, ...Object.keys(this.mixture)]);
    this.heldOut = await evaluationSets(corpus, evalGenres, this.settings.seqLen, this.options.evalBatches, this.options.evalSplit ?? 'heldout');
    const stored = await this.host.store.get(this.localTextKey);
    if (stored) {
      const list = JSON.parse(utf8Decode(stored)) as Array<{ name: string; text: string }>;
      for (const item of list) await this.addLocalText(item.name, item.text, false);
    }
    this.rebuildSources();
  }

  private rebuildSources(): void {
    const localBytes = this.localTexts.reduce((n, t) => n + t.bytes.length, 0);
    const corpusWeight = this.localTexts.length > 0 ? 1 - LOCAL_SHARE : 1;
    this.sources = this.corpusSources.map((s) => ({ ...s, weight: s.weight * corpusWeight }));
    for (const t of this.localTexts) {
      if (t.bytes.length > this.settings.seqLen + 1) this.sources.push({ name: `local:${t.name}`, tokens: t.bytes, weight: (LOCAL_SHARE * t.bytes.length) / localBytes });
    }
    this.status.data = this.sources.map<DataSourceInfo>((s) => ({
      name: s.name.startsWith('local:') ? s.name.slice(6) : s.name,
      kind: s.name.startsWith('local:') ? 'local' : 'corpus',
      bytes: s.tokens.length,
      weight: s.weight,
    }));
  }

  /** Local files stay in this worker (and its IndexedDB); only the adapter trained on them ever leaves. */
  private async addLocalText(name: string, text: string, persist: boolean): Promise<void> {
    const bytes = new ByteTokenizer().encode(text);
    if (bytes.length <= this.settings.seqLen + 1) {
      this.host.post({ type: 'notice', level: 'warning', message: `${name} is too short to train on (${bytes.length} bytes; at least ${this.settings.seqLen + 2} needed)` });
      return;
    }
    const own = Uint8Array.from(bytes);
    if (this.privacy) {
      const problem = this.privacy.fileProblem(own);
      if (problem) {
        this.host.post({ type: 'notice', level: 'warning', message: `${name} is not used: ${problem}` });
        return;
      }
      this.privacy.addFile(own);
    }
    this.localTexts.push({ name, bytes: own });
    if (persist) {
      const existing = await this.host.store.get(this.localTextKey);
      const list = existing ? (JSON.parse(utf8Decode(existing)) as Array<{ name: string; text: string }>) : [];
      list.push({ name, text });
      await this.host.store.put(this.localTextKey, utf8Encode(JSON.stringify(list)));
      this.rebuildSources();
      this.host.post({ type: 'notice', level: 'info', message: `training on ${name} too (${bytes.length} bytes, stays in this tab)` });
      this.postStatus();
    }
  }

  private restore(c: PeerCheckpoint): void {
    this.model!.setAdapter(c.adapter);
    this.anchor = c.anchor ?? c.adapter;
    this.roundStartedAtMs = this.now();
    this.momentum = c.outerMomentum ?? null;
    this.trainer!.optimizer.importState(c.optimizer);
    Object.assign(this.status, {
      step: c.counters.step,
      samplesSeen: c.counters.samplesSeen,
      tokensSeen: c.counters.tokensSeen,
      merges: c.counters.merges,
      publishedVersion: c.counters.publishedVersion,
      donatedMs: c.counters.donatedMs,
      adaptersAccepted: c.counters.adaptersAccepted,
      resumedFromStep: c.counters.step,
      adoptedFrom: c.adoptedFrom,
      baseHeldOut: c.baseHeldOut,
      heldOut: c.heldOutHistory.at(-1) ?? null,
      trainLoss: c.lossHistory.at(-1)?.loss ?? null,
      lastMerge: c.mergeHistory.at(-1) ?? null,
      checkpoint: { step: c.counters.step, atMs: c.savedAtMs, bytes: 0 },
    });
    this.lossHistory = c.lossHistory;
    this.heldOutHistory = c.heldOutHistory;
    this.mergeHistory = c.mergeHistory;
    if (this.privacy && c.anchor) {
      // Progress since the round anchor was trained on a sample that is lost with the reload; using it would let
      // those records into the next release a second time. The round restarts from the public anchor instead.
      this.model!.setAdapter(c.anchor);
      this.startPrivateRound();
    }
  }

  /**
   * Restores the newest checkpoint slot that decodes and passes validation (this run, this adapter's schema,
   * finite values); a slot that fails is reported in words and left for the next write to replace.
   */
  private async restoreLatestCheckpoint(): Promise<boolean> {
    const slots = checkpointSlotKeys(this.checkpointKey);
    // The single key of earlier builds is read too, so an upgrade keeps what a volunteer trained.
    const keys = [...slots, this.checkpointKey];
    const usable: Array<{ checkpoint: PeerCheckpoint; key: string }> = [];
    const ledgers: PrivacyBudgetState[] = [];
    let stored = 0;
    for (const key of keys) {
      const bytes = await this.host.store.get(key);
      if (!bytes) continue;
      stored++;
      let verdict: ReturnType<typeof validateCheckpoint>;
      try {
        const decoded = decodeCheckpoint(bytes);
        if (decoded.privacyLedger && decoded.wireRunId === this.runWireId) ledgers.push(decoded.privacyLedger);
        verdict = validateCheckpoint(decoded, {
          wireRunId: this.runWireId,
          adapter: await this.model!.getAdapter(),
          privacy: this.manifest.privacy,
          frozenA: this.frozen !== undefined,
        });
      } catch (error) {
        verdict = { ok: false, reason: (error as Error).message };
      }
      if (verdict.ok) usable.push({ checkpoint: verdict.checkpoint, key });
      else this.host.post({ type: 'notice', level: 'warning', message: `a stored checkpoint copy could not be used (${verdict.reason})` });
    }
    usable.sort((a, b) => b.checkpoint.counters.step - a.checkpoint.counters.step || b.checkpoint.savedAtMs - a.checkpoint.savedAtMs);
    // The spend is the largest any readable copy records, even one that cannot be restored otherwise.
    this.privacy?.restoreLedger(ledgers);
    const newest = usable[0];
    if (!newest) {
      if (stored > 0) this.host.post({ type: 'notice', level: 'warning', message: 'no stored checkpoint of this run could be used, so training starts fresh from the base model' });
      return false;
    }
    this.restore(newest.checkpoint);
    // The next write goes to the other slot, so a torn write can never destroy the copy just restored.
    this.nextSlot = newest.key === slots[0] ? 1 : 0;
    return true;
  }

  /** Writes a checkpoint; returns false (and says why) when its values cannot be trusted and it was skipped. */
  private async checkpoint(): Promise<boolean> {
    const c: PeerCheckpoint = {
      wireRunId: this.runWireId,
      peerKey: this.options.peerKey,
      slot: this.options.slot,
      savedAtMs: this.now(),
      counters: {
        step: this.status.step,
        samplesSeen: this.status.samplesSeen,
        tokensSeen: this.status.tokensSeen,
        merges: this.status.merges,
        publishedVersion: this.status.publishedVersion,
        donatedMs: this.status.donatedMs,
        adaptersAccepted: this.status.adaptersAccepted,
      },
      adapter: await this.model!.getAdapter(),
      ...(this.anchor ? { anchor: this.anchor } : {}),
      ...(this.momentum ? { outerMomentum: this.momentum } : {}),
      optimizer: await this.trainer!.optimizer.exportState(),
      lossHistory: this.lossHistory,
      heldOutHistory: this.heldOutHistory,
      baseHeldOut: this.status.baseHeldOut,
      mergeHistory: this.mergeHistory,
      adoptedFrom: this.status.adoptedFrom,
      ...(this.privacy ? { privacyLedger: this.privacy.ledger() } : {}),
    };
    const poisoned =
      storedAdapterProblem(c.adapter) ??
      (c.anchor ? storedAdapterProblem(c.anchor) : null) ??
      (c.outerMomentum ? storedAdapterProblem(c.outerMomentum) : null) ??
      momentsProblem(c.optimizer);
    if (poisoned) {
      // Never overwrite a good checkpoint with values that cannot be trusted.
      this.markUnhealthy(`checkpoint skipped: ${poisoned}`);
      return false;
    }
    const bytes = encodeCheckpoint(c);
    const [first, second] = checkpointSlotKeys(this.checkpointKey);
    await this.host.store.put(this.nextSlot === 0 ? first : second, bytes);
    this.nextSlot = 1 - this.nextSlot;
    this.status.checkpoint = { step: c.counters.step, atMs: c.savedAtMs, bytes: bytes.length };
    return true;
  }

  /** The adapter the model holds now becomes the anchor of the next local round. */
  private async startRound(): Promise<void> {
    this.anchor = await this.model!.getAdapter();
    this.roundStartedAtMs = this.now();
    if (this.privacy) this.startPrivateRound();
  }

  /** A fresh optimiser and a fresh Poisson sample: nothing private of the last round reaches this one unreleased. */
  private startPrivateRound(): void {
    this.trainer!.optimizer.resetMoments();
    this.privacy!.startRound();
  }

  private markUnhealthy(reason: string): void {
    this.status.health = { state: 'unhealthy', reason };
    this.host.post({ type: 'notice', level: 'warning', message: reason });
  }

  private markHealthy(): void {
    if (this.status.health.state !== 'ok') this.status.health = { state: 'ok', reason: null };
  }

  private batchFor(step: number): Batch {
    return slotBatch(this.privacy ? this.privateRoundSources(step) : this.sources, this.settings.seed, this.options.slot, step, this.settings.batchSize, this.settings.seqLen);
  }

  /**
   * With differential privacy, the volunteer's records reach training only through the round's Poisson sample (the
   * sampling rate the accountant assumes), and never outside a training step (step −1 scores bootstrap offers).
   */
  private privateRoundSources(step: number): MixtureSource[] {
    const records = step >= 0 ? this.privacy!.sampledSources(LOCAL_SHARE) : [];
    const corpusWeight = records.length > 0 ? 1 - LOCAL_SHARE : 1;
    return [...this.corpusSources.map((s) => ({ ...s, weight: s.weight * corpusWeight })), ...records];
  }

  private async evaluateHeldOut(): Promise<HeldOutPoint> {
    return evaluatePeer(this.model!, this.heldOut, this.settings.partition.genres, this.mixture, this.status.step, this.now());
  }

  private async loop(): Promise<void> {
    await this.waitForBootstrap();
    let tokensPerSecond: number | null = null;
    while (!this.stopped) {
      if (this.options.maxSteps > 0 && this.status.step >= this.options.maxSteps) {
        await this.exclusive(() => this.finish());
        return;
      }
      if (this.paused) {
        await new Promise<void>((resolve) => this.resumeWaiters.push(resolve));
        continue;
      }
      if (this.deviceLost) await this.exclusive(() => this.recoverFromDeviceLoss());
      const started = this.now();
      let busyMs = 0;
      try {
        await this.exclusive(async () => {
          const step = this.status.step;
          const result = await this.trainer!.trainStep(() => this.batchFor(step));
          busyMs = Math.max(1, this.now() - started);
          if (!Number.isFinite(result.loss)) {
            await this.rollBack(`the training loss at step ${step + 1} was not finite`);
            return;
          }
          const tps = (result.tokens * 1000) / busyMs;
          tokensPerSecond = tokensPerSecond === null ? tps : 0.8 * tokensPerSecond + 0.2 * tps;
          this.status.step = step + 1;
          this.status.samplesSeen += this.settings.batchSize;
          this.status.tokensSeen += result.tokens;
          this.status.trainLoss = result.loss;
          this.status.tokensPerSecond = tokensPerSecond;
          this.status.donatedMs += busyMs;
          const point = { step: this.status.step, loss: result.loss, atMs: this.now() };
          this.pushBounded(this.lossHistory, point);
          await this.afterStep(point);
        });
      } catch (error) {
        if (this.host.backendName() === 'webgpu') {
          this.host.post({ type: 'notice', level: 'warning', message: `WebGPU failed (${(error as Error).message}); continuing on WASM` });
          this.deviceLost = true;
          continue;
        }
        this.fail(error, true);
        return;
      }
      const duty = this.hidden && this.options.slowWhenHidden ? this.options.duty * 0.25 : this.options.duty;
      const rest = restAfterStep(busyMs, duty);
      // Yield to the message queue even at full duty, so pause, adapters and "try it" are handled promptly.
      await this.sleep(Number.isFinite(rest) ? rest : 1000);
    }
  }

  /** Goes back to the last good checkpoint (or the adapter as it was) after a step produced non-finite values. */
  private async rollBack(reason: string): Promise<void> {
    this.markUnhealthy(`${reason}; going back to the last checkpoint`);
    const saved = await this.restoreLatestCheckpoint();
    if (!saved) {
      this.buildModel();
      this.status.step = 0;
      await this.startRound();
    }
    this.postStatus();
  }

  private pushBounded<T>(list: T[], item: T): void {
    list.push(item);
    if (list.length > MAX_HISTORY) list.splice(0, list.length - MAX_HISTORY);
  }

  private async afterStep(point: LossPoint): Promise<void> {
    const nowMs = this.now();
    this.table.prune(nowMs);
    const live = this.options.mergeEnabled ? this.table.size : 0;
    const actions = actionsAfterStep(this.status.step, live, this.cadence);
    let newHeldOut: HeldOutPoint | undefined;
    let newMerge: MergeRecord | undefined;
    if (actions.publish) await this.publish();
    if (actions.merge) newMerge = await this.merge();
    if (actions.publish) await this.startRound();
    if (this.privacy ? evaluatedInRound(this.status.step, actions.publish, this.cadence) : actions.evaluate) {
      newHeldOut = await this.evaluateHeldOut();
      this.status.heldOut = newHeldOut;
      this.pushBounded(this.heldOutHistory, newHeldOut);
    }
    if (actions.checkpoint) await this.saveCheckpointReporting();
    this.postStatus({ newLoss: point, newHeldOut, newMerge });
  }

  private async saveCheckpointReporting(): Promise<void> {
    try {
      await this.checkpoint();
    } catch (error) {
      // Training goes on without checkpoints; the page says why.
      this.fail(error);
    }
  }

  private async publish(): Promise<void> {
    if (!this.options.mergeEnabled && !this.privacy) return;
    let adapter = await this.model!.getAdapter();
    if (this.privacy) {
      const released = await this.releasePrivately(adapter);
      if (!released) return;
      adapter = released;
    }
    if (!this.options.mergeEnabled) return;
    let bytes: Uint8Array;
    try {
      bytes = encodeAdapter(adapter, this.manifest.codec);
    } catch (error) {
      // The peer keeps training and reporting; it just has nothing it can share this round.
      this.markUnhealthy(`could not publish the adapter: ${(error as Error).message}`);
      return;
    }
    this.markHealthy();
    this.status.publishedVersion++;
    const buffer = ownBuffer(bytes);
    this.host.post(
      {
        type: 'publish',
        bytes: buffer,
        version: this.status.publishedVersion,
        step: this.status.step,
        samplesSeen: this.status.samplesSeen,
        // The training loss is measured on the volunteer's records, without noise: a DP run does not announce it.
        localLoss: this.privacy ? null : this.status.trainLoss,
        codec: this.manifest.codec,
        schemaHash: this.schema,
      },
      [buffer],
    );
  }

  /**
   * A round's release under differential privacy (core/privacy/peer-privacy.ts): anchor + clipped update + noise,
   * which the peer keeps as its own adapter. Every round is released (and paid for) even in a local-only run, so
   * what the peer holds after a round boundary is public either way. When the peer will send the bytes, the ledger
   * is checkpointed first; returns null when nothing may be sent.
   */
  private async releasePrivately(current: Adapter): Promise<Adapter | null> {
    const privacy = this.privacy!;
    if (!privacy.canPublish()) {
      if (!this.budgetSpentSaid) {
        this.budgetSpentSaid = true;
        this.host.post({ type: 'notice', level: 'info', message: `your files have spent their privacy budget (ε = ${privacy.status().epsilonSpent.toFixed(2)} of ${privacy.config.targetEpsilon}): this tab keeps training and merging, but no longer shares its updates` });
      }
      return null;
    }
    const released = privacy.release(current, this.anchor!).published;
    // A frozen A never trains, so its part of the update is zero and its noise carries nothing: putting the run's A
    // back is post-processing with public values, and receivers refuse any other A.
    const published = this.frozen ? this.frozen.withRunA(released) : released;
    this.model!.setAdapter(published);
    if (!this.options.mergeEnabled) return published;
    let saved = false;
    try {
      saved = await this.checkpoint();
    } catch (error) {
      this.fail(error);
    }
    if (!saved) {
      this.markUnhealthy('update not shared: the privacy ledger could not be saved first, so a reload could under-count what was spent');
      return null;
    }
    return published;
  }

  private async merge(): Promise<MergeRecord> {
    const started = this.now();
    const self = await this.model!.getAdapter();
    const inputs = this.table.mergeInputs(
      { peerId: 'self', adapter: self, samples: this.status.samplesSeen, loss: this.status.trainLoss ?? undefined },
      started,
    );
    try {
      this.status.consensusDistance = meanAdapterDistance(self, inputs.slice(1).map((i) => i.adapter));
    } catch {
      // A neighbour of another shape cannot be in the table (schema hashes agree), so this is only a safeguard.
      this.status.consensusDistance = null;
    }
    const screened = this.guard.screen(self, inputs);
    for (const event of screened.events) this.countGuardEvent(event);
    let outcome: MergeRecord['outcome'] = 'merged';
    if (screened.inputs.length > 1) {
      let stepped: OuterStepResult | undefined;
      let problem: string | null;
      try {
        const merged = mergeWith(this.manifest.strategy.name, screened.inputs, this.manifest.strategy.params, { seed: deriveSeed(this.settings.seed, `merge/${this.status.step}`) });
        stepped = this.outerStep(merged, screened.inputs, started);
        // The guard judges what would replace the peer's adapter: the result after the outer step.
        problem = this.guard.checkResult(self, stepped.adapter);
      } catch (error) {
        problem = `the ${this.manifest.strategy.name} merge failed: ${(error as Error).message}`;
      }
      if (problem === null && stepped) {
        this.model!.setAdapter(stepped.adapter);
        this.momentum = stepped.momentum;
        this.status.merges++;
      } else {
        // The peer keeps its own adapter: nothing a neighbour sent may replace it with unbounded values.
        outcome = 'kept-own';
        this.status.guard.mergesRefused++;
        this.host.post({ type: 'notice', level: 'warning', message: `merge result refused, kept this peer's own adapter: ${problem}` });
      }
    } else outcome = 'no-usable-input';
    const record: MergeRecord = {
      step: this.status.step,
      atMs: this.now(),
      strategy: this.manifest.strategy.name,
      inputs: screened.inputs.map((i) => ({ peerId: i.meta.peerId, weight: i.weight, ageMs: i.meta.ageMs })),
      ms: this.now() - started,
      outcome,
    };
    this.status.lastMerge = record;
    this.pushBounded(this.mergeHistory, record);
    return record;
  }

  /**
   * The run's outer optimiser on this round's aggregate (core/outer): Δ = anchor − merged, a step from the anchor.
   * With `none` the merged adapter is returned as it is. In a frozen-A run the aggregate is first put back onto
   * the run's A (a product strategy re-factorises it), so Δ has no A part and the step cannot move A.
   *
   * Only called with at least one usable neighbour: a peer alone at a boundary (none in its table, or all refused
   * by the guard) keeps its own adapter and its momentum as they are. Its own Δ alone is the progress of its own
   * optimiser, which a second step along it would only repeat; and momentum made of the swarm's past directions
   * must not keep pushing a peer that has no fresh evidence from the swarm.
   */
  private outerStep(merged: Adapter, inputs: MergeInput[], nowMs: number): OuterStepResult {
    const aggregate = this.frozen ? this.frozen.project(merged) : merged;
    const exponent = typeof this.outerParams.stalenessExponent === 'number' ? this.outerParams.stalenessExponent : 0;
    const freshness = roundFreshness(inputs.map((i) => ({ weight: i.weight, ageMs: i.meta.ageMs })), nowMs - this.roundStartedAtMs, exponent);
    return this.outer.step({ anchor: this.anchor ?? aggregate, merged: aggregate, momentum: this.momentum, freshness }, this.outerParams);
  }

  private countGuardEvent(event: GuardEvent): void {
    const byPeer = (this.status.guard.byPeer[event.peerId] ??= { clipped: 0, refused: 0 });
    if (event.kind === 'clipped') {
      this.status.guard.clipped++;
      byPeer.clipped++;
    } else {
      this.status.guard.refused++;
      byPeer.refused++;
      this.status.adaptersRefused['out-of-bounds'] = (this.status.adaptersRefused['out-of-bounds'] ?? 0) + 1;
      this.host.post({ type: 'adapter-verdict', peerId: event.peerId, version: -1, ok: false, reason: 'out-of-bounds', detail: event.detail });
    }
  }

  private refuse(peerId: string, version: number, reason: RejectReason, detail: string): void {
    this.status.adaptersRefused[reason] = (this.status.adaptersRefused[reason] ?? 0) + 1;
    this.host.post({ type: 'adapter-verdict', peerId, version, ok: false, reason, detail });
    this.postStatus();
  }

  private async receiveAdapter(m: Extract<MainToWorker, { type: 'adapter' }>): Promise<void> {
    if (!this.model || !this.options.mergeEnabled) return;
    const identity = { runId: m.runId, baseModelSha256: m.baseModelSha256, schemaHash: adapterSchemaHash(m.adapter) };
    let adapter = m.adapter;
    if (this.frozen && checkCompatibility(this.table.identity, identity).ok) {
      // A hostile peer must not be able to move the factor this run keeps frozen, not even by a rounding.
      const moved = this.frozen.problem(adapter);
      if (moved) return this.refuse(m.peerId, m.version, 'frozen-factor', moved);
      adapter = this.frozen.withRunA(adapter);
    }
    const verdict = this.table.offer(
      adapter,
      { peerId: m.peerId, version: m.version, step: m.step, samplesSeen: m.samplesSeen, localLoss: m.localLoss, receivedAtMs: m.receivedAtMs },
      identity,
    );
    if (!verdict.ok) return this.refuse(m.peerId, m.version, verdict.reason, verdict.detail);
    this.status.adaptersAccepted++;
    this.host.post({ type: 'adapter-verdict', peerId: m.peerId, version: m.version, ok: true });
    if (!this.bootstrapDone && !this.bootstrapOffers.some((o) => o.peerId === m.peerId)) {
      this.bootstrapOffers.push({ adapter, peerId: m.peerId, step: m.step });
    }
    this.status.neighbours = this.table.summary(this.now());
    this.postStatus();
  }

  /**
   * A late joiner waits (in short sleeps, so the loop only moves on a sleep) until BOOTSTRAP_QUORUM neighbours
   * offered an adapter or its wait is over, then starts from the offer that fits its own data best.
   */
  private async waitForBootstrap(): Promise<void> {
    const deadline = this.now() + this.options.bootstrapWaitMs;
    while (!this.bootstrapDone && !this.stopped && this.bootstrapOffers.length < BOOTSTRAP_QUORUM && this.now() < deadline) {
      await this.sleep(Math.min(BOOTSTRAP_POLL_MS, Math.max(1, deadline - this.now())));
    }
    if (!this.bootstrapDone && this.bootstrapOffers.length > 0) await this.exclusive(() => this.adoptBestOffer());
    this.bootstrapDone = true;
    this.bootstrapOffers = [];
    if (this.status.phase === 'bootstrapping') this.status.phase = this.paused ? 'paused' : 'training';
    this.postStatus();
  }

  /**
   * Never the first adapter offered, whole: each offer (and the fresh adapter) is scored by its loss on a batch of
   * this peer's own data, and only a finite, bounded offer that beats starting fresh is adopted. A poisoned offer
   * has a huge or non-finite loss and loses to the others.
   */
  private async adoptBestOffer(): Promise<void> {
    const fresh = await this.model!.getAdapter();
    const batch = [this.batchFor(-1)];
    let best = { loss: (await evaluate(this.model!, batch)).loss, offer: null as (typeof this.bootstrapOffers)[number] | null };
    for (const offer of this.bootstrapOffers) {
      if (storedAdapterProblem(offer.adapter)) continue;
      this.model!.setAdapter(offer.adapter);
      const loss = (await evaluate(this.model!, batch)).loss;
      if (Number.isFinite(loss) && loss < best.loss) best = { loss, offer };
    }
    if (!best.offer) {
      this.model!.setAdapter(fresh);
      await this.startRound();
      this.host.post({ type: 'notice', level: 'info', message: `none of the ${this.bootstrapOffers.length} adapter(s) offered fits this peer's data better than starting fresh` });
      return;
    }
    this.model!.setAdapter(best.offer.adapter);
    await this.startRound();
    this.status.adoptedFrom = { peerId: best.offer.peerId, step: best.offer.step };
    this.host.post({ type: 'notice', level: 'info', message: `starting from the adapter of peer ${best.offer.peerId.slice(-6)} (its step ${best.offer.step}), the best fit of ${this.bootstrapOffers.length} offered` });
    const adopted = await this.evaluateHeldOut();
    this.status.heldOut = adopted;
    this.pushBounded(this.heldOutHistory, adopted);
    await this.saveCheckpointReporting();
    this.postStatus({ newHeldOut: adopted });
  }

  private async finish(): Promise<void> {
    if (this.privacy && this.status.step % this.manifest.localSteps !== 0) {
      // What a DP peer ends with (and reports the held-out loss of) must be public: the unreleased part of its last,
      // partial round is dropped.
      this.model!.setAdapter(this.anchor!);
    }
    const last = this.heldOutHistory.at(-1);
    if (!last || last.step !== this.status.step) {
      const point = await this.evaluateHeldOut();
      this.status.heldOut = point;
      this.pushBounded(this.heldOutHistory, point);
      await this.saveCheckpointReporting();
      this.status.phase = 'done';
      this.postStatus({ newHeldOut: point });
      return;
    }
    this.status.phase = 'done';
    this.postStatus();
  }

  private async recoverFromDeviceLoss(): Promise<void> {
    this.deviceLost = false;
    if (!this.host.switchBackend) return;
    const previous = this.host.backendName();
    const now = await this.host.switchBackend('wasm');
    this.buildModel();
    if (!(await this.restoreLatestCheckpoint())) await this.startRound();
    this.host.post({
      type: 'notice',
      level: 'warning',
      message: `the ${previous} device was lost; continuing on ${now} from the checkpoint at step ${this.status.step}`,
    });
    this.postStatus();
  }

  private async generateBoth(requestId: number, prompt: string, maxNewTokens: number, temperature: number, seed: number): Promise<void> {
    const started = this.now();
    const tokenizer = new ByteTokenizer();
    const ids = Array.from(tokenizer.encode(prompt.length > 0 ? prompt : '\n'));
    const options = { maxNewTokens: Math.min(400, Math.max(1, maxNewTokens)), temperature, topK: 40, seed };
    const current = await this.model!.getAdapter();
    const adapted = await generate(this.model!, ids, options);
    this.model!.setAdapter(zeroB(current));
    let base: number[];
    try {
      base = await generate(this.model!, ids, options);
    } finally {
      this.model!.setAdapter(current);
    }
    const text = (all: number[]) => tokenizer.decode(all.slice(ids.length));
    this.host.post({ type: 'generated', requestId, base: text(base), adapted: text(adapted), ms: this.now() - started });
  }

  private async exportPeftFiles(requestId: number): Promise<void> {
    const files = exportPeft(await this.model!.getAdapter(), { baseModelNameOrPath: this.manifest.baseModel.id });
    const out: Record<string, ArrayBuffer> = {};
    for (const [name, bytes] of Object.entries(files)) out[name] = ownBuffer(bytes as Uint8Array);
    this.host.post({ type: 'peft', requestId, files: out }, Object.values(out));
  }

  snapshot(): EngineStatus {
    return {
      ...this.status,
      privacy: this.privacy ? this.privacy.status() : null,
      neighbours: this.table ? this.table.summary(this.now()) : [],
      data: [...this.status.data],
      adaptersRefused: { ...this.status.adaptersRefused },
    };
  }

  private postStatus(extra: { newLoss?: LossPoint; newHeldOut?: HeldOutPoint; newMerge?: MergeRecord } = {}): void {
    this.host.post({ type: 'status', status: this.snapshot(), ...extra });
  }

  /** For tests: the tfjs memory in use (the loop must not leak tensors). */
  static tensorCount(): number {
    return tf.memory().numTensors;
  }
}
