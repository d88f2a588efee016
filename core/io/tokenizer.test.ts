import { describe, expect, it } from 'vitest';
import { filesSource } from './source.ts';
import { ByteTokenizer, loadCheckpointTokenizer, loadHfTokenizer, TokenizerError } from './tokenizer.ts';

describe('ByteTokenizer', () => {
  const tok = new ByteTokenizer();

  it('encodes UTF-8 bytes', () => {
    expect(tok.vocabSize).toBe(256);
    expect(tok.encode('Hi é €')).toEqual([0x48, 0x69, 0x20, 0xc3, 0xa9, 0x20, 0xe2, 0x82, 0xac]);
    expect(tok.decode([0x48, 0x69, 0x20, 0xc3, 0xa9, 0x20, 0xe2, 0x82, 0xac])).toBe('Hi é €');
  });

  it('decodes cut-off and malformed UTF-8 to U+FFFD instead of throwing', () => {
    expect(tok.decode([0x61, 0xe2, 0x82])).toBe('a\ufffd');
    expect(tok.decode([0xff, 0x62])).toBe('\ufffdb');
  });

  it('refuses ids outside a byte', () => {
    expect(() => tok.decode([256])).toThrow(TokenizerError);
  });
});

/** GPT-2's byte → printable-character table, written from its definition (printable Latin-1 stays, the rest moves to 256+). */
function byteToUnicode(): string[] {
  const keep = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const table: string[] = [];
  let next = 256;
  for (let b = 0; b < 256; b++) table[b] = String.fromCodePoint(keep(b) ? b : next++);
  return table;
}

/** A GPT-2-style byte-level BPE tokenizer.json: 256 byte symbols (id = byte), seven merges, one special token. */
function tinyGpt2Tokenizer() {
  const table = byteToUnicode();
  const vocab: Record<string, number> = {};
  table.forEach((symbol, byte) => (vocab[symbol] = byte));
  const merges = ['h e', 'l l', 'he ll', 'hell o', 'Ġ w', 'o r', 'Ġw or'];
  merges.forEach((merge, i) => (vocab[merge.replace(' ', '')] = 256 + i));
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [{ id: 263, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: true, special: true }],
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: { ...byteLevel, trim_offsets: false },
    decoder: byteLevel,
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, vocab, merges },
  };
}

describe('loadHfTokenizer (byte-level BPE)', () => {
  it('applies merges by rank after ByteLevel pre-tokenisation', async () => {
    const tok = await loadHfTokenizer(tinyGpt2Tokenizer(), { model_max_length: 1024 });
    expect(tok.vocabSize).toBe(264);
    // "hello" → h e l l o → he l l o → he ll o → hell o → hello (259).
    // " world" → Ġ w o r l d → Ġw o r l d → Ġw or l d → Ġwor l d → [262, 'l' = 108, 'd' = 100].
    expect(tok.encode('hello world')).toEqual([259, 262, 108, 100]);
    // "hell" has no "hell" + "o": he ll → hell (258); " w" alone → Ġw (260).
    expect(tok.encode('hell w')).toEqual([258, 260]);
    // Non-ASCII goes through bytes: é = C3 A9, both printable Latin-1 so their own symbols.
    expect(tok.encode('é')).toEqual([0xc3, 0xa9]);
    // A newline (byte 10) maps to the moved symbol U+010A, which has id 10 here.
    expect(tok.encode('\n')).toEqual([10]);
    expect(tok.encode('hi<|endoftext|>')).toEqual([104, 105, 263]);
  });

  it('decodes back to the original text', async () => {
    const tok = await loadHfTokenizer(tinyGpt2Tokenizer());
    expect(tok.decode([259, 262, 108, 100])).toBe('hello world');
    expect(tok.decode([0xc3, 0xa9, 10])).toBe('é\n');
    expect(() => tok.decode([264])).toThrow(TokenizerError);
  });

  it('refuses a file that is not a tokenizer.json', async () => {
    await expect(loadHfTokenizer({ hello: 'world' })).rejects.toThrow(TokenizerError);
  });
});

describe('loadCheckpointTokenizer', () => {
  const byteModel = { nEmbd: 4, nLayer: 1, nHead: 1, nPositions: 8, vocabSize: 256, nInner: 16, layerNormEpsilon: 1e-5 };

  it('uses the byte tokenizer for a vocab-256 model without tokenizer.json', async () => {
    const tok = await loadCheckpointTokenizer(filesSource(new Map()), byteModel);
    expect(tok).toBeInstanceOf(ByteTokenizer);
  });

  it('uses tokenizer.json when the checkpoint has one', async () => {
    const files = new Map([['tokenizer.json', Buffer.from(JSON.stringify(tinyGpt2Tokenizer()))]]);
    const tok = await loadCheckpointTokenizer(filesSource(files), { ...byteModel, vocabSize: 264 });
    expect(tok.encode('hello')).toEqual([259]);
  });

  it('refuses a non-byte model without tokenizer.json, and a tokenizer bigger than the model vocabulary', async () => {
    await expect(loadCheckpointTokenizer(filesSource(new Map()), { ...byteModel, vocabSize: 50257 })).rejects.toThrow(/no tokenizer\.json/);
    const files = new Map([['tokenizer.json', Buffer.from(JSON.stringify(tinyGpt2Tokenizer()))]]);
    await expect(loadCheckpointTokenizer(filesSource(files), byteModel)).rejects.toThrow(/264 tokens but the model's vocabulary is 256/);
  });
});
