// The synchronous baselines of `swarm simulate`, run in lockstep in one process with the peers' own model and
// trainer recipe (core/swarm/peer-model.ts) on exactly the batches the swarm's peers draw (core/data slotBatch):
//   sync-avg  every peer trains its own adapter with its own AdamW moments; every H steps all N adapters are merged
//             with the run's strategy, each peer with itself first (full mesh, no staleness, no guard): the ideal
//             of the swarm's own protocol;
//   sync-dp   one model: each step averages the N peers' gradients (their step-s batches) into one AdamW update,
//             so every peer holds the same adapter at every step.
// One model serves every peer: sync-avg swaps each peer's adapter in before its step and reads it back after; each
// peer has its own Trainer (its own moments and step count) over the same LoRA variables.
//
// It writes the node engine's run log (the same events and telemetry), so metrics.ts summarises it like any run.
// Virtual time: a lockstep step lasts as long as the slowest peer's step (the node engine's per-peer speeds); a
// synchronisation adds the link latency plus sending the payload to the N − 1 others over the link's bandwidth.
// Traffic is that of a full mesh: each synchronisation every peer sends its payload (the run's codec) to each of the
// N − 1 others and receives theirs; for sync-dp the payload is a gradient of the adapter's shape, every step.
import { resolve } from 'node:path';
import type { Adapter } from '../../../core/model/adapter.ts';
import { PreparedCorpus, slotSources } from '../../../core/data/corpus.ts';
import { slotBatch, type MixtureSource } from '../../../core/data/batches.ts';
import { mergeWith } from '../../../core/merge/registry.ts';
import type { MergeInput, MergeParams } from '../../../core/merge/types.ts';
import { RunLog } from '../../../core/swarm/run-log.ts';
import { runTrainingSettings, wireRunId } from '../../../core/swarm/run.ts';
import { evaluatePeer, evaluationSets, lossesOf, peerModel, peerTrainer } from '../../../core/swarm/peer-model.ts';
import { telemetryReport } from '../../../core/swarm/telemetry.ts';
import type { LoadedBase } from '../../../core/swarm/peer-engine.ts';
import type { Trainer } from '../../../core/train/trainer.ts';
import { deriveSeed } from '../../../core/util/random.ts';
import { expectedPayloadBytes } from '../../../core/wire/codec.ts';
import { SIM_EVENTS, summarizeRun, type HeldOutDetail, type TabPeerDetail } from '../metrics.ts';
import type { SimulationSettings } from '../options.ts';
import { simulationManifest, simulationMeta, type SimulationResult } from '../run.ts';
import { NODE_SHARD_IO } from './io.ts';
import { stepTimes, VIRTUAL_EPOCH_MS, type NodeSimulationEnv } from './run.ts';

export class LockstepSettingsError extends Error {
  static override readonly name = 'LockstepSettingsError';
  override readonly name = LockstepSettingsError.name;
}

export interface LockstepIo {
  loadBase(dir: string): Promise<LoadedBase>;
  readCorpus(dir: string, path: string): Promise<string>;
}

interface LockstepPeer {
  slot: number;
  peerId: string;
  mixture: Record<string, number>;
  sources: MixtureSource[];
  adapter: Adapter;
  trainer: Trainer | null;
  trainLoss: number | null;
  bytes: number;
  merges: number;
}

/** Every virtual ms of one lockstep synchronisation: latency plus the payload sent to N − 1 others. */
export function syncMs(s: SimulationSettings, peers: number, payloadBytes: number): number {
  const bandwidthBps = s.node.bandwidthMbps * 1e6;
  return s.node.latencyMs + (bandwidthBps > 0 ? (8 * payloadBytes * (peers - 1) * 1000) / bandwidthBps : 0);
}

export async function runLockstep(s: SimulationSettings, env: NodeSimulationEnv, io: LockstepIo = NODE_SHARD_IO): Promise<SimulationResult> {
  const arm = s.lockstep;
  if (arm === null) throw new LockstepSettingsError(`run '${s.label}' is not a lockstep baseline`);
  if (s.byzantine || s.kills.length > 0 || s.network) throw new LockstepSettingsError(`${arm} has no faults or attackers (it is the ideal)`);
  const manifest = simulationManifest(s, env.modelSha256);
  const settings = runTrainingSettings(manifest);
  const runId = wireRunId(manifest);
  const base = await io.loadBase(resolve(env.root, 'public', `.${s.modelUrl}`));
  const corpusDir = resolve(env.root, 'public', 'data', 'brown');
  const corpus = await PreparedCorpus.open((path) => io.readCorpus(corpusDir, path));
  const model = peerModel(base, manifest, settings);
  const n = s.tabs;
  const runGenres = settings.partition.genres;
  const peers: LockstepPeer[] = [];
  const initial = await model.getAdapter();
  for (let slot = 0; slot < n; slot++) {
    const { mixture, sources } = await slotSources(corpus, settings.partition, slot, settings.seed);
    peers.push({
      slot, peerId: `${arm.replace('-', '')}${settings.seed}x${n}s${slot}`, mixture, sources, adapter: initial,
      trainer: arm === 'sync-avg' ? peerTrainer(model, settings) : null, trainLoss: null, bytes: 0, merges: 0,
    });
  }
  // sync-dp: one update from the mean of the N peers' gradients (accumulation over their step-s batches).
  const shared = arm === 'sync-dp' ? peerTrainer(model, settings, n) : null;
  const evalGenres = new Set([...runGenres, ...peers.flatMap((p) => Object.keys(p.mixture))]);
  const sets = await evaluationSets(corpus, evalGenres, settings.seqLen, s.evalBatches, s.evalSplit);
  const payloadBytes = expectedPayloadBytes(initial, s.codec);
  const slowestStepMs = Math.max(...stepTimes(s, n));
  const roundMs = syncMs(s, n, payloadBytes);

  const log = new RunLog({
    source: 'simulation',
    wireRunId: runId,
    manifest,
    createdAtMs: VIRTUAL_EPOCH_MS,
    meta: {
      ...simulationMeta(s, n, []),
      'sim.network': `${arm}: full mesh in lockstep; latency ${s.node.latencyMs} ms; ${s.node.bandwidthMbps > 0 ? `${s.node.bandwidthMbps} Mbit/s` : 'unlimited bandwidth'}`,
      'sim.stepMs': s.node.stepMs,
    },
  });
  const at = (ms: number) => VIRTUAL_EPOCH_MS + ms;
  let nowMs = 0;
  const wallStart = Date.now();
  let lastProgress = Date.now();
  log.addEvent(SIM_EVENTS.start, `${n} ${arm} peers in lockstep`, at(0));
  for (const p of peers) {
    const detail: TabPeerDetail = { slot: p.slot, incarnation: 1, byzantine: false, genres: Object.keys(p.mixture).filter((g) => p.mixture[g] > 0) };
    log.addEvent(SIM_EVENTS.tabPeer, JSON.stringify(detail), at(0), p.peerId);
  }
  const evaluateAll = async (step: number) => {
    // Peers holding the same adapter (all of them in sync-dp, and in sync-avg right after a merge) evaluate once.
    let last: { adapter: Adapter; byGenre: Record<string, number> } | null = null;
    const points: HeldOutDetail[] = [];
    for (const p of peers) {
      let byGenre: Record<string, number>;
      if (last && last.adapter === p.adapter) byGenre = last.byGenre;
      else {
        model.setAdapter(p.adapter);
        byGenre = (await evaluatePeer(model, sets, runGenres, p.mixture, step, nowMs)).byGenre;
        last = { adapter: p.adapter, byGenre };
      }
      const { own, allGenres } = lossesOf(byGenre, runGenres, p.mixture);
      points.push({ slot: p.slot, step, own, allGenres, byGenre, timeMs: at(nowMs) });
    }
    for (const [k, h] of points.entries()) {
      log.addEvent(SIM_EVENTS.heldOut, JSON.stringify(h), at(nowMs), peers[k].peerId);
      report(peers[k], step, h.own);
    }
  };
  const report = (p: LockstepPeer, step: number, heldOut: number) =>
    log.addReport(
      telemetryReport({
        peerId: p.peerId, runId, timeMs: at(nowMs), step, trainLoss: p.trainLoss, heldOutLoss: heldOut, merges: p.merges,
        bytesSent: p.bytes / 2, bytesReceived: p.bytes / 2, versionsAnnounced: p.merges, versionsFetched: p.merges * (n - 1),
        neighbours: peers.filter((o) => o !== p).map((o) => o.peerId), rejections: {}, tokensPerSecond: null, backend: 'wasm', consensusDistance: null, health: { state: 'ok', reason: null },
      }),
      at(nowMs),
    );

  await evaluateAll(0);
  for (let step = 0; step < s.steps; step++) {
    if (shared) {
      let k = 0;
      const result = await shared.trainStep(() => slotBatch(peers[k].sources, settings.seed, peers[k++].slot, step, settings.batchSize, settings.seqLen));
      const adapter = await model.getAdapter();
      for (const p of peers) {
        p.adapter = adapter;
        p.trainLoss = result.loss;
        p.merges++;
        p.bytes += 2 * (n - 1) * payloadBytes;
      }
      nowMs += slowestStepMs + roundMs;
    } else {
      for (const p of peers) {
        model.setAdapter(p.adapter);
        p.trainLoss = (await p.trainer!.trainStep(() => slotBatch(p.sources, settings.seed, p.slot, step, settings.batchSize, settings.seqLen))).loss;
        p.adapter = await model.getAdapter();
      }
      nowMs += slowestStepMs;
      if ((step + 1) % s.localSteps === 0 && n > 1) {
        const merged = mergeRound(peers.map((p) => p.adapter), peers.map((p) => p.peerId), s.strategy, s.params, {
          samples: (step + 1) * settings.batchSize,
          seed: deriveSeed(settings.seed, `merge/${step + 1}`),
        });
        // Strategies that treat every input alike give every peer the same result: keep one object so it is evaluated once.
        const same = merged.every((m) => sameAdapter(m, merged[0]));
        peers.forEach((p, k) => {
          p.adapter = same ? merged[0] : merged[k];
          p.merges++;
          p.bytes += 2 * (n - 1) * payloadBytes;
        });
        nowMs += roundMs;
      }
    }
    const done = step + 1;
    if (done % s.evaluateEvery === 0 || done === s.steps) await evaluateAll(done);
    if (Date.now() - lastProgress >= env.progressEveryS * 1000) {
      lastProgress = Date.now();
      env.log(`[${s.label}] ${((Date.now() - wallStart) / 1000).toFixed(0).padStart(4)} s wall | step ${done}/${s.steps}`);
    }
  }
  log.addEvent(SIM_EVENTS.end, 'every peer finished its steps', at(nowMs));
  env.log(`[${s.label}] stopped after ${((Date.now() - wallStart) / 1000).toFixed(0)} s wall (${(nowMs / 1000).toFixed(0)} s virtual)`);
  shared?.dispose();
  for (const p of peers) p.trainer?.dispose();
  model.dispose();
  const runLog = log.toData();
  return {
    settings: s,
    manifest,
    runLog,
    summary: summarizeRun(runLog, s.targetLoss),
    stopReason: 'every peer finished its steps',
    tabs: peers.map((p) => ({ slot: p.slot, byzantine: false, incarnations: 1, peerIds: [p.peerId], probe: null, pageErrors: [] })),
  };
}

/**
 * One synchronous merge over a full mesh: every peer merges all N adapters with itself first (index 0, as the peer
 * engine does), equal weights, age 0.
 */
export function mergeRound(adapters: Adapter[], peerIds: string[], strategy: string, params: MergeParams, at: { samples: number; seed: number }): Adapter[] {
  return adapters.map((_, self) => {
    const order = [self, ...adapters.keys()].filter((k, i) => i === 0 || k !== self);
    const inputs: MergeInput[] = order.map((k) => ({ adapter: adapters[k], weight: 1, meta: { peerId: peerIds[k], samples: at.samples, ageMs: 0 } }));
    return mergeWith(strategy, inputs, params, { seed: at.seed });
  });
}

export function sameAdapter(a: Adapter, b: Adapter): boolean {
  if (a === b) return true;
  for (const [name, m] of a.modules) {
    const o = b.modules.get(name);
    if (!o || o.a.length !== m.a.length || o.b.length !== m.b.length) return false;
    for (let i = 0; i < m.a.length; i++) if (m.a[i] !== o.a[i]) return false;
    for (let i = 0; i < m.b.length; i++) if (m.b[i] !== o.b[i]) return false;
  }
  return true;
}
