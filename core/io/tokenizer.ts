/**
 * Tokenizers: the byte-level one (vocab 256) used by Swarm's default model, and Hugging Face `tokenizer.json`
 * files (byte-level BPE for real GPT-2 checkpoints) through @huggingface/tokenizers.
 */
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import type { Gpt2Config } from '../model/config.ts';
import { CheckpointFetchError, type FileSource } from './source.ts';
import { utf8Decode, utf8DecodeStrict, utf8Encode } from './text.ts';

export interface Tokenizer {
  /** Ids are in [0, vocabSize). */
  readonly vocabSize: number;
  encode(text: string): number[];
  decode(ids: number[]): string;
}

export class TokenizerError extends Error {
  static override readonly name = 'TokenizerError';
  override readonly name = TokenizerError.name;
}

/** One token per UTF-8 byte. Decoding never throws: malformed or cut-off sequences become U+FFFD. */
export class ByteTokenizer implements Tokenizer {
  readonly vocabSize = 256;

  encode(text: string): number[] {
    return Array.from(utf8Encode(text));
  }

  decode(ids: number[]): string {
    const bytes = new Uint8Array(ids.length);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!Number.isInteger(id) || id < 0 || id > 255) throw new TokenizerError(`byte token id must be an integer in [0, 255], got ${id}`);
      bytes[i] = id;
    }
    return utf8Decode(bytes);
  }
}

class HfTokenizerAdapter implements Tokenizer {
  constructor(private readonly inner: HfTokenizer, readonly vocabSize: number) {}

  encode(text: string): number[] {
    // Training text is a raw stream: no BOS/EOS insertion by a post-processor.
    return this.inner.encode(text, { add_special_tokens: false }).ids;
  }

  decode(ids: number[]): string {
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) throw new TokenizerError(`token id ${id} is outside the vocabulary [0, ${this.vocabSize})`);
    }
    return this.inner.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  }
}

/** Builds a tokenizer from a parsed HF `tokenizer.json` (and optionally `tokenizer_config.json`). */
export async function loadHfTokenizer(tokenizerJson: object, tokenizerConfig: object = {}): Promise<Tokenizer> {
  const model = (tokenizerJson as { model?: { type?: unknown; vocab?: unknown } }).model;
  if (typeof model !== 'object' || model === null || typeof model.vocab !== 'object' || model.vocab === null) {
    throw new TokenizerError('tokenizer.json has no model.vocab; is this a Hugging Face tokenizer.json file?');
  }
  let inner: HfTokenizer;
  try {
    inner = new HfTokenizer(tokenizerJson, tokenizerConfig);
  } catch (error) {
    throw new TokenizerError(`tokenizer.json could not be loaded: ${(error as Error)?.message ?? String(error)}`);
  }
  let maxId = -1;
  for (const id of inner.get_vocab(true).values()) if (id > maxId) maxId = id;
  if (maxId < 0) throw new TokenizerError('tokenizer.json has an empty vocabulary');
  return new HfTokenizerAdapter(inner, maxId + 1);
}

function parseJsonFile(bytes: Uint8Array, name: string): object {
  try {
    const value = JSON.parse(utf8DecodeStrict(bytes));
    if (typeof value !== 'object' || value === null) throw new Error('not a JSON object');
    return value;
  } catch (error) {
    throw new TokenizerError(`${name} is not valid JSON: ${(error as Error).message}`);
  }
}

async function readOptional(source: FileSource, name: string): Promise<Uint8Array | null> {
  try {
    return await source.read(name);
  } catch (error) {
    // Absent (404 or not among the files) means "not provided"; any other failure is real.
    if (error instanceof CheckpointFetchError && (error.status === undefined || error.status === 404)) return null;
    throw error;
  }
}

/**
 * The tokenizer that goes with a checkpoint: its `tokenizer.json` when the source has one, else the byte
 * tokenizer for a vocab-256 model. A model with another vocabulary and no tokenizer.json is refused.
 */
export async function loadCheckpointTokenizer(source: FileSource, config: Gpt2Config): Promise<Tokenizer> {
  const tokenizerBytes = await readOptional(source, 'tokenizer.json');
  if (!tokenizerBytes) {
    if (config.vocabSize === 256) return new ByteTokenizer();
    throw new TokenizerError(`${source.describe} has no tokenizer.json and its vocabulary (${config.vocabSize}) is not the 256-byte one`);
  }
  const configBytes = await readOptional(source, 'tokenizer_config.json');
  const tokenizer = await loadHfTokenizer(
    parseJsonFile(tokenizerBytes, 'tokenizer.json'),
    configBytes ? parseJsonFile(configBytes, 'tokenizer_config.json') : {},
  );
  if (tokenizer.vocabSize > config.vocabSize) {
    throw new TokenizerError(`tokenizer.json has ${tokenizer.vocabSize} tokens but the model's vocabulary is ${config.vocabSize}`);
  }
  return tokenizer;
}
