import { describe, expect, it } from 'vitest';
import type { Gpt2Config } from './config.ts';
import { loraTrainingStepFlops } from './flops.ts';

// One block, D = 2, F = 4, V = 3, one head; batch 1 × T = 2 tokens (N = 2), rank 1. Each product [m,k]·[k,n] is 2mkn.
const TINY: Gpt2Config = { nEmbd: 2, nLayer: 1, nHead: 1, nPositions: 4, vocabSize: 3, nInner: 4, layerNormEpsilon: 1e-5 };
const ALL = ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj'];

describe('loraTrainingStepFlops', () => {
  it('counts a tiny model with LoRA on every module by hand', () => {
    // Forward: c_attn 2·2·2·6 = 48, its LoRA 2·2·2·1 + 2·2·1·6 = 32; Q·Kᵀ and P·V 2·(2·2·2·2) = 32;
    // c_proj 16 + LoRA 16; c_fc 32 + LoRA 24; mlp.c_proj 32 + LoRA 24; head 2·2·2·3 = 24. Sum 280.
    // Backward: c_attn's input needs no gradient, so only dDown 24, dB 24, dA 8 = 56; attention 2·32 = 64;
    // c_proj dx 16 + dDown 8 + dB 8 + dA 8 + LoRA dx 8 = 48; c_fc 32 + 16 + 16 + 8 + 8 = 80;
    // mlp.c_proj 32 + 8 + 8 + 16 + 16 = 80; head dh 24. Sum 352.
    expect(loraTrainingStepFlops(TINY, { batch: 1, seqLen: 2, rank: 1, targetModules: ALL })).toEqual({ forward: 280, backward: 352, total: 632 });
  });

  it('computes no gradients upstream of the first LoRA module', () => {
    // Only mlp.c_proj trains: forward = base 48 + 32 + 16 + 32 + 32 + head 24 = 184, plus its LoRA 16 + 8 = 208;
    // backward = its dDown 8 + dB 8 + dA 16 (no dx: its input depends on nothing trainable) + head dh 24 = 56.
    expect(loraTrainingStepFlops(TINY, { batch: 1, seqLen: 2, rank: 1, targetModules: ['mlp.c_proj'] })).toEqual({ forward: 208, backward: 56, total: 264 });
  });

  it('grows linearly with the batch', () => {
    const one = loraTrainingStepFlops(TINY, { batch: 1, seqLen: 2, rank: 1, targetModules: ALL }).total;
    expect(loraTrainingStepFlops(TINY, { batch: 3, seqLen: 2, rank: 1, targetModules: ALL }).total).toBe(3 * one);
  });
});
