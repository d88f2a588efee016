/**
 * The merge-strategy interface shared by the swarm worker, the `merge` command and the benchmark.
 * Strategies are pure functions over plain Float32Arrays: no tfjs, no DOM, no network, no storage.
 */
import type { Adapter } from '../model/adapter.ts';

/** What the merging peer knows about each input besides its tensors. */
export interface MergeInputMeta {
  peerId: string;
  /** Training samples the peer has seen (a weight policy may use it; strategies do not). */
  samples: number;
  /** How old this adapter is at merge time. */
  ageMs: number;
  loss?: number;
}

export interface MergeInput {
  adapter: Adapter;
  /** Non-negative, finite; strategies normalise the weights of all inputs to sum to one. */
  weight: number;
  meta: MergeInputMeta;
}

export type ParamValue = number | string | boolean;
export type MergeParams = Record<string, ParamValue>;

export interface ParamSpec {
  /** camelCase; the CLI spells it kebab-case (`powerIterations` ↔ `--power-iterations`). */
  name: string;
  type: 'number' | 'string' | 'boolean';
  default: ParamValue;
  description: string;
  min?: number;
  max?: number;
  /** Only whole numbers are accepted. */
  integer?: boolean;
  /** Allowed values of a string parameter. */
  choices?: string[];
}

/** Inputs of one LoRA module, seen by DIMAT: X with `rows` samples of the module's input, row-major [rows, inDim]. */
export interface CalibrationBatch {
  rows: number;
  data: Float32Array;
}

/** Read-only view of the per-peer update history that `similarity-weighting` needs (see strategies/similarity.ts). */
export interface PeerHistoryView {
  /** The accumulated update of this peer as one flat vector in the adapter's canonical tensor order, if any. */
  accumulated(peerId: string): Float32Array | undefined;
}

/**
 * Everything a strategy may use besides its inputs and params. The merging peer's own adapter is always
 * `inputs[SELF_INDEX]` (index 0); strategies that treat it specially say so with `selfSpecial`.
 */
export interface MergeContext {
  /** Seeds random masks (DARE) and sketches (randomised SVD). Same seed, same inputs → same output. Default 0. */
  seed?: number;
  /** Per module name, a small local batch of that module's inputs (DIMAT aligns units on A·x when given). */
  calibration?: ReadonlyMap<string, CalibrationBatch>;
  /** Degree of the merging peer in the neighbour graph (Metropolis–Hastings weights). Default: inputs.length - 1. */
  selfDegree?: number;
  /** Degree of each neighbour by peer id (Metropolis–Hastings weights). A missing entry counts as selfDegree. */
  neighbourDegrees?: ReadonlyMap<string, number>;
  /** Accumulated past updates per peer (similarity-weighting). Absent: only the current round is used. */
  peerHistory?: PeerHistoryView;
}

export const SELF_INDEX = 0;

export type OutputKind = 'factors' | 'product';

export interface MergeStrategy {
  /** Registry key, kebab-case. */
  name: string;
  /** One line. */
  description: string;
  /** The paper or page whose method this follows. */
  reference: string;
  params: ParamSpec[];
  /**
   * True when inputs[0] (the merging peer) is treated differently from the others; then only the order of
   * inputs[1..] is irrelevant. False: the result does not depend on the order of any inputs.
   */
  selfSpecial: boolean;
  /**
   * 'factors': the output's A and B are the merge result itself. 'product': only ΔW = (alpha/r)·B·A is the
   * result; A and B are one (canonical, balanced) factorisation of it, so compare adapters through their products.
   */
  output: OutputKind | ((params: MergeParams) => OutputKind);
  /** Params must already be resolved (registry.resolveParams). Never mutates inputs. */
  merge(inputs: MergeInput[], params: MergeParams, ctx: MergeContext): Adapter;
}
