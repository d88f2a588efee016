/** Reading the prepared Brown corpus through an injected reader (fs in Node, fetch in the browser). */
import type { BrownIndex } from './brown.ts';
import { utf8Encode } from '../io/text.ts';

export type TextReader = (relativePath: string) => Promise<string>;

export type Split = 'train' | 'heldout';

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
    const bytes = utf8Encode(await this.read(`${key}.txt`));
    this.cache.set(key, bytes);
    return bytes;
  }
}
