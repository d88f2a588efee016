// `swarm simulate --engine node`: the swarm's own PeerEngine, N peers in Node on a simulated network with a virtual
// clock, spread over worker threads (one shard each) so every core is used. It writes the same run log and summary
// as the browser engine (cli/simulate/run.ts), so `swarm report` and the comparison tables read both.
//
// Time: every peer's training step costs a modelled `stepMs` of virtual time (per-peer speeds spread by the seed,
// so peers drift apart as real tabs do); payloads take the link's latency plus their size over its bandwidth.
// The coordinator advances all shards window by window (window = link latency), routes what each published to its
// neighbours in the topology, and fires faults on the virtual clock. Same seed and options, same run log, however
// many threads.
import { resolve } from 'node:path';
import { Worker } from 'node:worker_threads';
import { RunLog } from '../../../core/swarm/run-log.ts';
import { telemetryReport } from '../../../core/swarm/telemetry.ts';
import { wireRunId } from '../../../core/swarm/run.ts';
import { createRng, deriveSeed } from '../../../core/util/random.ts';
import { SIM_EVENTS, summarizeRun, type HeldOutDetail, type TabPeerDetail } from '../metrics.ts';
import type { SimulationSettings } from '../options.ts';
import { simulationManifest, simulationMeta, type SimulationResult } from '../run.ts';
import { arrival, buildTopology, topologyLabel } from './links.ts';
import { floodPayload, type Attack } from '../../../core/swarm/byzantine.ts';
import { NODE_SHARD_IO } from './io.ts';
import { Shard, type Delivery, type PeerObservation, type Publication, type ShardInit, type ShardPeerSpec, type ShardWindowResult } from './shard.ts';

/** Virtual epoch of every node-engine run log (2026-01-01T00:00:00Z), so logs carry plausible dates and stay equal. */
export const VIRTUAL_EPOCH_MS = Date.UTC(2026, 0, 1);
const REPORT_EVERY_MS = 2000;
const MAX_DELIVERIES_PER_SECOND = 4;

/** Where a node-engine run finds its base model and corpus, and how it loads them. */
export interface NodeSimulationEnv {
  log(line: string): void;
  modelSha256: string;
  /** Repository root (the model is public/<modelUrl>, the corpus public/data/brown). */
  root: string;
  progressEveryS: number;
}

interface ShardHandle {
  start(): Promise<void>;
  runUntil(endMs: number, inbox: Delivery[]): Promise<ShardWindowResult>;
  kill(slot: number, restartAtMs: number | null): Promise<void>;
  close(): Promise<void>;
}

function inProcessShard(init: ShardInit, backendName: () => string): ShardHandle {
  const shard = new Shard(init, { ...NODE_SHARD_IO, backendName });
  return {
    start: () => shard.start(),
    runUntil: (endMs, inbox) => shard.runUntil(endMs, inbox),
    kill: async (slot, restartAtMs) => shard.kill(slot, restartAtMs),
    close: async () => shard.close(),
  };
}

function workerShard(init: ShardInit): ShardHandle {
  const worker = new Worker(new URL('./shard-worker.ts', import.meta.url), { workerData: init, execArgv: ['--import', 'tsx'] });
  let next = 0;
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  worker.on('message', (m: { id: number; ok: boolean; value?: unknown; error?: string }) => {
    const p = pending.get(m.id);
    pending.delete(m.id);
    if (m.ok) p?.resolve(m.value);
    else p?.reject(new Error(m.error));
  });
  worker.on('error', (error) => pending.forEach((p) => p.reject(error)));
  const call = <T>(method: string, args: unknown[]): Promise<T> =>
    new Promise<T>((resolveCall, rejectCall) => {
      const id = next++;
      pending.set(id, { resolve: resolveCall as (v: unknown) => void, reject: rejectCall });
      worker.postMessage({ id, method, args });
    });
  return {
    start: () => call('start', []),
    runUntil: (endMs, inbox) => call('runUntil', [endMs, inbox]),
    kill: (slot, restartAtMs) => call('kill', [slot, restartAtMs]),
    close: async () => {
      await worker.terminate();
    },
  };
}

/** Per-peer step times: the modelled step time spread ±spread/2 by the seed (a mixed fleet of machines). */
export function stepTimes(s: SimulationSettings, peers: number): number[] {
  const rng = createRng(deriveSeed(s.seed, 'node-sim/speeds'));
  return Array.from({ length: peers }, () => Math.round(s.node.stepMs * (1 + s.node.speedSpread * (rng() - 0.5))));
}

export async function runNodeSimulation(s: SimulationSettings, env: NodeSimulationEnv, backendName: () => string = () => 'wasm'): Promise<SimulationResult> {
  const manifest = simulationManifest(s, env.modelSha256);
  const runId = wireRunId(manifest);
  const peers = s.centralised ? 1 : s.tabs;
  const byzantineSlots = s.byzantine && !s.centralised ? Array.from({ length: s.byzantine.tabs }, (_, i) => peers - 1 - i) : [];
  const attack: Attack | null = s.byzantine ? { mode: s.byzantine.mode, scale: s.byzantine.scale, seed: s.seed } : null;
  const adjacency = s.merge ? buildTopology(s.node.topology, peers, s.seed) : Array.from({ length: peers }, () => []);
  const times = stepTimes(s, peers);
  const steps = s.centralised ? s.steps * s.tabs : s.steps;
  // A joiner attack needs a newcomer: the highest honest slot joins after the others trained 2H steps.
  const lateSlot = s.byzantine?.mode === 'joiner' ? peers - 1 - byzantineSlots.length : -1;
  const lateJoinMs = 2 * s.localSteps * s.node.stepMs;
  const specs: ShardPeerSpec[] = Array.from({ length: peers }, (_, slot) => ({
    slot,
    stepMs: times[slot],
    joinAtMs: slot === lateSlot ? lateJoinMs : 0,
    // The newcomer waits for offers to choose from, as a tab without a checkpoint does.
    bootstrapWaitMs: slot === lateSlot ? 4 * s.localSteps * s.node.stepMs : 0,
    byzantine: byzantineSlots.includes(slot) ? attack : null,
  }));
  const runTag = `${s.seed}x${peers}`;
  const shardsCount = Math.max(1, Math.min(s.node.threads, peers));
  const baseInit: Omit<ShardInit, 'peers'> = {
    manifest,
    wireRunId: runId,
    modelDir: resolve(env.root, 'public', `.${s.modelUrl}`),
    corpusDir: resolve(env.root, 'public', 'data', 'brown'),
    options: {
      maxSteps: steps,
      mergeEnabled: s.merge,
      bootstrapWaitMs: 0,
      evaluateEvery: s.centralised ? s.evaluateEvery * s.tabs : s.evaluateEvery,
      checkpointEvery: s.localSteps,
      duty: 1,
      slowWhenHidden: false,
      halfLifeMs: 60_000,
      dropAfterMs: 300_000,
      evalBatches: s.evalBatches,
      evalSplit: s.evalSplit,
    },
    runTag,
    maxDeliveriesPerSecond: MAX_DELIVERIES_PER_SECOND,
  };
  const shardOf = (slot: number) => slot % shardsCount;
  const shards: ShardHandle[] = Array.from({ length: shardsCount }, (_, k) => {
    const init: ShardInit = {
      ...baseInit,
      // A late joiner waits for offers to choose from, as a tab does.
      peers: specs.filter((p) => shardOf(p.slot) === k),
    };
    return shardsCount === 1 ? inProcessShard(init, backendName) : workerShard(init);
  });

  const at = (ms: number) => VIRTUAL_EPOCH_MS + ms;
  const link = { latencyMs: s.node.latencyMs + (s.network?.latencyMs ?? 0), bandwidthBps: s.node.bandwidthMbps * 1e6, drop: s.network?.drop ?? 0 };
  // Nothing sent in a window may arrive inside it (it is routed when the window ends), so a window is at least one
  // link latency, and a payload that would arrive earlier than the window's end arrives at its end.
  const windowMs = Math.max(1, link.latencyMs, s.node.windowMs);
  const log = new RunLog({
    source: 'simulation',
    wireRunId: runId,
    manifest,
    createdAtMs: VIRTUAL_EPOCH_MS,
    meta: {
      ...simulationMeta(s, peers, byzantineSlots),
      'sim.network': `${topologyLabel(s.node.topology)}; latency ${s.node.latencyMs} ms; ${s.node.bandwidthMbps > 0 ? `${s.node.bandwidthMbps} Mbit/s` : 'unlimited bandwidth'}; drop ${s.network?.drop ?? 0}; synchronised every ${windowMs} ms`,
      'sim.stepMs': s.node.stepMs,
    },
  });
  const latest = new Map<number, PeerObservation>();
  const knownPeer = new Map<number, string>();
  const adoptedBy = new Map<number, string>();
  const bytesSent = new Map<number, number>();
  // Payloads put on links and their bytes (honest and not): the per-link cost of a publication, sparse or full.
  const linkPayloads = { count: 0, bytes: 0 };
  const inflight: Delivery[] = [];
  let floodIndex = 0;
  const lastPublication = new Map<number, Publication>();
  const route = (p: Publication) => {
    lastPublication.set(p.slot, p);
    for (const to of adjacency[p.slot]) {
      const when = arrival(link, s.seed, p.slot, to, p.version, p.atMs, p.bytes.length);
      bytesSent.set(p.slot, (bytesSent.get(p.slot) ?? 0) + p.bytes.length);
      linkPayloads.count++;
      linkPayloads.bytes += p.bytes.length;
      if (when !== null) inflight.push({ atMs: Math.max(when, nowMs), from: p.slot, to, version: p.version, step: p.step, samplesSeen: p.samplesSeen, localLoss: p.localLoss, bytes: p.bytes });
      for (let k = 0; k < p.flood; k++) {
        const junk = floodPayload(s.seed, floodIndex++, p.bytes.length);
        inflight.push({ atMs: Math.max(p.atMs + link.latencyMs, nowMs), from: p.slot, to, version: p.version + k + 1, step: p.step, samplesSeen: p.samplesSeen, localLoss: p.localLoss, bytes: junk });
      }
    }
  };

  const faults = (s.merge ? s.kills : []).map((k) => ({ ...k, done: false }));
  const killed = new Map<number, number | null>();
  let nowMs = 0;
  let lastReportMs = -REPORT_EVERY_MS;
  let lastProgress = Date.now();
  const wallStart = Date.now();
  let stopReason = '';
  let peakRssBytes = process.memoryUsage().rss;
  const maxMs = s.minutes * 60_000;
  try {
    await Promise.all(shards.map((sh) => sh.start()));
    // The thread count stays out of the log: the same seed gives the same log however many threads ran it.
    log.addEvent(SIM_EVENTS.start, `${peers} node-engine peers; ${topologyLabel(s.node.topology)}`, at(0));
    env.log(`[${s.label}] ${peers} peers on ${shardsCount} thread(s)`);
    for (;;) {
      const endMs = nowMs + windowMs;
      const inboxes = shards.map(() => [] as Delivery[]);
      for (let i = inflight.length - 1; i >= 0; i--) {
        if (inflight[i].atMs < endMs) inboxes[shardOf(inflight[i].to)].push(...inflight.splice(i, 1));
      }
      for (const inbox of inboxes) inbox.sort((a, b) => a.atMs - b.atMs || a.to - b.to || a.from - b.from || a.version - b.version);
      const results = await Promise.all(shards.map((sh, k) => sh.runUntil(endMs, inboxes[k])));
      nowMs = endMs;
      // Worker threads live in this process, so its RSS covers every shard.
      peakRssBytes = Math.max(peakRssBytes, process.memoryUsage().rss);
      const publications = results.flatMap((r) => r.publications).sort((a, b) => a.atMs - b.atMs || a.slot - b.slot);
      for (const p of publications) route(p);
      for (const o of results.flatMap((r) => r.observations).sort((a, b) => a.slot - b.slot)) observe(o);
      if (nowMs - lastReportMs >= REPORT_EVERY_MS) {
        lastReportMs = nowMs;
        for (const o of [...latest.values()].sort((a, b) => a.slot - b.slot)) report(o);
      }
      for (const f of faults) {
        if (f.done) continue;
        const meanStep = mean([...latest.values()].filter((o) => !killed.has(o.slot)).map((o) => o.status?.step ?? 0));
        if (f.at.kind === 'seconds' ? nowMs >= f.at.value * 1000 : meanStep >= f.at.value) {
          f.done = true;
          const alive = specs.map((p) => p.slot).filter((slot) => !killed.has(slot)).sort((a, b) => b - a);
          const victims = alive.slice(0, Math.max(1, Math.round(f.share * peers)));
          for (const slot of victims) {
            const restartAtMs = f.restartAfterS === null ? null : nowMs + f.restartAfterS * 1000;
            const peerId = latest.get(slot)?.peerId ?? null;
            log.addEvent(SIM_EVENTS.kill, `peer ${slot}${restartAtMs !== null ? `, back in ${f.restartAfterS} s` : ''}`, at(nowMs), peerId || null);
            if (peerId) log.markLeft(peerId, 'killed by the simulation', at(nowMs));
            await shards[shardOf(slot)].kill(slot, restartAtMs);
            killed.set(slot, restartAtMs);
          }
          env.log(`[${s.label}] ${(nowMs / 1000).toFixed(0)} s (virtual): killed peers ${victims.join(', ')}`);
        }
      }
      for (const [slot, back] of [...killed]) if (back !== null && nowMs >= back) killed.delete(slot);
      const live = [...latest.values()].filter((o) => !killed.has(o.slot));
      if (Date.now() - lastProgress >= env.progressEveryS * 1000) {
        lastProgress = Date.now();
        const honest = live.filter((o) => !byzantineSlots.includes(o.slot));
        const held = mean(honest.map((o) => o.status?.heldOut?.allGenres).filter((v): v is number => typeof v === 'number'));
        env.log(
          `[${s.label}] ${((Date.now() - wallStart) / 1000).toFixed(0).padStart(4)} s wall, ${(nowMs / 1000).toFixed(0)} s virtual | mean step ${mean(live.map((o) => o.status?.step ?? 0)).toFixed(1)}/${steps}` +
            ` | held-out (all genres) ${Number.isNaN(held) ? '–' : held.toFixed(3)} | merges ${live.reduce((n, o) => n + (o.status?.merges ?? 0), 0)}`,
        );
      }
      const pendingFaults = faults.some((f) => !f.done) || [...killed.values()].some((v) => v !== null);
      if (latest.size === peers && !pendingFaults && live.length > 0 && live.every((o) => o.finished)) {
        stopReason = 'every peer finished its steps';
        break;
      }
      if (nowMs >= maxMs) {
        stopReason = `virtual time limit of ${s.minutes} min`;
        break;
      }
    }
    for (const o of [...latest.values()].sort((a, b) => a.slot - b.slot)) report(o);
    log.addEvent(SIM_EVENTS.end, stopReason, at(nowMs));
  } finally {
    await Promise.all(shards.map((sh) => sh.close()));
  }
  env.log(
    `[${s.label}] stopped after ${((Date.now() - wallStart) / 1000).toFixed(0)} s wall (${(nowMs / 1000).toFixed(0)} s virtual), ` +
      `peak memory ${(peakRssBytes / 2 ** 20).toFixed(0)} MiB RSS: ${stopReason}`,
  );
  const streams = [...latest.values()].reduce((n, o) => ({ keyframes: n.keyframes + o.keyframes, deltas: n.deltas + o.deltas }), { keyframes: 0, deltas: 0 });
  env.log(
    `[${s.label}] ${linkPayloads.count} payloads on links, ${(linkPayloads.bytes / Math.max(1, linkPayloads.count)).toFixed(0)} bytes each on average` +
      (s.sparse ? ` (sparse ${s.sparse.keep}/${s.sparse.chunk}:${s.sparse.keyframeEvery}: ${streams.keyframes} keyframes, ${streams.deltas} deltas)` : ''),
  );
  const runLog = log.toData();
  return {
    settings: s,
    manifest,
    runLog,
    summary: summarizeRun(runLog, s.targetLoss),
    stopReason,
    tabs: specs.map((p) => ({ slot: p.slot, byzantine: p.byzantine !== null, incarnations: latest.get(p.slot)?.incarnation ?? 0, peerIds: knownPeer.has(p.slot) ? [knownPeer.get(p.slot)!] : [], probe: null, pageErrors: [] })),
  };

  function observe(o: PeerObservation): void {
    for (const e of o.errors) env.log(`[${s.label}] peer ${o.slot}: ${e}`);
    if (!o.peerId) return;
    latest.set(o.slot, o);
    if (knownPeer.get(o.slot) !== o.peerId) {
      knownPeer.set(o.slot, o.peerId);
      if (o.slot === lateSlot) {
        // Joiner attack: every attacker next to the newcomer answers first, with its poisoned adapter.
        for (const from of adjacency[o.slot].filter((n) => byzantineSlots.includes(n))) {
          const p = lastPublication.get(from);
          if (p) inflight.push({ atMs: nowMs + link.latencyMs, from, to: o.slot, version: p.version, step: p.step, samplesSeen: p.samplesSeen, localLoss: p.localLoss, bytes: p.bootstrapPoison ?? p.bytes });
        }
      }
      const genres = (o.status?.data ?? []).filter((d) => d.kind === 'corpus').map((d) => d.name);
      const detail: TabPeerDetail = { slot: o.slot, incarnation: o.incarnation, byzantine: byzantineSlots.includes(o.slot), genres };
      log.addEvent(SIM_EVENTS.tabPeer, JSON.stringify(detail), at(nowMs), o.peerId);
      if (o.incarnation > 1) log.addEvent(SIM_EVENTS.restart, `peer ${o.slot} back${o.status?.resumedFromStep != null ? ` from its checkpoint at step ${o.status.resumedFromStep}` : ''}`, at(nowMs), o.peerId);
    }
    const adopted = o.status?.adoptedFrom;
    if (adopted && adoptedBy.get(o.slot) !== adopted.peerId) {
      adoptedBy.set(o.slot, adopted.peerId);
      const fromSlot = [...knownPeer].find(([, id]) => id === adopted.peerId)?.[0];
      log.addEvent('adopted', JSON.stringify({ slot: o.slot, fromSlot: fromSlot ?? null, fromByzantine: fromSlot !== undefined && byzantineSlots.includes(fromSlot) }), at(nowMs), o.peerId);
    }
    for (const h of o.heldOut) {
      const detail: HeldOutDetail = { slot: o.slot, step: h.step, own: h.own, allGenres: h.allGenres, byGenre: h.byGenre, timeMs: at(h.atMs) };
      log.addEvent(SIM_EVENTS.heldOut, JSON.stringify(detail), at(nowMs), o.peerId);
    }
  }

  function report(o: PeerObservation): void {
    const st = o.status;
    if (!st || killed.has(o.slot)) return;
    const rejections = { ...o.transportRejections };
    for (const [reason, n] of Object.entries(st.adaptersRefused)) rejections[reason as keyof typeof rejections] = (rejections[reason as keyof typeof rejections] ?? 0) + (n ?? 0);
    log.addReport(
      telemetryReport({
        peerId: o.peerId, runId, timeMs: at(nowMs), step: st.step, trainLoss: st.trainLoss, heldOutLoss: st.heldOut?.own ?? null, merges: st.merges,
        bytesSent: bytesSent.get(o.slot) ?? 0, bytesReceived: o.bytesReceived, versionsAnnounced: st.publishedVersion, versionsFetched: st.adaptersAccepted,
        neighbours: adjacency[o.slot].map((n) => knownPeer.get(n)).filter((id): id is string => !!id), rejections, tokensPerSecond: null,
        backend: st.backend || 'wasm', consensusDistance: st.consensusDistance ?? null, health: st.health,
        privacy: st.privacy,
      }),
      at(nowMs),
    );
  }
}

function mean(values: number[]): number {
  return values.length === 0 ? Number.NaN : values.reduce((a, b) => a + b, 0) / values.length;
}
