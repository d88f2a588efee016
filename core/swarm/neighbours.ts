/**
 * The neighbour table: the freshest accepted adapter of each neighbour, with what its announcement said about it.
 * Nothing here waits: the table only remembers what arrived, ages it and hands out merge inputs on demand.
 */
import type { Adapter } from '../model/adapter.ts';
import type { MergeInput } from '../merge/types.ts';
import { accept, reject, type Verdict } from '../wire/verdict.ts';
import { checkCompatibility, type PeerIdentity } from './compatibility.ts';
import { checkStalenessPolicy, DEFAULT_STALENESS, stalenessWeight, type StalenessPolicy } from './staleness.ts';

export interface NeighbourAdapterMeta {
  peerId: string;
  /** The announcement's version: strictly increasing per peer. */
  version: number;
  /** The neighbour's local optimiser steps behind this adapter. */
  step: number;
  samplesSeen: number;
  localLoss: number | null;
  /**
   * When the adapter arrived here, on this peer's clock. Ages are measured from it rather than from the sender's
   * createdAtMs so that clock skew between machines cannot make an adapter look fresher or older than it is.
   */
  receivedAtMs: number;
}

export interface NeighbourEntry {
  meta: NeighbourAdapterMeta;
  adapter: Adapter;
  /** Identity the neighbour announced (run, base model, schema). */
  identity: PeerIdentity;
  /** Adapters accepted from this neighbour so far. */
  accepted: number;
}

export interface NeighbourSummary {
  peerId: string;
  version: number;
  step: number;
  samplesSeen: number;
  localLoss: number | null;
  ageMs: number;
  weight: number;
  accepted: number;
}

export interface SelfState {
  peerId: string;
  adapter: Adapter;
  samples: number;
  loss?: number;
}

export class NeighbourTable {
  private readonly entries = new Map<string, NeighbourEntry>();
  readonly staleness: StalenessPolicy;

  constructor(
    readonly identity: PeerIdentity,
    staleness: StalenessPolicy = DEFAULT_STALENESS,
  ) {
    this.staleness = checkStalenessPolicy({ ...staleness });
  }

  /**
   * Keeps the adapter if it is compatible and newer than what the neighbour sent before. Never throws; a refusal
   * carries the reason (wrong-run, wrong-base-model, schema-mismatch, replayed).
   */
  offer(adapter: Adapter, meta: NeighbourAdapterMeta, identity: PeerIdentity): Verdict {
    const compatible = checkCompatibility(this.identity, identity);
    if (!compatible.ok) return compatible;
    const previous = this.entries.get(meta.peerId);
    if (previous && !(meta.version > previous.meta.version)) {
      return reject('replayed', `version ${meta.version} is not newer than ${previous.meta.version} already held`);
    }
    this.entries.set(meta.peerId, { meta: { ...meta }, adapter, identity: { ...identity }, accepted: (previous?.accepted ?? 0) + 1 });
    return accept();
  }

  /** Forgets neighbours whose adapter reached the drop-after age; returns their peer ids. */
  prune(nowMs: number): string[] {
    const dropped: string[] = [];
    for (const [peerId, entry] of this.entries) {
      if (stalenessWeight(nowMs - entry.meta.receivedAtMs, this.staleness) === 0) {
        this.entries.delete(peerId);
        dropped.push(peerId);
      }
    }
    return dropped;
  }

  remove(peerId: string): boolean {
    return this.entries.delete(peerId);
  }

  get size(): number {
    return this.entries.size;
  }

  get(peerId: string): NeighbourEntry | undefined {
    return this.entries.get(peerId);
  }

  /** Live neighbours (after pruning) with their current weight, freshest first. */
  summary(nowMs: number): NeighbourSummary[] {
    this.prune(nowMs);
    return [...this.entries.values()]
      .map((e) => {
        const ageMs = Math.max(0, nowMs - e.meta.receivedAtMs);
        return {
          peerId: e.meta.peerId,
          version: e.meta.version,
          step: e.meta.step,
          samplesSeen: e.meta.samplesSeen,
          localLoss: e.meta.localLoss,
          ageMs,
          weight: stalenessWeight(ageMs, this.staleness),
          accepted: e.accepted,
        };
      })
      .sort((a, b) => a.ageMs - b.ageMs || a.peerId.localeCompare(b.peerId));
  }

  /**
   * Merge inputs for core/merge's mergeWith: self first with weight `selfWeight`, then each live neighbour with
   * its staleness weight (strategies normalise the weights). Neighbours are ordered by peer id so the same table
   * gives the same inputs on every call.
   */
  mergeInputs(self: SelfState, nowMs: number, selfWeight = 1): MergeInput[] {
    this.prune(nowMs);
    const inputs: MergeInput[] = [
      { adapter: self.adapter, weight: selfWeight, meta: { peerId: self.peerId, samples: self.samples, ageMs: 0, loss: self.loss } },
    ];
    const peers = [...this.entries.keys()].sort();
    for (const peerId of peers) {
      const e = this.entries.get(peerId)!;
      const ageMs = Math.max(0, nowMs - e.meta.receivedAtMs);
      const weight = stalenessWeight(ageMs, this.staleness);
      if (weight <= 0) continue;
      inputs.push({
        adapter: e.adapter,
        weight,
        meta: { peerId, samples: e.meta.samplesSeen, ageMs, loss: e.meta.localLoss ?? undefined },
      });
    }
    return inputs;
  }
}
