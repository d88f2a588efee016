/** The default base model every run uses unless its manifest names another. */
import type { Gpt2Config } from './config.ts';

export const DEFAULT_MODEL_ID = 'swarm-brown-byte-gpt2';

/** Where the app serves it (public/models/<id>/ in the repository). */
export const DEFAULT_MODEL_PATH = `/models/${DEFAULT_MODEL_ID}/`;

/** Sized to pretrain on a 2-core machine in about an hour with the WASM backend (cli/pretrain.ts). */
export const DEFAULT_MODEL_CONFIG: Gpt2Config = {
  nEmbd: 128,
  nLayer: 4,
  nHead: 4,
  nPositions: 128,
  vocabSize: 256,
  nInner: 512,
  layerNormEpsilon: 1e-5,
};

/** openai-community/gpt2's shape (124 M parameters): what a real model costs, for the training benchmark. */
export const GPT2_SMALL_CONFIG: Gpt2Config = {
  nEmbd: 768,
  nLayer: 12,
  nHead: 12,
  nPositions: 1024,
  vocabSize: 50257,
  nInner: 3072,
  layerNormEpsilon: 1e-5,
};
