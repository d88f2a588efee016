/**
 * The two ends of a sparse update stream (issue 13, item 4). The engine always publishes a full adapter; the
 * transport turns each publication into either a keyframe (that full payload, in the run's codec) or a sparse
 * delta (sparse-delta.ts), and turns what it receives back into a full adapter for the engine.
 *
 * Sender: keeps a *public copy* of its adapter, exactly what every receiver of its stream reconstructs. A delta is
 * the per-chunk top-k of the residual (current − public copy), int8-quantised; the public copy then advances by
 * exactly the values sent. So the residual is the error feedback: whatever top-k dropped or quantisation rounded
 * away stays in it and is sent in a later round (sum of everything sent + the residual = the total change).
 *
 * Receiver: one reconstructed public copy per sender, with its version. A delta applies only to the version it
 * names; a receiver holding another version (it lost a delivery, or joined between keyframes) refuses it as
 * 'delta-base-mismatch' and waits for the sender's next keyframe, which replaces the copy whatever it held.
 */
import type { Adapter } from '../model/adapter.ts';
import { WireFormatError } from './bytes.ts';
import { decodeAdapter, expectedPayloadBytes, type AdapterShape, type PayloadCodec } from './codec.ts';
import {
  adapterFromFlat,
  applyChunks,
  decodeSparseDelta,
  encodeSparseDelta,
  flattenAdapter,
  isSparseDelta,
  selectTopK,
  sparseLayout,
  SPARSE_MAX_VERSION,
  type SparseConfig,
  type SparseLayout,
} from './sparse-delta.ts';
import { accept, reject, type Verdict } from './verdict.ts';

export interface StreamPublication {
  bytes: Uint8Array;
  keyframe: boolean;
}

export class DeltaSender {
  private publicCopy: Float32Array | null = null;
  private publicVersion = 0;
  private layout: SparseLayout | null = null;
  private schema = '';
  private sinceKeyframe = 0;

  constructor(readonly config: SparseConfig) {}

  /**
   * What to send for the full payload `full` (our own engine's, published as `version`): the payload itself when
   * a keyframe is due (the first publication, then every keyframeEvery-th), otherwise a sparse delta against the
   * public copy. Falls back to a keyframe when a delta cannot carry the residual (beyond the format's value bound).
   */
  publish(full: Uint8Array, version: number): StreamPublication {
    const decoded = decodeAdapter(full);
    if (!decoded.ok) throw new WireFormatError(`our own payload does not decode (${decoded.reason}): ${decoded.detail}`);
    const current = flattenAdapter(decoded.adapter);
    const deltaDue = this.publicCopy !== null && this.schema === decoded.schemaHash && this.sinceKeyframe + 1 < this.config.keyframeEvery;
    if (deltaDue && version > this.publicVersion && version <= SPARSE_MAX_VERSION) {
      try {
        const bytes = this.delta(current, version);
        this.sinceKeyframe++;
        return { bytes, keyframe: false };
      } catch (error) {
        if (!(error instanceof WireFormatError)) throw error;
      }
    }
    if (this.schema !== decoded.schemaHash) this.layout = sparseLayout(decoded.adapter, this.config);
    this.schema = decoded.schemaHash;
    // The keyframe's decoded values, not the engine's float32 ones: receivers hold what the codec carried.
    this.publicCopy = current;
    this.publicVersion = version;
    this.sinceKeyframe = 0;
    return { bytes: full, keyframe: true };
  }

  private delta(current: Float32Array, version: number): Uint8Array {
    const layout = this.layout!;
    const chunks = selectTopK(this.residualOf(current), layout);
    const bytes = encodeSparseDelta({ schemaHash: this.schema, baseVersion: this.publicVersion, version, ...chunks }, layout);
    applyChunks(this.publicCopy!, chunks, layout);
    this.publicVersion = version;
    return bytes;
  }

  private residualOf(current: Float32Array): Float64Array {
    const copy = this.publicCopy!;
    const residual = new Float64Array(current.length);
    for (let i = 0; i < current.length; i++) residual[i] = current[i] - copy[i];
    return residual;
  }

  /** current − public copy (flat, the codec's order): what has not been sent yet. Null before the first keyframe. */
  residual(current: Adapter): Float64Array | null {
    return this.publicCopy ? this.residualOf(flattenAdapter(current)) : null;
  }

  /** A copy of the public copy and its version (null before the first keyframe). */
  publicState(): { version: number; values: Float32Array } | null {
    return this.publicCopy ? { version: this.publicVersion, values: this.publicCopy.slice() } : null;
  }
}

export interface DeltaReceiverOptions {
  /** Our own adapter's shape: deltas and keyframes must have its schema, and every size comes from it. */
  template: AdapterShape;
  schemaHash: string;
  /** The run's full-payload codec: keyframes in any other are refused. */
  codec: PayloadCodec;
  config: SparseConfig;
  /**
   * Senders whose public copies are kept (default 16, above the dial policy's 12 neighbours); the least recently
   * updated is forgotten first and must wait for its next keyframe. Each copy is one adapter's values.
   */
  maxStreams?: number;
}

export interface Reconstructed {
  /** A new adapter (the receiver keeps no reference to it): the sender's public copy at `version`. */
  adapter: Adapter;
  version: number;
  keyframe: boolean;
}

export class DeltaReceiver {
  /** Insertion order = least recently updated first, which is the eviction order. */
  private readonly streams = new Map<string, { version: number; copy: Float32Array }>();
  private readonly layout: SparseLayout;
  private readonly keyframeBytes: number;
  private readonly maxStreams: number;

  constructor(private readonly options: DeltaReceiverOptions) {
    this.layout = sparseLayout(options.template, options.config);
    this.keyframeBytes = expectedPayloadBytes(options.template, options.codec);
    this.maxStreams = options.maxStreams ?? 16;
  }

  /** Exact size of every delta of this run (for an announcement check before fetching). */
  get deltaBytes(): number {
    return this.layout.payloadBytes;
  }

  /**
   * Turns what `senderId` sent as `version` (the version its authenticated announcement or delivery names) into
   * the sender's full public copy, or a rejection with its reason. Never throws.
   */
  receive(senderId: string, bytes: Uint8Array, version: number): Verdict<Reconstructed> {
    try {
      // No replay rule of its own: a delta applies only to the version held (so never twice), and a keyframe is a
      // whole adapter, whose version the announcement check and the engine judge as for any full payload (a
      // sender that restarted without its checkpoint numbers its versions anew).
      return isSparseDelta(bytes) ? this.applyDelta(senderId, bytes, version) : this.applyKeyframe(senderId, bytes, version);
    } catch (error) {
      return reject('malformed', `sparse stream update failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  private applyKeyframe(senderId: string, bytes: Uint8Array, version: number): Verdict<Reconstructed> {
    if (bytes.length > this.keyframeBytes) return reject('oversized', `keyframe of ${bytes.length} bytes; the run's schema and codec imply exactly ${this.keyframeBytes}`);
    const decoded = decodeAdapter(bytes, { maxBytes: this.keyframeBytes, expectSchemaHash: this.options.schemaHash });
    if (!decoded.ok) return reject(decoded.reason, decoded.detail);
    if (decoded.codec !== this.options.codec) return reject('malformed', `keyframe is ${decoded.codec}, the run uses ${this.options.codec}`);
    this.store(senderId, version, flattenAdapter(decoded.adapter));
    return accept({ adapter: decoded.adapter, version, keyframe: true });
  }

  private applyDelta(senderId: string, bytes: Uint8Array, version: number): Verdict<Reconstructed> {
    const delta = decodeSparseDelta(bytes, this.options.schemaHash, this.layout);
    if (!delta.ok) return reject(delta.reason, delta.detail);
    if (delta.version !== version) return reject('malformed', `sparse delta makes version ${delta.version}, announced as ${version}`);
    const state = this.streams.get(senderId);
    if (!state) return reject('delta-base-mismatch', `sparse delta to version ${delta.baseVersion}, but no keyframe from this peer yet`);
    if (state.version !== delta.baseVersion) {
      return reject('delta-base-mismatch', `sparse delta to version ${delta.baseVersion}, but this peer holds version ${state.version} (waiting for its next keyframe)`);
    }
    applyChunks(state.copy, delta, this.layout);
    this.store(senderId, version, state.copy);
    return accept({ adapter: adapterFromFlat(this.options.template, state.copy), version, keyframe: false });
  }

  private store(senderId: string, version: number, copy: Float32Array): void {
    this.streams.delete(senderId);
    if (this.streams.size >= this.maxStreams) {
      const oldest = this.streams.keys().next().value;
      if (oldest !== undefined) this.streams.delete(oldest);
    }
    this.streams.set(senderId, { version, copy });
  }

  /** The version held for a sender (undefined: none, it waits for a keyframe). */
  versionOf(senderId: string): number | undefined {
    return this.streams.get(senderId)?.version;
  }

  forget(senderId: string): void {
    this.streams.delete(senderId);
  }
}
