/**
 * When a peer publishes, merges, evaluates and checkpoints, counted in local optimiser steps. The loop never
 * waits on the network: a merge uses whatever the neighbour table holds at that moment, and with no neighbours
 * the peer simply trains on.
 */
export interface CadenceConfig {
  /** H: local steps between publishing (and merging). */
  localSteps: number;
  /** Checkpoint at least this often even without a merge (steps). */
  checkpointEvery: number;
  /** Held-out evaluation every this many steps (0 = never). */
  evaluateEvery: number;
}

export interface StepActions {
  publish: boolean;
  merge: boolean;
  evaluate: boolean;
  checkpoint: boolean;
}

export class CadenceError extends Error {
  static override readonly name = 'CadenceError';
  override readonly name = CadenceError.name;
}

export function checkCadence(c: CadenceConfig): CadenceConfig {
  const positive = (v: number, what: string, allowZero = false) => {
    if (!Number.isInteger(v) || v < (allowZero ? 0 : 1)) throw new CadenceError(`${what} must be a ${allowZero ? 'non-negative' : 'positive'} integer, got ${v}`);
  };
  positive(c.localSteps, 'localSteps (H)');
  positive(c.checkpointEvery, 'checkpointEvery');
  positive(c.evaluateEvery, 'evaluateEvery', true);
  return c;
}

/**
 * What to do after local step `step` (1-based: the count of steps done so far) has finished.
 * `liveNeighbours` is how many neighbours have an adapter that still counts.
 */
export function actionsAfterStep(step: number, liveNeighbours: number, c: CadenceConfig): StepActions {
  const boundary = step > 0 && step % c.localSteps === 0;
  const merge = boundary && liveNeighbours > 0;
  return {
    publish: boundary,
    merge,
    evaluate: c.evaluateEvery > 0 && step > 0 && step % c.evaluateEvery === 0,
    checkpoint: merge || (step > 0 && step % c.checkpointEvery === 0),
  };
}

/**
 * Duty cycle: after a training step that took `busyMs`, rest so that training takes `duty` of the wall time.
 * duty = 1 never rests; duty = 0.25 rests three times as long as it worked.
 */
export function restAfterStep(busyMs: number, duty: number): number {
  if (!(duty > 0)) return Number.POSITIVE_INFINITY;
  if (duty >= 1 || !(busyMs > 0)) return 0;
  return (busyMs * (1 - duty)) / duty;
}
