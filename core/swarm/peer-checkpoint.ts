/**
 * A peer's checkpoint as one byte string: what it needs to resume exactly where it stopped (adapter, optimiser
 * moments, step counters, data position, loss history). The data position is the step counter itself: batches
 * are drawn from a generator seeded by (run seed, slot, step), so resuming at step s draws batch s next.
 *
 * Layout: "SWCK" | u32 LE header length | header JSON (UTF-8) | float32 LE blobs in the header's `tensors` order.
 *
 * A peer writes its checkpoint to two slots in turn (checkpointSlotKeys), and on load takes the newest copy that
 * decodes and passes validateCheckpoint: a torn write, a damaged store or a copy of another run falls back to the
 * other slot, and when neither is usable the peer starts fresh and says so. Storage is as untrusted as the network.
 */
import type { Adapter, LoraPair } from '../model/adapter.ts';
import type { AdamWState } from '../train/adamw.ts';
import type { HeldOutPoint, LossPoint, MergeRecord } from './engine-protocol.ts';
import { momentsProblem, storedAdapterProblem } from './guard.ts';
import { utf8DecodeStrict, utf8Encode } from '../io/text.ts';
import { PrivacyBudget, type PrivacyBudgetState } from '../privacy/budget.ts';
import { ledgerMatches } from '../privacy/peer-privacy.ts';
import type { PrivacyConfig } from '../privacy/config.ts';

const MAGIC = [0x53, 0x57, 0x43, 0x4b];
export const CHECKPOINT_FORMAT_VERSION = 1;
const OUTER_MOMENTUM_PREFIX = 'outer-momentum';

export interface CheckpointCounters {
  step: number;
  samplesSeen: number;
  tokensSeen: number;
  merges: number;
  publishedVersion: number;
  donatedMs: number;
  adaptersAccepted: number;
}

export interface PeerCheckpoint {
  wireRunId: string;
  peerKey: string;
  slot: number;
  savedAtMs: number;
  counters: CheckpointCounters;
  adapter: Adapter;
  /**
   * The round anchor: the adapter this peer's current local round started from (after its last merge), the public
   * point that an outer optimiser steps from and that differential privacy measures an update against. Checkpoints of
   * earlier builds have none; the peer then starts its next round from the restored adapter.
   */
  anchor?: Adapter;
  /**
   * The outer optimiser's momentum buffer (core/outer), adapter-shaped; absent when the run's optimiser keeps none
   * or has not stepped yet (the zero buffer).
   */
  outerMomentum?: Adapter;
  optimizer: AdamWState;
  lossHistory: LossPoint[];
  heldOutHistory: HeldOutPoint[];
  baseHeldOut: HeldOutPoint | null;
  mergeHistory: MergeRecord[];
  adoptedFrom: { peerId: string; step: number } | null;
  /**
   * The privacy ledger of a run with differential privacy: how many releases the volunteer's records have paid for.
   * Written before each release leaves the peer, so a reload never lowers the spend; absent in runs without DP.
   */
  privacyLedger?: PrivacyBudgetState;
}

export class CheckpointFormatError extends Error {
  static override readonly name = 'CheckpointFormatError';
  override readonly name = CheckpointFormatError.name;
}

interface TensorEntry {
  name: string;
  length: number;
}

interface Header extends Omit<PeerCheckpoint, 'adapter' | 'anchor' | 'outerMomentum' | 'optimizer'> {
  formatVersion: number;
  adapter: { baseModelId: string; config: Adapter['config']; modules: Array<{ name: string; inDim: number; outDim: number }> };
  optimizerStep: number;
  tensors: TensorEntry[];
}

export function encodeCheckpoint(c: PeerCheckpoint): Uint8Array {
  const tensors: TensorEntry[] = [];
  const blobs: Float32Array[] = [];
  const add = (name: string, data: Float32Array) => {
    tensors.push({ name, length: data.length });
    blobs.push(data);
  };
  const moduleNames = [...c.adapter.modules.keys()].sort();
  for (const name of moduleNames) {
    const p = c.adapter.modules.get(name)!;
    add(`adapter/${name}/a`, p.a);
    add(`adapter/${name}/b`, p.b);
  }
  const addLike = (what: string, prefix: string, like: Adapter) => {
    for (const name of moduleNames) {
      const p = like.modules.get(name);
      if (!p || p.a.length !== c.adapter.modules.get(name)!.a.length || p.b.length !== c.adapter.modules.get(name)!.b.length) {
        throw new CheckpointFormatError(`the ${what}'s module ${name} does not match the adapter's shape`);
      }
      add(`${prefix}/${name}/a`, p.a);
      add(`${prefix}/${name}/b`, p.b);
    }
  };
  if (c.anchor) addLike('round anchor', 'anchor', c.anchor);
  if (c.outerMomentum) addLike('outer momentum', OUTER_MOMENTUM_PREFIX, c.outerMomentum);
  for (const name of Object.keys(c.optimizer.moments).sort()) {
    add(`adam/${name}/m`, c.optimizer.moments[name].m);
    add(`adam/${name}/v`, c.optimizer.moments[name].v);
  }
  const { adapter, anchor: _anchor, outerMomentum: _momentum, optimizer, ...rest } = c;
  const header: Header = {
    ...rest,
    formatVersion: CHECKPOINT_FORMAT_VERSION,
    adapter: {
      baseModelId: adapter.baseModelId,
      config: adapter.config,
      modules: moduleNames.map((name) => ({ name, inDim: adapter.modules.get(name)!.inDim, outDim: adapter.modules.get(name)!.outDim })),
    },
    optimizerStep: optimizer.step,
    tensors,
  };
  const headerBytes = utf8Encode(JSON.stringify(header));
  const floatCount = blobs.reduce((n, b) => n + b.length, 0);
  // The float section starts on a 4-byte boundary so it can be viewed as a Float32Array without copying.
  const headerEnd = 8 + headerBytes.length;
  const floatStart = Math.ceil(headerEnd / 4) * 4;
  const out = new Uint8Array(floatStart + floatCount * 4);
  out.set(MAGIC, 0);
  new DataView(out.buffer).setUint32(4, headerBytes.length, true);
  out.set(headerBytes, 8);
  const view = new DataView(out.buffer);
  let at = floatStart;
  for (const blob of blobs) {
    for (let i = 0; i < blob.length; i++, at += 4) view.setFloat32(at, blob[i], true);
  }
  return out;
}

export function decodeCheckpoint(bytes: Uint8Array): PeerCheckpoint {
  if (bytes.length < 8 || MAGIC.some((m, i) => bytes[i] !== m)) throw new CheckpointFormatError('not a Swarm checkpoint (bad magic)');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = view.getUint32(4, true);
  if (8 + headerLength > bytes.length) throw new CheckpointFormatError(`checkpoint header of ${headerLength} bytes runs past the end (${bytes.length} bytes)`);
  let header: Header;
  try {
    header = JSON.parse(utf8DecodeStrict(bytes.subarray(8, 8 + headerLength))) as Header;
  } catch (error) {
    throw new CheckpointFormatError(`checkpoint header is not valid JSON: ${(error as Error).message}`);
  }
  const shapeProblem = headerProblem(header);
  if (shapeProblem) throw new CheckpointFormatError(`checkpoint header is damaged: ${shapeProblem}`);
  if (header.formatVersion !== CHECKPOINT_FORMAT_VERSION) {
    throw new CheckpointFormatError(`checkpoint format version ${header.formatVersion}; this build reads ${CHECKPOINT_FORMAT_VERSION}`);
  }
  const floatStart = Math.ceil((8 + headerLength) / 4) * 4;
  const floatCount = header.tensors.reduce((n, t) => n + t.length, 0);
  if (floatStart + floatCount * 4 !== bytes.length) {
    throw new CheckpointFormatError(`checkpoint holds ${bytes.length} bytes, header describes ${floatStart + floatCount * 4}`);
  }
  const tensors = new Map<string, Float32Array>();
  let at = floatStart;
  for (const t of header.tensors) {
    const data = new Float32Array(t.length);
    for (let i = 0; i < t.length; i++, at += 4) data[i] = view.getFloat32(at, true);
    tensors.set(t.name, data);
  }
  const take = (name: string, length: number): Float32Array => {
    const data = tensors.get(name);
    if (!data || data.length !== length) throw new CheckpointFormatError(`checkpoint tensor '${name}' is missing or has the wrong length`);
    return data;
  };
  const r = header.adapter.config.r;
  const modules = new Map<string, LoraPair>();
  for (const m of header.adapter.modules) {
    modules.set(m.name, { a: take(`adapter/${m.name}/a`, r * m.inDim), b: take(`adapter/${m.name}/b`, m.outDim * r), inDim: m.inDim, outDim: m.outDim });
  }
  const adapterLike = (prefix: string): Adapter | undefined => {
    if (!header.tensors.some((t) => t.name.startsWith(`${prefix}/`))) return undefined;
    const likeModules = new Map<string, LoraPair>();
    for (const m of header.adapter.modules) {
      likeModules.set(m.name, { a: take(`${prefix}/${m.name}/a`, r * m.inDim), b: take(`${prefix}/${m.name}/b`, m.outDim * r), inDim: m.inDim, outDim: m.outDim });
    }
    return { baseModelId: header.adapter.baseModelId, config: header.adapter.config, modules: likeModules };
  };
  const anchor = adapterLike('anchor');
  const outerMomentum = adapterLike(OUTER_MOMENTUM_PREFIX);
  const moments: AdamWState['moments'] = {};
  for (const t of header.tensors) {
    const match = /^adam\/(.+)\/m$/.exec(t.name);
    if (match) moments[match[1]] = { m: tensors.get(t.name)!, v: take(`adam/${match[1]}/v`, t.length) };
  }
  const { formatVersion: _v, adapter, optimizerStep, tensors: _t, privacyLedger, ...rest } = header;
  let ledger: PrivacyBudgetState | undefined;
  if (privacyLedger !== undefined) {
    try {
      ledger = PrivacyBudget.fromJSON(privacyLedger).toJSON();
    } catch (error) {
      throw new CheckpointFormatError(`checkpoint privacy ledger is damaged: ${(error as Error).message}`);
    }
  }
  return {
    ...rest,
    adapter: { baseModelId: adapter.baseModelId, config: adapter.config, modules },
    ...(anchor ? { anchor } : {}),
    ...(outerMomentum ? { outerMomentum } : {}),
    optimizer: { step: optimizerStep, moments },
    ...(ledger ? { privacyLedger: ledger } : {}),
  };
}

const isCount = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v >= 0;

/** What is missing or mistyped in a decoded header, or null (so damage is a named error, never a TypeError). */
function headerProblem(h: unknown): string | null {
  if (typeof h !== 'object' || h === null || Array.isArray(h)) return 'not an object';
  const header = h as Record<string, unknown>;
  if (typeof header.wireRunId !== 'string' || typeof header.peerKey !== 'string') return 'run or peer key missing';
  if (typeof header.savedAtMs !== 'number' || !isCount(header.optimizerStep)) return 'time or optimiser step missing';
  const counters = header.counters as Record<string, unknown> | undefined;
  const counterNames = ['step', 'samplesSeen', 'tokensSeen', 'merges', 'publishedVersion', 'donatedMs', 'adaptersAccepted'];
  if (typeof counters !== 'object' || counters === null || !counterNames.every((k) => isCount(counters[k]))) return 'counters missing or negative';
  if (!Array.isArray(header.tensors) || !header.tensors.every((t) => typeof t?.name === 'string' && isCount(t?.length))) return 'tensor list malformed';
  const adapter = header.adapter as Record<string, unknown> | undefined;
  const config = adapter?.config as Record<string, unknown> | undefined;
  if (typeof adapter?.baseModelId !== 'string' || typeof config !== 'object' || config === null) return 'adapter description missing';
  if (!isCount(config.r) || (config.r as number) < 1 || typeof config.alpha !== 'number' || !Number.isFinite(config.alpha)) return 'LoRA rank or alpha invalid';
  if (!Array.isArray(adapter.modules) || !adapter.modules.every((m) => typeof m?.name === 'string' && isCount(m?.inDim) && isCount(m?.outDim))) return 'adapter modules malformed';
  for (const list of ['lossHistory', 'heldOutHistory', 'mergeHistory']) if (!Array.isArray(header[list])) return `${list} missing`;
  return null;
}

/** The two keys a peer's checkpoint alternates between. */
export function checkpointSlotKeys(key: string): [string, string] {
  return [`${key}#0`, `${key}#1`];
}

export type CheckpointVerdict = { ok: true; checkpoint: PeerCheckpoint } | { ok: false; reason: string };

/**
 * Whether a decoded checkpoint may be restored into this peer: the same run, the same adapter schema (rank, alpha,
 * modules and their shapes) as the model it is loaded into, every value finite and within the adapter bounds (the outer
 * momentum buffer too), in a run with differential privacy a ledger of the run's privacy setting and a round anchor,
 * and with `frozenA` the adapter and anchor holding the given adapter's A bit for bit: a damaged store must not move a
 * factor the run keeps frozen.
 */
export function validateCheckpoint(c: PeerCheckpoint, expected: { wireRunId: string; adapter: Adapter; privacy?: PrivacyConfig; frozenA?: boolean }): CheckpointVerdict {
  if (c.wireRunId !== expected.wireRunId) return { ok: false, reason: `it belongs to run ${c.wireRunId}, this tab is in ${expected.wireRunId}` };
  if (expected.privacy) {
    // Without its ledger the spend would restart at zero, and without the anchor the round could not restart from a public point.
    if (!c.privacyLedger) return { ok: false, reason: 'it has no privacy ledger, which this run with differential privacy needs' };
    if (!ledgerMatches(c.privacyLedger, expected.privacy)) return { ok: false, reason: 'its privacy ledger is for another privacy setting than this run\'s' };
    if (!c.anchor) return { ok: false, reason: 'it has no round anchor, which this run with differential privacy needs' };
  } else if (c.privacyLedger) {
    return { ok: false, reason: 'it carries a privacy ledger, but this run does not use differential privacy' };
  }
  const want = expected.adapter;
  if (c.adapter.config.r !== want.config.r || c.adapter.config.alpha !== want.config.alpha) {
    return { ok: false, reason: `its LoRA rank/alpha ${c.adapter.config.r}/${c.adapter.config.alpha} differ from the run's ${want.config.r}/${want.config.alpha}` };
  }
  if (c.adapter.modules.size !== want.modules.size) return { ok: false, reason: `it has ${c.adapter.modules.size} adapter modules, the run ${want.modules.size}` };
  for (const [name, pair] of want.modules) {
    const got = c.adapter.modules.get(name);
    if (!got || got.inDim !== pair.inDim || got.outDim !== pair.outDim) return { ok: false, reason: `adapter module ${name} is missing or has another shape` };
  }
  const problem =
    storedAdapterProblem(c.adapter) ??
    (c.anchor ? storedAdapterProblem(c.anchor) : null) ??
    (c.outerMomentum ? outerMomentumProblem(c.outerMomentum) : null) ??
    momentsProblem(c.optimizer);
  if (problem) return { ok: false, reason: problem };
  if (expected.frozenA) {
    for (const [what, held] of [['adapter', c.adapter], ['round anchor', c.anchor]] as const) {
      if (held && !sameA(held, want)) return { ok: false, reason: `its ${what}'s LoRA A is not the run's frozen A` };
    }
  }
  return { ok: true, checkpoint: c };
}

function sameA(x: Adapter, y: Adapter): boolean {
  for (const [name, p] of y.modules) {
    const a = x.modules.get(name)?.a;
    if (!a || a.length !== p.a.length || a.some((v, i) => !Object.is(v, p.a[i]))) return false;
  }
  return true;
}

/** The momentum buffer is bounded like a stored adapter (a sum of pseudo-gradients, each a difference of two). */
function outerMomentumProblem(momentum: Adapter): string | null {
  const problem = storedAdapterProblem(momentum);
  return problem ? `outer momentum: ${problem}` : null;
}

/** Where checkpoints and local text are kept: IndexedDB in the browser, a Map in tests. */
export interface KeyValueStore {
  get(key: string): Promise<Uint8Array | undefined>;
  put(key: string, value: Uint8Array): Promise<void>;
  delete(key: string): Promise<void>;
}

export class StorageFullError extends Error {
  static override readonly name = 'StorageFullError';
  override readonly name = StorageFullError.name;
}

export function memoryStore(): KeyValueStore & { keys(): string[] } {
  const map = new Map<string, Uint8Array>();
  return {
    async get(key) {
      return map.get(key)?.slice();
    },
    async put(key, value) {
      map.set(key, value.slice());
    },
    async delete(key) {
      map.delete(key);
    },
    keys: () => [...map.keys()],
  };
}
