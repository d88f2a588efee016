/**
 * What stands between a neighbour's adapter and this peer's own: screen() decides, per input, to keep it, clip it
 * or refuse it before any strategy sees it; checkResult() decides whether a merge result may replace the peer's own
 * adapter. The engine takes any MergeGuard; defaultMergeGuard() is the run's rule.
 */
import type { Adapter } from '../model/adapter.ts';
import type { MergeInput } from '../merge/types.ts';
import { adapterProblem } from './adapter-bounds.ts';

export type GuardEvent = { kind: 'clipped'; peerId: string; scale: number; detail: string } | { kind: 'refused'; peerId: string; detail: string };

export interface MergeGuard {
  /** inputs[0] is the peer itself and always stays; the others are kept, clipped or dropped. */
  screen(self: Adapter, inputs: MergeInput[]): { inputs: MergeInput[]; events: GuardEvent[] };
  /** Why `merged` may not replace `self`, or null when it may. */
  checkResult(self: Adapter, merged: Adapter): string | null;
}

/** Refuses inputs that are not finite or beyond the absolute bound, and any merge result that is. */
export function defaultMergeGuard(): MergeGuard {
  return {
    screen(_self, inputs) {
      const events: GuardEvent[] = [];
      const kept = inputs.filter((input, i) => {
        if (i === 0) return true;
        const problem = adapterProblem(input.adapter);
        if (problem) events.push({ kind: 'refused', peerId: input.meta.peerId, detail: problem });
        return problem === null;
      });
      return { inputs: kept, events };
    },
    checkResult(_self, merged) {
      return adapterProblem(merged);
    },
  };
}
