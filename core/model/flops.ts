/**
 * Floating-point operations of one LoRA training step of Gpt2Model, counted from the model config, for the
 * benchmark's roofline (effective GFLOP/s = these FLOPs / step time).
 *
 * What is counted: 2·m·k·n for every matrix product of shape [m, k]·[k, n] the step performs (batched products
 * count once per batch entry):
 * - forward: every block's four Conv1D products, their LoRA products x·Aᵀ and (x·Aᵀ)·Bᵀ, the attention products
 *   Q·Kᵀ and P·V, and the tied LM head h·wteᵀ;
 * - backward, as tfjs' tape runs it: a product's operand gets a gradient only when it depends on a trainable
 *   variable or is one. Base weights are frozen, so they never get one; an activation does once it lies downstream
 *   of the first LoRA module. With LoRA on `attn.c_attn`, that excludes exactly block 0's input to c_attn: its
 *   base product and its x·Aᵀ get no input gradient. LoRA factors get theirs (dA, dB), and so do the attention
 *   operands Q, K, P, V and the head's input.
 *
 * Not counted: element-wise work (layer norms, GELU, softmax, the loss, AdamW, clipping) and transposes. These are
 * O(N·D) against the products' O(N·D²), so they are a few percent of the FLOPs but can be much more of the time:
 * the benchmark's per-op profile shows how much.
 */
import type { Gpt2Config } from './config.ts';
import { loraModuleDims } from './config.ts';

export interface StepShape {
  batch: number;
  seqLen: number;
  /** LoRA rank, and the modules it is attached to (every block). */
  rank: number;
  targetModules: readonly string[];
}

export interface StepFlops {
  forward: number;
  backward: number;
  total: number;
}

/** Conv1D modules in the order a block runs them. */
const BLOCK_MODULES = ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj'] as const;

export function loraTrainingStepFlops(config: Gpt2Config, shape: StepShape): StepFlops {
  const { batch, seqLen: t, rank: r } = shape;
  const n = batch * t;
  const { nEmbd: d, vocabSize: v } = config;
  const product = (m: number, k: number, cols: number) => 2 * m * k * cols;
  let forward = 0;
  let backward = 0;
  /** Whether the activations flowing here depend on a trainable variable (so their gradient is computed). */
  let gradFlows = false;
  const linear = (module: string) => {
    const { inDim, outDim } = loraModuleDims(config, module);
    const inputNeedsGrad = gradFlows;
    forward += product(n, inDim, outDim);
    if (inputNeedsGrad) backward += product(n, outDim, inDim); // dx = dy·Wᵀ
    if (shape.targetModules.includes(module)) {
      forward += product(n, inDim, r) + product(n, r, outDim); // down = x·Aᵀ, up = down·Bᵀ
      backward += product(n, outDim, r); // d(down) = dy·B
      backward += product(outDim, n, r); // dB = dyᵀ·down
      backward += product(r, n, inDim); // dA = d(down)ᵀ·x
      if (inputNeedsGrad) backward += product(n, r, inDim); // dx += d(down)·A
      gradFlows = true;
    }
  };
  for (let layer = 0; layer < config.nLayer; layer++) {
    for (const module of BLOCK_MODULES) {
      linear(module);
      if (module === 'attn.c_attn') {
        // Q·Kᵀ: [T, E]·[E, T] per batch and head; P·V: [T, T]·[T, E]. Summed over heads, E becomes D.
        const attention = 2 * product(t, d, t) * batch;
        forward += attention;
        if (gradFlows) backward += 2 * attention; // both operands of both products
      }
    }
  }
  forward += product(n, d, v); // tied head h·wteᵀ
  if (gradFlows) backward += product(n, v, d); // dh = dlogits·wte
  return { forward, backward, total: forward + backward };
}
