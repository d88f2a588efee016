// window.swarmPeer: a read-only view of this peer for Playwright and for people poking at the console.
import type { TelemetryReport } from '../../core/wire/telemetry.ts';
import type { GuardCounts, HeldOutPoint, LossPoint, MergeRecord, PeerHealth } from '../../core/swarm/engine-protocol.ts';
import type { PageError, PeerController, RunLookup } from './peer-controller.ts';
import type { FaultCounters } from './faults.ts';
import type { PrivacyStatus } from '../../core/privacy/budget.ts';

export interface PeerProbe {
  joined: boolean;
  ready: boolean;
  phase: string;
  backend: string | null;
  /** WASM threads in use, as the backend read them back (null before ready or on another backend). */
  threads: number | null;
  backendReason: string | null;
  peerId: string | null;
  wireRunId: string | null;
  manifestId: string | null;
  slot: number;
  genres: string[];
  step: number;
  trainLoss: number | null;
  heldOut: HeldOutPoint | null;
  baseHeldOut: HeldOutPoint | null;
  heldOutHistory: HeldOutPoint[];
  lossHistory: LossPoint[];
  merges: number;
  mergeHistory: MergeRecord[];
  publishedVersion: number;
  neighbours: string[];
  dialPending: Array<{ peerId: string; attempts: number; lastError?: string }>;
  connections: number;
  mergeTable: Array<{ peerId: string; version: number; ageMs: number; weight: number }>;
  adaptersAccepted: number;
  bytesSent: number;
  bytesReceived: number;
  relayConnected: boolean;
  checkpoint: { step: number; atMs: number; bytes: number } | null;
  resumedFromStep: number | null;
  adoptedFrom: { peerId: string; step: number } | null;
  /** Set when the tab came by a manifest id it did not know and asked its peers for the manifest. */
  runLookup: RunLookup | null;
  tokensPerSecond: number | null;
  errors: PageError[];
  /** Simulation faults this tab applied (all zero unless its URL asked for faults). */
  faults: FaultCounters;
  /** What the update guard clipped or refused, and whether this peer is healthy. */
  guard: GuardCounts | null;
  health: PeerHealth | null;
  /** What differential privacy has cost this tab's own files (null when the run does not use it). */
  privacy: PrivacyStatus | null;
}

export interface SwarmPeerApi {
  status(): PeerProbe;
  telemetry(): TelemetryReport[];
}

declare global {
  interface Window {
    swarmPeer: SwarmPeerApi;
  }
}

export function installProbe(controller: PeerController): void {
  const api: SwarmPeerApi = {
    status() {
      const s = controller.snapshot();
      const st = s.status;
      return {
        joined: s.joined,
        ready: s.info !== null,
        phase: st?.phase ?? (s.joined ? 'loading' : 'idle'),
        backend: st?.backend ?? null,
        threads: s.info?.threads ?? null,
        backendReason: s.info?.backendReason ?? null,
        peerId: s.network.peerId,
        wireRunId: s.info?.wireRunId ?? null,
        manifestId: s.info?.manifestId ?? null,
        slot: s.slot,
        genres: st?.data.filter((d) => d.kind === 'corpus').map((d) => d.name) ?? [],
        step: st?.step ?? 0,
        trainLoss: st?.trainLoss ?? null,
        heldOut: st?.heldOut ?? null,
        baseHeldOut: st?.baseHeldOut ?? null,
        heldOutHistory: s.heldOutHistory,
        lossHistory: s.lossHistory,
        merges: st?.merges ?? 0,
        mergeHistory: s.mergeHistory,
        publishedVersion: st?.publishedVersion ?? 0,
        neighbours: s.network.neighbours,
        dialPending: s.network.dialPending,
        connections: s.network.connections,
        mergeTable: st?.neighbours.map((n) => ({ peerId: n.peerId, version: n.version, ageMs: n.ageMs, weight: n.weight })) ?? [],
        adaptersAccepted: st?.adaptersAccepted ?? 0,
        bytesSent: s.network.bytesSent,
        bytesReceived: s.network.bytesReceived,
        relayConnected: s.network.relayConnected,
        checkpoint: st?.checkpoint ?? null,
        resumedFromStep: st?.resumedFromStep ?? null,
        adoptedFrom: st?.adoptedFrom ?? null,
        runLookup: s.runLookup,
        tokensPerSecond: st?.tokensPerSecond ?? null,
        errors: s.errors,
        faults: { ...controller.faults.counters },
        guard: st?.guard ?? null,
        health: st?.health ?? null,
        privacy: st?.privacy ?? null,
      };
    },
    telemetry: () => controller.telemetry(),
  };
  Object.defineProperty(window, 'swarmPeer', { value: Object.freeze(api), writable: false, configurable: false });
}
