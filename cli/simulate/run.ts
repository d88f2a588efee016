// One simulated run: opens the tabs, watches them through window.swarmPeer, fires the scheduled faults, records
// everything in a run log (the dashboard's format) and summarises it.
import type { BrowserContext } from '@playwright/test';
import { defaultRunManifest, encodeRunLink, wireRunId } from '../../core/swarm/run.ts';
import { RunLog, type RunLogData } from '../../core/swarm/run-log.ts';
import { assignMixture, type PartitionConfig } from '../../core/data/partition.ts';
import { telemetryReport } from '../../core/swarm/telemetry.ts';
import type { RunManifest } from '../../core/wire/run-manifest.ts';
import type { PeerProbe } from '../../app/lib/probe.ts';
import { SIM_EVENTS, summarizeRun, type HeldOutDetail, type RunSummary, type TabPeerDetail } from './metrics.ts';
import { partitionLabel, type FaultTime, type SimulationSettings } from './options.ts';
import type { ManagedRelay } from './relay.ts';
import { SimTab, type BrowserFleet } from './tabs.ts';

export interface SimulationEnv {
  appUrl: string;
  fleet: BrowserFleet;
  relay: ManagedRelay;
  modelSha256: string;
  /** Progress lines and fault notices. */
  log(line: string): void;
  progressEveryS: number;
  pollMs?: number;
}

export interface TabOutcome {
  slot: number;
  byzantine: boolean;
  incarnations: number;
  peerIds: string[];
  probe: PeerProbe | null;
  pageErrors: string[];
}

export interface SimulationResult {
  settings: SimulationSettings;
  manifest: RunManifest;
  runLog: RunLogData;
  summary: RunSummary;
  tabs: TabOutcome[];
  stopReason: string;
}

/** A tab reported an error that ends the run (the model or data did not load, the worker died, …). */
export class SimulationTabError extends Error {
  static override readonly name = 'SimulationTabError';
  override readonly name = SimulationTabError.name;
}

const FATAL_PAGE_ERRORS = new Set(['model-load', 'run-mismatch', 'data', 'worker', 'run-link', 'internal', 'backend-lost']);

function safeLabel(label: string): string {
  return label.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 60) || 'run';
}

/** The run manifest of a simulation: the default run, shrunk to the simulation's schedule and data. */
export function simulationManifest(s: SimulationSettings, modelSha256: string): RunManifest {
  const base = defaultRunManifest(modelSha256, { localSteps: s.localSteps, strategy: { name: s.strategy, params: { ...s.params } }, codec: s.codec });
  const trainingSteps = s.centralised ? s.steps * s.tabs : s.steps;
  const data: RunManifest['data'] =
    s.centralised || s.partition.kind === 'iid'
      ? { kind: 'iid', genres: s.genres, seed: s.seed }
      : s.partition.kind === 'dirichlet'
        ? { kind: 'dirichlet', genres: s.genres, alpha: s.partition.alpha, seed: s.seed }
        : { kind: 'genre', genres: s.genres, seed: s.seed };
  return {
    ...base,
    ...(s.privacy ? { privacy: { ...s.privacy } } : {}),
    runId: `sim-${safeLabel(s.label)}`,
    baseModel: { ...base.baseModel, url: s.modelUrl },
    schedule: {
      ...base.schedule,
      lr: s.lr,
      minLrRatio: s.schedule === 'constant' ? 1 : 0.1,
      warmupSteps: trainingSteps > 0 ? Math.min(10, Math.ceil(trainingSteps / 10)) : 10,
      totalSteps: trainingSteps > 0 ? trainingSteps : 2000,
      batchSize: s.batchSize,
      seqLen: s.seqLen,
      seed: s.seed,
    },
    data,
    lora: { ...base.lora, ...(s.loraMode === 'standard' ? {} : { mode: s.loraMode }) },
    ...(s.outer ? { outer: { name: s.outer.name, params: { ...s.outer.params } } } : {}),
    ...(s.sparse ? { sparse: { ...s.sparse } } : {}),
  };
}

/** The `sim.*` settings every simulation's run log carries (metrics.ts reads them back), for both engines. */
export function simulationMeta(s: SimulationSettings, peers: number, byzantineSlots: number[]): Record<string, string | number> {
  return {
    'sim.label': s.label,
    'sim.engine': s.engine,
    'sim.strategy': s.merge ? s.strategy : 'none',
    'sim.params': JSON.stringify(s.params),
    'sim.baseline': s.lockstep ?? (s.centralised ? 'central' : s.merge ? 'none' : 'local'),
    'sim.evalSplit': s.evalSplit,
    // The centralised learner has no genre of its own: its own-genre loss is read against the peers' mixtures.
    ...(s.centralised && s.partition.kind !== 'iid' ? { 'sim.peerMixtures': JSON.stringify(peerMixtures(s)) } : {}),
    'sim.partition': s.centralised ? 'iid (union)' : partitionLabel(s.partition),
    'sim.tabs': peers,
    'sim.trainingTabs': peers,
    'sim.steps': s.centralised ? s.steps * s.tabs : s.steps,
    'sim.batchSize': s.batchSize,
    'sim.seqLen': s.seqLen,
    'sim.localSteps': s.localSteps,
    'sim.codec': s.codec,
    ...(s.sparse ? { 'sim.sparse': `${s.sparse.keep}/${s.sparse.chunk}:${s.sparse.keyframeEvery}` } : {}),
    'sim.seed': s.seed,
    'sim.byzantineSlots': byzantineSlots.join(','),
    'sim.byzantine': s.byzantine ? `${s.byzantine.mode} x${s.byzantine.scale}` : '',
  };
}

/** The genre mixture of every peer of the run's partition (iid needs the corpus sizes and is not listed). */
export function peerMixtures(s: SimulationSettings): Array<Record<string, number>> {
  const config: PartitionConfig = s.partition.kind === 'dirichlet' ? { kind: 'dirichlet', genres: s.genres, alpha: s.partition.alpha } : { kind: s.partition.kind, genres: s.genres };
  const sizes = Object.fromEntries(s.genres.map((g) => [g, 1]));
  return Array.from({ length: s.tabs }, (_, slot) => assignMixture(config, slot, s.seed, sizes));
}

/** The slots a fault touches: the highest ones (slot 0 is never the first to go). */
function highestSlots(count: number, total: number): number[] {
  return Array.from({ length: Math.min(count, total) }, (_, i) => total - 1 - i);
}

export function tabUrl(s: SimulationSettings, appUrl: string, link: string, slot: number, relay: string, runTag: string): string {
  const p = new URLSearchParams({
    autojoin: '1',
    slot: String(slot),
    peer: `sim-${runTag}-${slot}`,
    steps: String(s.centralised ? s.steps * s.tabs : s.steps),
    eval: String(s.centralised ? s.evaluateEvery * s.tabs : s.evaluateEvery),
    evalBatches: String(s.evalBatches),
    checkpoint: String(s.localSteps),
    telemetry: '2000',
    backend: s.backend,
    bootstrap: '0',
    // Tabs load, evaluate the base model and connect, then wait paused until the simulator presses Resume in
    // all of them at once (a reopened tab drops this and starts at once).
    paused: '1',
  });
  if (s.merge) p.set('relays', relay);
  else {
    p.set('merge', '0');
    p.set('p2p', '0');
  }
  const tabs = s.centralised ? 1 : s.tabs;
  if (s.network && highestSlots(s.network.tabs, tabs).includes(slot)) {
    if (s.network.latencyMs > 0) p.set('latency', String(s.network.latencyMs));
    if (s.network.drop > 0) p.set('drop', String(s.network.drop));
  }
  if (s.byzantine && highestSlots(s.byzantine.tabs, tabs).includes(slot)) {
    p.set('byzantine', s.byzantine.mode);
    p.set('byzScale', String(s.byzantine.scale));
  }
  // The run link goes last: it is long, and the other parameters stay readable in logs.
  return `${appUrl}/?${p.toString()}&run=${link}`;
}

/** How long all tabs may take to load the model and evaluate it before the run is abandoned. */
const LOAD_TIMEOUT_MS = 15 * 60_000;

/**
 * The start barrier: waits until every tab has loaded and paused, then (when merging) until every tab has
 * min(2, tabs − 1) direct neighbours or the warm-up has passed, then presses Resume in every tab.
 */
async function startTogether(
  tabs: SimTab[],
  s: SimulationSettings,
  env: SimulationEnv,
  observe: (tab: SimTab, probe: PeerProbe) => void,
): Promise<{ loadS: number; connectS: number; neighbours: number[] }> {
  const began = Date.now();
  const poll = async () => {
    const probes = await Promise.all(tabs.map((t) => t.probe()));
    tabs.forEach((t, i) => probes[i] && observe(t, probes[i]!));
    return probes;
  };
  for (;;) {
    const probes = await poll();
    if (probes.every((p) => p?.ready && p.phase === 'paused')) break;
    if (Date.now() - began > LOAD_TIMEOUT_MS) throw new SimulationTabError(`the tabs did not all load within ${LOAD_TIMEOUT_MS / 60_000} min`);
    await new Promise((r) => setTimeout(r, 1000));
  }
  const loaded = Date.now();
  const wanted = Math.min(2, tabs.length - 1);
  let neighbours = tabs.map((t) => t.lastProbe?.neighbours.length ?? 0);
  while (s.merge && Date.now() - loaded < s.warmupS * 1000) {
    neighbours = (await poll()).map((p) => p?.neighbours.length ?? 0);
    if (neighbours.every((n) => n >= wanted)) break;
    await new Promise((r) => setTimeout(r, 1000));
  }
  const connected = Date.now();
  await Promise.all(tabs.map((t) => t.page!.getByTestId('resume').click()));
  return { loadS: (loaded - began) / 1000, connectS: (connected - loaded) / 1000, neighbours };
}

interface PendingFault {
  at: FaultTime;
  fire: () => Promise<void>;
  done: boolean;
}

export async function runSimulation(s: SimulationSettings, env: SimulationEnv): Promise<SimulationResult> {
  const manifest = simulationManifest(s, env.modelSha256);
  const runId = wireRunId(manifest);
  const tabsCount = s.centralised ? 1 : s.tabs;
  const byzantineSlots = s.byzantine ? highestSlots(s.byzantine.tabs, tabsCount) : [];
  const log = new RunLog({
    source: 'simulation',
    wireRunId: runId,
    manifest,
    meta: {
      ...simulationMeta(s, tabsCount, byzantineSlots),
      'sim.network': s.network ? `latency ${s.network.latencyMs} ms, drop ${s.network.drop}, ${s.network.tabs} tabs` : '',
    },
  });
  if (s.merge && !env.relay.running) await env.relay.start();
  const contexts: BrowserContext[] = await env.fleet.contexts(Math.min(s.browsers, tabsCount));
  const runTag = `${safeLabel(s.label)}-${Date.now().toString(36)}`;
  const link = encodeRunLink(manifest);
  const tabs = Array.from({ length: tabsCount }, (_, slot) =>
    new SimTab(slot, tabUrl(s, env.appUrl, link, slot, env.relay.multiaddr, runTag), contexts[slot % contexts.length], byzantineSlots.includes(slot)),
  );
  let startMs = Date.now();
  const elapsedS = () => (Date.now() - startMs) / 1000;
  const restarts: Array<{ atMs: number; tab: SimTab }> = [];
  const faults: PendingFault[] = [];
  for (const kill of s.merge ? s.kills : []) {
    faults.push({
      at: kill.at,
      done: false,
      fire: async () => {
        const alive = tabs.filter((t) => t.alive).sort((a, b) => b.slot - a.slot);
        const victims = alive.slice(0, Math.max(1, Math.round(kill.share * tabsCount)));
        const now = Date.now();
        for (const tab of victims) {
          const peerId = tab.peerIds.at(-1) ?? null;
          log.addEvent(SIM_EVENTS.kill, `tab ${tab.slot}${kill.restartAfterS !== null ? `, back in ${kill.restartAfterS} s` : ''}`, now, peerId);
          if (peerId) log.markLeft(peerId, 'killed by the simulation', now);
          await tab.kill();
          if (kill.restartAfterS !== null) restarts.push({ atMs: Date.now() + kill.restartAfterS * 1000, tab });
        }
        env.log(`[${s.label}] ${elapsedS().toFixed(0)} s: killed tabs ${victims.map((t) => t.slot).join(', ')}`);
      },
    });
  }
  for (const rk of s.merge ? s.relayKills : []) {
    faults.push({
      at: rk.at,
      done: false,
      fire: async () => {
        await env.relay.kill();
        log.addEvent(SIM_EVENTS.relayDown, 'relay killed (SIGKILL)', Date.now());
        env.log(`[${s.label}] ${elapsedS().toFixed(0)} s: relay killed`);
        if (rk.restartAfterS !== null) {
          faults.push({
            at: { kind: 'seconds', value: elapsedS() + rk.restartAfterS },
            done: false,
            fire: async () => {
              await env.relay.restart();
              log.addEvent(SIM_EVENTS.relayUp, `relay back at ${env.relay.multiaddr}`, Date.now());
              env.log(`[${s.label}] ${elapsedS().toFixed(0)} s: relay restarted`);
            },
          });
        }
      },
    });
  }

  const seenHeldOut = new Set<string>();
  const lastReport = new Map<number, { step: number; atMs: number }>();
  const observe = (tab: SimTab, probe: PeerProbe, now: number) => {
    const fatal = probe.errors.find((e) => FATAL_PAGE_ERRORS.has(e.kind));
    if (fatal) throw new SimulationTabError(`tab ${tab.slot}: ${fatal.kind}: ${fatal.message}`);
    if (!probe.ready) return;
    const peerId = s.merge ? probe.peerId : `simtab${tab.slot}i${tab.incarnation}`;
    if (!peerId) return;
    if (tab.peerIds.at(-1) !== peerId) {
      tab.peerIds.push(peerId);
      const detail: TabPeerDetail = { slot: tab.slot, incarnation: tab.incarnation, byzantine: tab.byzantine, genres: probe.genres };
      log.addEvent(SIM_EVENTS.tabPeer, JSON.stringify(detail), now, peerId);
      if (tab.incarnation > 1) log.addEvent(SIM_EVENTS.restart, `tab ${tab.slot} back${probe.resumedFromStep !== null ? ` from its checkpoint at step ${probe.resumedFromStep}` : ''}`, now, peerId);
    }
    for (const h of probe.heldOutHistory) {
      const key = `${tab.slot}/${h.step}/${h.atMs}`;
      if (seenHeldOut.has(key)) continue;
      seenHeldOut.add(key);
      const detail: HeldOutDetail = { slot: tab.slot, step: h.step, own: h.own, allGenres: h.allGenres, byGenre: h.byGenre, timeMs: h.atMs };
      log.addEvent(SIM_EVENTS.heldOut, JSON.stringify(detail), now, peerId);
    }
    const last = lastReport.get(tab.slot);
    if (last && last.step === probe.step && now - last.atMs < 10_000) return;
    lastReport.set(tab.slot, { step: probe.step, atMs: now });
    log.addReport(
      telemetryReport({
        peerId, runId, timeMs: now, step: probe.step, trainLoss: probe.trainLoss, heldOutLoss: probe.heldOut?.own ?? null, merges: probe.merges,
        bytesSent: probe.bytesSent, bytesReceived: probe.bytesReceived, versionsAnnounced: probe.publishedVersion, versionsFetched: probe.adaptersAccepted,
        neighbours: probe.neighbours, rejections: {}, tokensPerSecond: probe.tokensPerSecond, backend: probe.backend ?? 'other',
        privacy: probe.privacy,
      }),
      now,
    );
  };

  const meanOf = (values: number[]) => (values.length === 0 ? null : values.reduce((a, b) => a + b, 0) / values.length);
  const meanStep = () => meanOf(tabs.filter((t) => t.alive && t.lastProbe).map((t) => t.lastProbe!.step)) ?? 0;
  const due = (at: FaultTime) => (at.kind === 'seconds' ? elapsedS() >= at.value : meanStep() >= at.value);

  let stopReason = '';
  let lastProgressMs = 0;
  const pollMs = env.pollMs ?? 2000;
  try {
    for (const tab of tabs) {
      await tab.open();
      await new Promise((r) => setTimeout(r, 200));
    }
    const barrier = await startTogether(tabs, s, env, (tab, probe) => observe(tab, probe, Date.now()));
    startMs = Date.now();
    log.addEvent(SIM_EVENTS.start, `${tabsCount} tabs started together after ${barrier.loadS.toFixed(0)} s of loading and ${barrier.connectS.toFixed(0)} s of connecting; direct neighbours per tab: ${barrier.neighbours.join(', ')}`, startMs);
    env.log(`[${s.label}] all ${tabsCount} tabs loaded in ${barrier.loadS.toFixed(0)} s${s.merge ? `, connected in ${barrier.connectS.toFixed(0)} s (direct neighbours per tab: ${barrier.neighbours.join(', ')})` : ''}; started`);
    for (;;) {
      const now = Date.now();
      const probes = await Promise.all(tabs.map((t) => t.probe()));
      tabs.forEach((t, i) => probes[i] && observe(t, probes[i]!, now));
      for (const f of faults) {
        if (!f.done && due(f.at)) {
          f.done = true;
          await f.fire();
        }
      }
      for (const r of restarts.splice(0)) {
        if (Date.now() >= r.atMs) {
          await r.tab.open(r.tab.url.replace('&paused=1', ''));
          env.log(`[${s.label}] ${elapsedS().toFixed(0)} s: reopened tab ${r.tab.slot}`);
        } else restarts.push(r);
      }
      const alive = tabs.filter((t) => t.alive);
      const honestLatest = alive.filter((t) => !t.byzantine && t.lastProbe?.heldOut).map((t) => t.lastProbe!.heldOut!);
      const meanHeld = meanOf(honestLatest.map((h) => h.allGenres));
      if (Date.now() - lastProgressMs >= env.progressEveryS * 1000) {
        lastProgressMs = Date.now();
        const train = meanOf(alive.map((t) => t.lastProbe?.trainLoss).filter((v): v is number => typeof v === 'number'));
        const merges = tabs.reduce((n, t) => n + (t.lastProbe?.merges ?? 0), 0);
        env.log(
          `[${s.label}] ${elapsedS().toFixed(0).padStart(4)} s | peers alive ${alive.length}/${tabsCount} | mean step ${meanStep().toFixed(1)}` +
            `${s.steps > 0 ? `/${s.centralised ? s.steps * s.tabs : s.steps}` : ''} | train loss ${train?.toFixed(3) ?? '–'} | held-out (all genres) ${meanHeld?.toFixed(3) ?? '–'} | merges ${merges}`,
        );
      }
      const pendingFaults = faults.some((f) => !f.done) || restarts.length > 0;
      if (s.steps > 0 && !pendingFaults && alive.length > 0 && alive.every((t) => t.lastProbe?.phase === 'done')) {
        stopReason = 'every tab finished its steps';
        break;
      }
      if (s.targetLoss !== null && meanHeld !== null && honestLatest.every((h) => h.step > 0) && honestLatest.length > 0 && meanHeld <= s.targetLoss) {
        log.addEvent(SIM_EVENTS.target, `mean held-out ${meanHeld.toFixed(4)} <= ${s.targetLoss}`, Date.now());
        stopReason = `target loss ${s.targetLoss} reached`;
        break;
      }
      if (elapsedS() >= s.minutes * 60) {
        stopReason = `time limit of ${s.minutes} min`;
        break;
      }
      if (alive.length === 0 && restarts.length === 0) {
        stopReason = 'no tab left';
        break;
      }
      await new Promise((r) => setTimeout(r, pollMs));
    }
    const now = Date.now();
    const finals = await Promise.all(tabs.map((t) => t.probe()));
    tabs.forEach((t, i) => finals[i] && observe(t, finals[i]!, now));
    log.addEvent(SIM_EVENTS.end, stopReason, Date.now());
  } finally {
    await Promise.all(contexts.map((c) => c.close().catch(() => undefined)));
  }
  env.log(`[${s.label}] stopped after ${elapsedS().toFixed(0)} s: ${stopReason}`);
  const runLog = log.toData();
  return {
    settings: s,
    manifest,
    runLog,
    summary: summarizeRun(runLog, s.targetLoss),
    stopReason,
    tabs: tabs.map((t) => ({ slot: t.slot, byzantine: t.byzantine, incarnations: t.incarnation, peerIds: [...t.peerIds], probe: t.lastProbe, pageErrors: [...t.consoleErrors] })),
  };
}
