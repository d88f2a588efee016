/** Held-out evaluation: mean cross-entropy in nats per token and bits per byte. */
import type { Batch } from '../data/batches.ts';
import type { Gpt2Model } from '../model/gpt2.ts';

export interface Evaluation {
  /** Mean next-token loss, nats per token. */
  loss: number;
  /** Bits per byte of text: loss / ln 2 / bytesPerToken. */
  bitsPerByte: number;
  tokens: number;
}

/** `bytesPerToken` is 1 for the byte-level tokenizer, the corpus' mean for a BPE tokenizer. */
export async function evaluate(model: Gpt2Model, batches: Batch[], bytesPerToken = 1): Promise<Evaluation> {
  let total = 0;
  let tokens = 0;
  for (const batch of batches) {
    const loss = model.loss(batch.inputs, batch.targets, batch.batchSize, batch.seqLen);
    const [value] = (await loss.data()) as Float32Array;
    loss.dispose();
    const n = batch.batchSize * batch.seqLen;
    total += value * n;
    tokens += n;
  }
  const loss = total / tokens;
  return { loss, bitsPerByte: loss / Math.LN2 / bytesPerToken, tokens };
}

