// What a simulated run measured, computed from its run log alone (so a report can be rebuilt from run-log.json,
// and a live run's log read by the same code). The simulator adds to the dashboard's records a few events:
//   sim-start / sim-end                    the swarm phase (times are measured from sim-start)
//   tab-peer   peerId, detail {slot,…}     which tab (slot) a peer id is; a restarted tab gets a new peer id
//   held-out   peerId, detail {slot, step, own, allGenres, byGenre, timeMs}
//   kill / restart / relay-down / relay-up / target-reached   faults and milestones
// and settings in meta under `sim.*`.
import type { RunLogData, RunLogRecord } from '../../core/swarm/run-log.ts';

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

export interface RunSummary {
  label: string;
  strategy: string;
  params: string;
  baseline: 'none' | 'local' | 'central';
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

export function summarizeRun(data: RunLogData, target: number | null = null): RunSummary {
  const records = data.records;
  const start = events(records, SIM_EVENTS.start)[0]?.atMs ?? data.createdAtMs;
  const end = events(records, SIM_EVENTS.end).at(-1)?.atMs ?? records.at(-1)?.atMs ?? start;
  const byzantineSlots = metaString(data, 'sim.byzantineSlots', '')
    .split(',')
    .filter((s) => s !== '')
    .map(Number);
  const honest = (slot: number) => !byzantineSlots.includes(slot);
  const baseline = metaString(data, 'sim.baseline', 'none') as RunSummary['baseline'];
  const tabs = metaNumber(data, 'sim.tabs', 1);
  const trainingTabs = metaNumber(data, 'sim.trainingTabs', tabs);
  const batchSize = metaNumber(data, 'sim.batchSize', 1);

  const held: HeldOutDetail[] = events(records, SIM_EVENTS.heldOut).map((e) => JSON.parse(e.detail) as HeldOutDetail);
  const curve = heldOutCurve(held, honest, batchSize * trainingTabs, start);
  const finalBySlot: RunSummary['finalBySlot'] = {};
  for (const h of held) {
    if (!honest(h.slot)) continue;
    const prev = finalBySlot[h.slot];
    if (!prev || h.step >= prev.step) finalBySlot[h.slot] = { step: h.step, allGenres: h.allGenres, own: h.own };
  }
  const finals = Object.values(finalBySlot).map((f) => f.allGenres);
  const baseLosses = curve[0]?.step === 0 ? [curve[0].meanLoss] : [];
  let spread: RunSummary['spread'] = null;
  if (finals.length > 0) {
    const m = mean(finals);
    spread = { min: Math.min(...finals), max: Math.max(...finals), std: Math.sqrt(mean(finals.map((f) => (f - m) ** 2))) };
  }

  // Traffic: a tab's counters restart with each incarnation (new peer id), so sum each peer's latest counters per slot.
  const slotOfPeer = new Map<string, number>();
  for (const e of events(records, SIM_EVENTS.tabPeer)) if (e.peerId) slotOfPeer.set(e.peerId, (JSON.parse(e.detail) as TabPeerDetail).slot);
  const latestBytes = new Map<string, number>();
  const latestMerges = new Map<string, number>();
  for (const r of records) {
    if (r.type !== 'report') continue;
    latestBytes.set(r.report.peerId, r.report.bytesSent + r.report.bytesReceived);
    latestMerges.set(r.report.peerId, r.report.merges);
  }
  const bytesBySlot = new Map<number, number>();
  for (const [peer, bytes] of latestBytes) {
    const slot = slotOfPeer.get(peer);
    if (slot !== undefined) bytesBySlot.set(slot, (bytesBySlot.get(slot) ?? 0) + bytes);
  }
  // Merge counters survive a restart (they are in the checkpoint): count each slot's highest.
  const mergesBySlot = new Map<number, number>();
  for (const [peer, merges] of latestMerges) {
    const slot = slotOfPeer.get(peer);
    if (slot !== undefined) mergesBySlot.set(slot, Math.max(mergesBySlot.get(slot) ?? 0, merges));
  }

  const reached = target === null ? null : firstAtTarget(curve, target);
  const faultNames: string[] = [SIM_EVENTS.kill, SIM_EVENTS.restart, SIM_EVENTS.relayDown, SIM_EVENTS.relayUp];
  return {
    label: metaString(data, 'sim.label', data.wireRunId),
    strategy: metaString(data, 'sim.strategy', data.manifest?.strategy.name ?? ''),
    params: metaString(data, 'sim.params', '{}'),
    baseline,
    partition: metaString(data, 'sim.partition', ''),
    tabs,
    byzantineSlots,
    stepsPerTab: metaNumber(data, 'sim.steps', 0),
    batchSize,
    wallS: (end - start) / 1000,
    baseLoss: baseLosses.length > 0 ? mean(baseLosses) : null,
    finalLoss: finals.length > 0 ? mean(finals) : null,
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
  };
}

/** The default target of a comparison: the local-only baseline's final loss, else the worst final loss of the runs. */
export function defaultTarget(summaries: RunSummary[]): number | null {
  const local = summaries.find((s) => s.baseline === 'local' && s.finalLoss !== null);
  if (local) return local.finalLoss;
  const finals = summaries.map((s) => s.finalLoss).filter((f): f is number => f !== null);
  return finals.length > 0 ? Math.max(...finals) : null;
}
