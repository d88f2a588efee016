/** Reading the prepared Brown corpus through an injected reader (fs in Node, fetch in the browser). */
import type { BrownIndex } from './brown.ts';
import { utf8Encode } from '../io/text.ts';
import { assignMixture, type PartitionConfig } from './partition.ts';
import type { MixtureSource } from './batches.ts';

export type TextReader = (relativePath: string) => Promise<string>;

/**
 * - train: what fine-tuning draws its batches from (the prepared training text without the validation blocks);
 * - validation: blocks of the prepared training text that no training batch draws, for tuning learning rates
 *   without looking at the reported held-out split;
 * - heldout: the reported held-out split (the last tenth of every document, see brown.ts);
 * - train+validation: the whole prepared training text (pretraining of the base model, which reads informative
 *   genres only and never validates on them; reading it whole keeps the committed base model reproducible).
 */
export type Split = 'train' | 'validation' | 'heldout' | 'train+validation';

/** Validation takes every VALIDATION_EVERY-th block of VALIDATION_BLOCK bytes of the training text (5%). */
export const VALIDATION_BLOCK = 2048;
export const VALIDATION_EVERY = 20;

/**
 * Cuts the validation blocks out of a genre's training text: block k (of VALIDATION_BLOCK bytes) is validation when
 * k mod VALIDATION_EVERY = VALIDATION_EVERY − 1. Blocks spread over the whole text, so validation covers every part
 * of the genre (as held-out covers every document); each part is the concatenation of its blocks.
 */
export function carveValidation(bytes: Uint8Array): { train: Uint8Array; validation: Uint8Array } {
  const isValidation = (k: number) => k % VALIDATION_EVERY === VALIDATION_EVERY - 1;
  const blocks = Array.from({ length: Math.ceil(bytes.length / VALIDATION_BLOCK) }, (_, k) => bytes.subarray(k * VALIDATION_BLOCK, (k + 1) * VALIDATION_BLOCK));
  const join = (parts: Uint8Array[]) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  };
  return { train: join(blocks.filter((_, k) => !isValidation(k))), validation: join(blocks.filter((_, k) => isValidation(k))) };
}

export class PreparedCorpus {
  private readonly cache = new Map<string, Uint8Array>();
  private constructor(
    private readonly read: TextReader,
    readonly index: BrownIndex,
  ) {}

  static async open(read: TextReader): Promise<PreparedCorpus> {
    const index = JSON.parse(await read('index.json')) as BrownIndex;
    return new PreparedCorpus(read, index);
  }

  genreNames(): string[] {
    return this.index.genres.map((g) => g.name);
  }

  /** Bytes of each genre's prepared training text (partition weights; validation is a fixed share of each). */
  trainSizes(): Record<string, number> {
    return Object.fromEntries(this.index.genres.map((g) => [g.name, g.trainBytes]));
  }

  /** UTF-8 bytes of a genre's split: the token ids of the byte-level tokenizer. */
  async bytes(genre: string, split: Split): Promise<Uint8Array> {
    if (!this.index.genres.some((g) => g.name === genre)) {
      throw new RangeError(`PreparedCorpus: unknown genre '${genre}' (known: ${this.genreNames().join(', ')})`);
    }
    const key = `${genre}.${split}`;
    const cached = this.cache.get(key);
    if (cached) return cached;
    if (split === 'train' || split === 'validation') {
      const carved = carveValidation(await this.bytes(genre, 'train+validation'));
      this.cache.set(`${genre}.train`, carved.train);
      this.cache.set(`${genre}.validation`, carved.validation);
      return carved[split];
    }
    const file = split === 'heldout' ? 'heldout' : 'train';
    const bytes = utf8Encode(await this.read(`${genre}.${file}.txt`));
    this.cache.set(key, bytes);
    return bytes;
  }
}

/** What a partition slot trains on: its genre mixture and one training source per genre it draws from. */
export async function slotSources(corpus: PreparedCorpus, partition: PartitionConfig, slot: number, seed: number): Promise<{ mixture: Record<string, number>; sources: MixtureSource[] }> {
  const mixture = assignMixture(partition, slot, seed, corpus.trainSizes());
  return { mixture, sources: await mixtureSources(corpus, mixture) };
}

/** One training source per genre of a mixture with a positive weight. */
export async function mixtureSources(corpus: PreparedCorpus, mixture: Record<string, number>): Promise<MixtureSource[]> {
  const sources: MixtureSource[] = [];
  for (const [genre, weight] of Object.entries(mixture)) {
    if (weight > 0) sources.push({ name: genre, tokens: await corpus.bytes(genre, 'train'), weight });
  }
  return sources;
}
