// URL parameters of the volunteer page (also what simulations and the e2e tests set).
import { DEFAULT_BASE_MODEL_URL, parseRunLink, type RunLink } from '../../core/swarm/run.ts';
import type { Verdict } from '../../core/wire/verdict.ts';
import type { BackendPreference } from '../../core/swarm/engine-protocol.ts';
import { parseBackendPreference } from './backend-preference.ts';
import { readFaultParams, type FaultParams } from './faults.ts';

export interface PageParams {
  run: Verdict<RunLink>;
  slot: number | null;
  genre: string | null;
  backend: BackendPreference;
  /** Stop after this many local steps (0 = never). */
  maxSteps: number;
  mergeEnabled: boolean;
  p2p: boolean;
  /** Join without waiting for the button (simulations, tests). */
  autojoin: boolean;
  /** Load and connect, then wait paused for the Resume button (a simulation starts all its tabs at once). */
  startPaused: boolean;
  bootstrapWaitMs: number;
  evaluateEvery: number;
  checkpointEvery: number;
  duty: number;
  telemetryMs: number;
  evalBatches: number;
  /** A name for this tab's checkpoint, instead of the per-tab random one (simulations). */
  peerKey: string | null;
  /** Base model folder of the default run (development before the default model exists). */
  modelUrl: string;
  /** Injected by simulations: latency, dropped messages, Byzantine publishing (`latency`, `drop`, `byzantine`, `byzScale`). */
  faults: FaultParams;
}

function int(p: URLSearchParams, key: string, fallback: number, min = 0): number {
  const raw = p.get(key);
  if (raw === null || raw === '') return fallback;
  const v = Number(raw);
  return Number.isInteger(v) && v >= min ? v : fallback;
}

export function readPageParams(search: string): PageParams {
  const p = new URLSearchParams(search);
  const flag = (key: string, fallback: boolean) => {
    const v = p.get(key);
    return v === null ? fallback : !['0', 'off', 'false', 'no'].includes(v);
  };
  const slotRaw = p.get('slot');
  const duty = Number(p.get('duty') ?? 1);
  return {
    run: parseRunLink(p.get('run')),
    slot: slotRaw !== null && /^\d+$/.test(slotRaw) ? Number(slotRaw) : null,
    genre: p.get('genre'),
    backend: parseBackendPreference(p.get('backend')),
    maxSteps: int(p, 'steps', 0),
    mergeEnabled: flag('merge', true),
    p2p: flag('p2p', true),
    autojoin: flag('autojoin', false),
    startPaused: flag('paused', false),
    bootstrapWaitMs: int(p, 'bootstrap', 20_000),
    evaluateEvery: int(p, 'eval', 40),
    checkpointEvery: int(p, 'checkpoint', 20, 1),
    duty: duty > 0 && duty <= 1 ? duty : 1,
    telemetryMs: int(p, 'telemetry', 10_000, 1000),
    evalBatches: int(p, 'evalBatches', 2, 1),
    peerKey: p.get('peer'),
    modelUrl: /^\/[A-Za-z0-9._/-]*\/$/.test(p.get('model') ?? '') ? p.get('model')! : DEFAULT_BASE_MODEL_URL,
    faults: readFaultParams(p),
  };
}
