// What a simulated run measured, computed from its run log alone (so a report can be rebuilt from run-log.json,
// and a live run's log read by the same code). The simulator adds to the dashboard's records a few events:
//   sim-start / sim-end                    the swarm phase (times are measured from sim-start)
//   tab-peer   peerId, detail {slot,…}     which tab (slot) a peer id is; a restarted tab gets a new peer id
//   held-out   peerId, detail {slot, step, own, allGenres, byGenre, timeMs}
//   kill / restart / relay-down / relay-up / target-reached   faults and milestones
// and settings in meta under `sim.*`. A live dashboard log has none of these: its summary falls back on what every
// log holds (the peers' telemetry) and lists in `missing` what it could not tell.
import type { RunLogData, RunLogRecord } from '../../core/swarm/run-log.ts';
import { mixtureLoss } from '../../core/data/partition.ts';

export const SIM_EVENTS = {
  start: 'sim-start',
  end: 'sim-end',
  tabPeer: 'tab-peer',
  heldOut: 'held-out',
  kill: 'kill',
  restart: 'restart',
  relayDown: 'relay-down',
  relayUp: 'relay-up',
  target: 'target-reached',
} as const;

export interface TabPeerDetail {
  slot: number;
  incarnation: number;
  byzantine: boolean;
  genres: string[];
}

export interface HeldOutDetail {
  slot: number;
  step: number;
  own: number;
  allGenres: number;
  byGenre: Record<string, number>;
  timeMs: number;
}

export interface CurvePoint {
  step: number;
  /** Training samples the whole swarm had seen at this step (step × batch × training tabs). */
  samples: number;
  /** Seconds from sim-start until the last tab evaluated at this step. */
  timeS: number;
  /** Mean over the honest tabs evaluated at this step of their held-out loss over all genres. */
  meanLoss: number;
  tabs: number;
}

/** Held-out loss as the peers' own telemetry carried it: each peer's loss on its own data, in every run log. */
export interface TelemetryLoss {
  /** Peers (tabs, in a simulation) that reported a held-out loss; Byzantine tabs never count. */
  peers: number;
  /** Mean of each peer's first loss reported at step 0, when the log saw step 0. */
  baseLoss: number | null;
  /** Mean of each peer's last reported loss. */
  finalLoss: number | null;
  /** A point whenever a peer's reported loss changed; step is the mean of the peers' latest steps. */
  curve: CurvePoint[];
}

export interface RunSummary {
  label: string;
  source: 'live' | 'simulation';
  /** Whether the log holds the simulator's all-genre evaluations (a dashboard's log of a live run does not). */
  evaluated: boolean;
  strategy: string;
  params: string;
  baseline: 'none' | 'local' | 'central' | 'sync-avg' | 'sync-dp';
  partition: string;
  tabs: number;
  byzantineSlots: number[];
  stepsPerTab: number;
  batchSize: number;
  wallS: number;
  /** Mean over honest tabs of the all-genre held-out loss before training. */
  baseLoss: number | null;
  /** Mean over honest tabs of their last all-genre held-out loss. */
  finalLoss: number | null;
  /**
   * Mean over honest tabs of their last held-out loss on their own genre mixture. The centralised learner has no
   * genre of its own: its loss is read against each peer's mixture of the partition it replaces (sim.peerMixtures).
   */
  finalOwnLoss: number | null;
  finalBySlot: Record<string, { step: number; allGenres: number; own: number }>;
  spread: { min: number; max: number; std: number } | null;
  curve: CurvePoint[];
  target: number | null;
  timeToTargetS: number | null;
  samplesToTarget: number | null;
  /** Mean over tabs of bytes sent + received (summed over a tab's restarts). */
  bytesPerPeer: number;
  merges: number;
  faults: Array<{ atS: number; name: string; detail: string }>;
  ownGenre: TelemetryLoss;
  /** What this log could not tell (shown next to the numbers rather than guessed). */
  missing: string[];
}

function events(records: readonly RunLogRecord[], name: string): Array<Extract<RunLogRecord, { type: 'event' }>> {
  return records.filter((r): r is Extract<RunLogRecord, { type: 'event' }> => r.type === 'event' && r.name === name);
}

function metaNumber(data: RunLogData, key: string, fallback: number): number {
  const v = data.meta[key];
  return typeof v === 'number' ? v : fallback;
}

function metaString(data: RunLogData, key: string, fallback: string): string {
  const v = data.meta[key];
  return typeof v === 'string' ? v : fallback;
}

function mean(values: number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

/** The mean curve over honest tabs: for each evaluated step, the latest evaluation of each tab at that step. */
export function heldOutCurve(held: HeldOutDetail[], honest: (slot: number) => boolean, samplesPerStep: number, startMs: number): CurvePoint[] {
  const bySlotStep = new Map<string, HeldOutDetail>();
  for (const h of held) {
    if (!honest(h.slot)) continue;
    const key = `${h.slot}/${h.step}`;
    // Step 0 is the base model (the first evaluation; a tab that adopts a neighbour's adapter evaluates again at
    // step 0); a later step evaluated twice (a tab resumed from an older checkpoint) counts its latest evaluation.
    if (h.step === 0 && bySlotStep.has(key)) continue;
    bySlotStep.set(key, h);
  }
  const bySteps = new Map<number, HeldOutDetail[]>();
  for (const h of bySlotStep.values()) {
    const list = bySteps.get(h.step) ?? [];
    list.push(h);
    bySteps.set(h.step, list);
  }
  return [...bySteps.entries()]
    .sort(([a], [b]) => a - b)
    .map(([step, list]) => ({
      step,
      samples: step * samplesPerStep,
      timeS: Math.max(0, (Math.max(...list.map((h) => h.timeMs)) - startMs) / 1000),
      meanLoss: mean(list.map((h) => h.allGenres)),
      tabs: list.length,
    }));
}

/** The first curve point at or below the target (only points with every tab that evaluated at step 0 count). */
export function firstAtTarget(curve: CurvePoint[], target: number): CurvePoint | null {
  const full = curve[0]?.tabs ?? 0;
  return curve.find((p) => p.step > 0 && p.tabs >= full && p.meanLoss <= target) ?? null;
}

/**
 * The held-out loss each peer's telemetry reported. A report repeats the peer's latest evaluation, so a value is
 * stale by up to one evaluation interval and a new evaluation shows as a changed value. keyOf folds the peer ids
 * of one tab's restarts together and returns null for peers that must not count.
 */
export function telemetryLoss(records: readonly RunLogRecord[], keyOf: (peerId: string) => string | null, batchSize: number, startMs: number): TelemetryLoss {
  const loss = new Map<string, number>();
  const step = new Map<string, number>();
  const base = new Map<string, number>();
  const curve: CurvePoint[] = [];
  let lastAt = -1;
  for (const r of records) {
    if (r.type !== 'report') continue;
    const key = keyOf(r.report.peerId);
    if (key === null) continue;
    step.set(key, r.report.step);
    const value = r.report.heldOutLoss;
    if (value === null) continue;
    if (r.report.step === 0 && !base.has(key)) base.set(key, value);
    if (loss.get(key) === value) continue;
    loss.set(key, value);
    const keys = [...loss.keys()];
    const point: CurvePoint = {
      step: mean(keys.map((k) => step.get(k)!)),
      samples: keys.reduce((n, k) => n + step.get(k)! * batchSize, 0),
      timeS: Math.max(0, (r.atMs - startMs) / 1000),
      meanLoss: mean([...loss.values()]),
      tabs: loss.size,
    };
    // Reports the observer accepted in the same instant (a simulator's poll of every tab) make one point.
    if (r.atMs === lastAt) curve[curve.length - 1] = point;
    else curve.push(point);
    lastAt = r.atMs;
  }
  return {
    peers: loss.size,
    baseLoss: base.size > 0 ? mean([...base.values()]) : null,
    finalLoss: loss.size > 0 ? mean([...loss.values()]) : null,
    curve,
  };
}

export function summarizeRun(data: RunLogData, target: number | null = null): RunSummary {
  const records = data.records;
  // Without the simulator's start, time runs from the first thing the observer heard (a dashboard may sit open long before).
  const start = events(records, SIM_EVENTS.start)[0]?.atMs ?? records[0]?.atMs ?? data.createdAtMs;
  const end = events(records, SIM_EVENTS.end).at(-1)?.atMs ?? records.at(-1)?.atMs ?? start;
  const byzantineSlots = metaString(data, 'sim.byzantineSlots', '')
    .split(',')
    .filter((s) => s !== '')
    .map(Number);
  const honest = (slot: number) => !byzantineSlots.includes(slot);
  const baseline = metaString(data, 'sim.baseline', 'none') as RunSummary['baseline'];
  const missing: string[] = [];

  // A tab's restarts are one slot; a peer the simulator never mapped to a tab (every peer of a live run) is its own.
  const slotOfPeer = new Map<string, number>();
  for (const e of events(records, SIM_EVENTS.tabPeer)) if (e.peerId) slotOfPeer.set(e.peerId, (JSON.parse(e.detail) as TabPeerDetail).slot);
  const keyOf = (peerId: string): string => {
    const slot = slotOfPeer.get(peerId);
    return slot === undefined ? `peer ${peerId}` : `slot ${slot}`;
  };
  const reporters = new Set<string>();
  for (const r of records) if (r.type === 'report') reporters.add(keyOf(r.report.peerId));

  const tabs = metaNumber(data, 'sim.tabs', reporters.size);
  const trainingTabs = metaNumber(data, 'sim.trainingTabs', tabs);
  const manifestBatch = data.manifest?.schedule.batchSize;
  let batchSize = metaNumber(data, 'sim.batchSize', typeof manifestBatch === 'number' && manifestBatch > 0 ? manifestBatch : 0);
  if (batchSize === 0) {
    missing.push('batch size (no manifest): samples count steps');
    batchSize = 1;
  }

  const held: HeldOutDetail[] = events(records, SIM_EVENTS.heldOut).map((e) => JSON.parse(e.detail) as HeldOutDetail);
  if (held.length === 0) missing.push('all-genre evaluations (only the simulator records them): final loss, spread, time to target');
  const curve = heldOutCurve(held, honest, batchSize * trainingTabs, start);
  const finalBySlot: RunSummary['finalBySlot'] = {};
  for (const h of held) {
    if (!honest(h.slot)) continue;
    const prev = finalBySlot[h.slot];
    if (!prev || h.step >= prev.step) finalBySlot[h.slot] = { step: h.step, allGenres: h.allGenres, own: h.own };
  }
  const finals = Object.values(finalBySlot).map((f) => f.allGenres);
  const peerMixtures = typeof data.meta['sim.peerMixtures'] === 'string' ? (JSON.parse(data.meta['sim.peerMixtures']) as Array<Record<string, number>>) : null;
  let finalOwnLoss: number | null = null;
  if (peerMixtures && held.length > 0) {
    const last = held.reduce((a, b) => (b.step >= a.step ? b : a));
    finalOwnLoss = mean(peerMixtures.map((m) => mixtureLoss(last.byGenre, m)));
  } else if (finals.length > 0) finalOwnLoss = mean(Object.values(finalBySlot).map((f) => f.own));
  const baseLosses = curve[0]?.step === 0 ? [curve[0].meanLoss] : [];
  let spread: RunSummary['spread'] = null;
  if (finals.length > 0) {
    const m = mean(finals);
    spread = { min: Math.min(...finals), max: Math.max(...finals), std: Math.sqrt(mean(finals.map((f) => (f - m) ** 2))) };
  }

  // Traffic: a tab's counters restart with each incarnation (new peer id), so sum each peer's latest counters per slot.
  const latestBytes = new Map<string, number>();
  const latestMerges = new Map<string, number>();
  for (const r of records) {
    if (r.type !== 'report') continue;
    latestBytes.set(r.report.peerId, r.report.bytesSent + r.report.bytesReceived);
    latestMerges.set(r.report.peerId, r.report.merges);
  }
  const bytesBySlot = new Map<string, number>();
  for (const [peer, bytes] of latestBytes) bytesBySlot.set(keyOf(peer), (bytesBySlot.get(keyOf(peer)) ?? 0) + bytes);
  // Merge counters survive a restart (they are in the checkpoint): count each slot's highest.
  const mergesBySlot = new Map<string, number>();
  for (const [peer, merges] of latestMerges) mergesBySlot.set(keyOf(peer), Math.max(mergesBySlot.get(keyOf(peer)) ?? 0, merges));
  let highestStep = 0;
  for (const r of records) if (r.type === 'report') highestStep = Math.max(highestStep, r.report.step);
  const ownGenre = telemetryLoss(records, (peer) => (honest(slotOfPeer.get(peer) ?? -1) ? keyOf(peer) : null), batchSize, start);
  if (ownGenre.peers === 0) missing.push('held-out losses in telemetry');

  const reached = target === null ? null : firstAtTarget(curve, target);
  const faultNames: string[] = [SIM_EVENTS.kill, SIM_EVENTS.restart, SIM_EVENTS.relayDown, SIM_EVENTS.relayUp];
  return {
    label: metaString(data, 'sim.label', data.wireRunId),
    source: data.source,
    evaluated: held.length > 0,
    strategy: metaString(data, 'sim.strategy', data.manifest?.strategy.name ?? ''),
    params: metaString(data, 'sim.params', '{}'),
    baseline,
    partition: metaString(data, 'sim.partition', typeof data.manifest?.data.kind === 'string' ? data.manifest.data.kind : ''),
    tabs,
    byzantineSlots,
    // A live run has no planned length: the furthest any peer got.
    stepsPerTab: metaNumber(data, 'sim.steps', highestStep),
    batchSize,
    wallS: (end - start) / 1000,
    baseLoss: baseLosses.length > 0 ? mean(baseLosses) : null,
    finalLoss: finals.length > 0 ? mean(finals) : null,
    finalOwnLoss,
    finalBySlot,
    spread,
    curve,
    target,
    timeToTargetS: reached?.timeS ?? null,
    samplesToTarget: reached?.samples ?? null,
    bytesPerPeer: bytesBySlot.size > 0 ? mean([...bytesBySlot.values()]) : 0,
    merges: [...mergesBySlot.values()].reduce((a, b) => a + b, 0),
    faults: records
      .filter((r): r is Extract<RunLogRecord, { type: 'event' }> => r.type === 'event' && faultNames.includes(r.name))
      .map((r) => ({ atS: (r.atMs - start) / 1000, name: r.name, detail: r.detail })),
    ownGenre,
    missing,
  };
}

/** The default target of a comparison: the local-only baseline's final loss, else the worst final loss of the runs. */
export function defaultTarget(summaries: RunSummary[]): number | null {
  const local = summaries.find((s) => s.baseline === 'local' && s.finalLoss !== null);
  if (local) return local.finalLoss;
  const finals = summaries.map((s) => s.finalLoss).filter((f): f is number => f !== null);
  return finals.length > 0 ? Math.max(...finals) : null;
}
