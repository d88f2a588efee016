/** Per-sequence scores from the model for the privacy measurements (tfjs; kept out of the pure accountant). */
import * as tf from '@tensorflow/tfjs';
import type { Gpt2Model } from '../model/gpt2.ts';

/**
 * For each sequence (all of one length L), the summed negative log-likelihood in nats of bytes from..L−1 given
 * everything before them: the log-perplexity of "The Secret Sharer" when from..L−1 is the secret, the record's
 * loss when from = 1. Runs in batches of `batchSize` sequences.
 */
export async function sequenceNll(model: Gpt2Model, sequences: readonly Uint8Array[], from: number, batchSize = 64): Promise<number[]> {
  if (sequences.length === 0) return [];
  const length = sequences[0].length;
  if (sequences.some((s) => s.length !== length)) throw new RangeError('sequenceNll: every sequence must have the same length');
  if (!(from >= 1 && from < length)) throw new RangeError(`sequenceNll: scored positions must start in 1..${length - 1}, got ${from}`);
  const vocab = model.config.vocabSize;
  const out: number[] = [];
  for (let start = 0; start < sequences.length; start += batchSize) {
    const batch = sequences.slice(start, start + batchSize);
    const inputs = new Int32Array(batch.length * (length - 1));
    const targets = new Int32Array(batch.length * (length - from));
    batch.forEach((s, b) => {
      for (let t = 0; t < length - 1; t++) inputs[b * (length - 1) + t] = s[t];
      for (let t = from; t < length; t++) targets[b * (length - from) + (t - from)] = s[t];
    });
    const nll = tf.tidy(() => {
      const logits = model.logits(tf.tensor2d(inputs, [batch.length, length - 1], 'int32'));
      // Position t − 1 predicts byte t.
      const scored = tf.slice(logits, [0, from - 1, 0], [batch.length, length - from, vocab]);
      const logProbs = tf.logSoftmax(scored);
      const picked = tf.sum(tf.mul(logProbs, tf.cast(tf.oneHot(tf.tensor2d(targets, [batch.length, length - from], 'int32'), vocab), 'float32')), 2);
      return tf.neg(tf.sum(picked, 1));
    });
    out.push(...((await nll.data()) as Float32Array));
    nll.dispose();
  }
  return out;
}
