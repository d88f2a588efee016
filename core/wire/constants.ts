/**
 * Limits and policy defaults of the wire format. Every cap exists so that a decoder can refuse a hostile
 * declaration (a count, a length, a dimension) before it allocates anything sized by it.
 */

/** First bytes of every adapter payload: ASCII "SWAD" (Swarm adapter). */
export const PAYLOAD_MAGIC = Uint8Array.of(0x53, 0x57, 0x41, 0x44);
/** Version of the binary adapter payload layout written by encodeAdapter. */
export const PAYLOAD_FORMAT_VERSION = 1;
/** Version of the JSON announcement manifest. */
export const ANNOUNCEMENT_FORMAT_VERSION = 1;
/** Version of the JSON run manifest. */
export const RUN_MANIFEST_FORMAT_VERSION = 1;
/** Version of the JSON telemetry report. */
export const TELEMETRY_FORMAT_VERSION = 1;

/** Default cap on a payload a peer will decode (64 MiB: a rank-64 LoRA of GPT-2 small in fp32 is ~19 MiB). */
export const MAX_PAYLOAD_BYTES = 64 * 1024 * 1024;
/** Announcements are gossiped, so they stay small. */
export const MAX_ANNOUNCEMENT_BYTES = 1024;
export const MAX_RUN_MANIFEST_BYTES = 64 * 1024;
export const MAX_TELEMETRY_BYTES = 16 * 1024;

export const MAX_LORA_RANK = 1024;
/** Largest inDim/outDim of a LoRA pair (GPT-2 xl's MLP width is 6400; c_attn's out is 3*1600). */
export const MAX_MODULE_DIM = 65536;
export const MAX_MODULES = 4096;
export const MAX_TARGET_MODULES = 16;
/** Longest module name, model id, etc. inside a payload (each is length-prefixed with one byte). */
export const MAX_NAME_LENGTH = 128;
export const MAX_TELEMETRY_NEIGHBOURS = 64;
/** Caps on the free-form objects (schedule, data partition) of a run manifest. */
export const MAX_JSON_DEPTH = 6;
export const MAX_JSON_ENTRIES = 512;
export const MAX_JSON_STRING_LENGTH = 2048;

/** Identifier syntax. All wire strings are printable ASCII, so no Unicode confusables or normalisation issues. */
export const RUN_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,95}$/;
export const MODEL_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$/;
/** libp2p peer ids as strings: base58btc multihashes (12D3KooW…, Qm…, 16Uiu2…) or base32 CIDs (bafz…). */
export const PEER_ID_PATTERN = /^[A-Za-z0-9]{8,100}$/;
export const MODULE_NAME_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.]{0,127}$/;
export const SHA256_HEX_PATTERN = /^[0-9a-f]{64}$/;
/** core/model/adapter.ts schemaHash(): 32 lowercase hex characters. */
export const SCHEMA_HASH_PATTERN = /^[0-9a-f]{32}$/;
export const BACKEND_PATTERN = /^[a-z0-9-]{1,32}$/;

/** Rejection ledger: a peer whose weighted rejections within the window reach the threshold is disconnected. */
export const REJECTION_WINDOW_MS = 60_000;
export const REJECTION_DISCONNECT_THRESHOLD = 8;
/** Timestamps kept per peer; older ones are dropped first (the window rarely needs more). */
export const REJECTION_HISTORY_PER_PEER = 256;
/** Peers tracked by one ledger; the least recently rejected is forgotten first. */
export const REJECTION_MAX_PEERS = 4096;
