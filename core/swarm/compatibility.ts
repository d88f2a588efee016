/**
 * Whether a neighbour's adapter may be merged with ours, with the reason in words when it may not.
 * Two peers merge only when run id, base model hash and adapter schema hash agree (DESIGN.md, invariants).
 */
import { accept, reject, type RejectReason, type Verdict } from '../wire/verdict.ts';

export interface PeerIdentity {
  /** The run's wire id (see wireRunId): changes whenever anything in the run manifest changes. */
  runId: string;
  baseModelSha256: string;
  schemaHash: string;
}

export function checkCompatibility(ours: PeerIdentity, theirs: PeerIdentity): Verdict {
  if (theirs.runId !== ours.runId) return reject('wrong-run', `run '${theirs.runId}', ours is '${ours.runId}'`);
  if (theirs.baseModelSha256 !== ours.baseModelSha256) {
    return reject('wrong-base-model', `base model ${theirs.baseModelSha256.slice(0, 12)}…, ours is ${ours.baseModelSha256.slice(0, 12)}…`);
  }
  if (theirs.schemaHash !== ours.schemaHash) return reject('schema-mismatch', `adapter schema ${theirs.schemaHash}, ours is ${ours.schemaHash}`);
  return accept();
}

const EXPLANATIONS: Record<RejectReason, string> = {
  malformed: 'sent data that does not parse',
  'unknown-version': 'runs a different version of Swarm',
  'wrong-run': 'is in a different run (another run manifest: strategy, data, schedule or model differ)',
  'wrong-base-model': 'trains on a different base model',
  'schema-mismatch': 'uses a different adapter shape (LoRA rank, alpha or target modules)',
  oversized: 'sent more data than allowed',
  truncated: 'sent an incomplete adapter',
  'bad-hash': 'sent an adapter whose hash does not match its announcement',
  'non-finite': 'sent an adapter with NaN or infinite values',
  replayed: 'repeated an adapter version it had already sent',
  'bad-signature': 'announced an adapter under another peer’s name',
  'rate-limited': 'sends faster than allowed',
  timeout: 'did not deliver its adapter in time',
  'fetch-failed': 'could not be reached to fetch its adapter',
  'out-of-bounds': 'sent an adapter with values far beyond what training produces',
  'delta-base-mismatch': 'sent a sparse update to a version of its adapter this peer does not hold (it waits for the next full one)',
  'frozen-factor': 'sent an adapter whose frozen LoRA A is not the run’s shared one',
};

/** One sentence for the volunteer page: "Peer 12D3…abcd is in a different run (…)". */
export function explainRejection(peerId: string, reason: RejectReason, detail?: string): string {
  const who = peerId.length > 12 ? `${peerId.slice(0, 6)}…${peerId.slice(-4)}` : peerId;
  return `Peer ${who} ${EXPLANATIONS[reason]}${detail ? `: ${detail}` : ''}.`;
}
