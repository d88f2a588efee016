/**
 * The training step: gradient accumulation over micro-batches, global-norm clipping, AdamW with a
 * warmup + cosine schedule. Each step runs in a memory scope and reads back only the loss, asynchronously.
 */
import * as tf from '@tensorflow/tfjs';
import type { Batch } from '../data/batches.ts';
import type { Gpt2Model } from '../model/gpt2.ts';
import { AdamW, ADAMW_DEFAULTS, type AdamWConfig } from './adamw.ts';
import { learningRateAt, type ScheduleConfig } from './schedule.ts';

export interface TrainerConfig {
  schedule: ScheduleConfig;
  optimizer: AdamWConfig;
  /** Clip the global gradient norm to this value (0 = no clipping). */
  clipNorm: number;
  /** Micro-batches whose gradients are averaged into one update. */
  accumulation: number;
}

export const TRAINER_DEFAULTS: TrainerConfig = {
  schedule: { lr: 2e-3, warmupSteps: 20, totalSteps: 1000, minLrRatio: 0.1 },
  optimizer: ADAMW_DEFAULTS,
  clipNorm: 1,
  accumulation: 1,
};

export interface StepResult {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokens: number;
}

export class Trainer {
  readonly optimizer: AdamW;
  private readonly variables: Map<string, tf.Variable>;

  constructor(
    readonly model: Gpt2Model,
    readonly config: TrainerConfig = TRAINER_DEFAULTS,
  ) {
    if (!Number.isInteger(config.accumulation) || config.accumulation < 1) {
      throw new RangeError(`Trainer: accumulation must be a positive integer, got ${config.accumulation}`);
    }
    this.variables = model.trainableVariables();
    if (this.variables.size === 0) throw new RangeError('Trainer: the model has no trainable variables (attach LoRA or set trainBase)');
    this.optimizer = new AdamW(this.variables, config.optimizer);
  }

  get step(): number {
    return this.optimizer.stepCount;
  }

  /** One optimiser step over `accumulation` micro-batches drawn from nextBatch. */
  async trainStep(nextBatch: () => Batch): Promise<StepResult> {
    const names = [...this.variables.keys()];
    const varList = names.map((n) => this.variables.get(n)!);
    let summed: tf.Tensor[] | null = null;
    let lossSum: tf.Tensor = tf.scalar(0);
    let tokens = 0;
    for (let k = 0; k < this.config.accumulation; k++) {
      const batch = nextBatch();
      tokens += batch.batchSize * batch.seqLen;
      const { value, grads } = tf.variableGrads(() => this.model.loss(batch.inputs, batch.targets, batch.batchSize, batch.seqLen), varList);
      const current = varList.map((v) => grads[v.name]);
      if (summed === null) summed = current;
      else {
        const next: tf.Tensor[] = summed.map((s, i) => tf.add(s, current[i]));
        tf.dispose([...summed, ...current]);
        summed = next;
      }
      const nextLoss = tf.add(lossSum, value);
      tf.dispose([lossSum, value]);
      lossSum = nextLoss;
    }
    const lr = learningRateAt(this.step, this.config.schedule);
    const normTensor = tf.tidy(() => {
      const scaled = summed!.map((g) => tf.div(g, this.config.accumulation));
      // Not tf.addN: on WebGPU it binds every input at once, and past the device's storage-buffer limit (8 by
      // default, fewer than 2 per LoRA pair in a 4-layer model) its pipeline is invalid and the norm comes back
      // wrong, so clipping silently misfires. stack is split to fit that limit.
      return tf.sqrt(tf.sum(tf.stack(scaled.map((g) => tf.sum(tf.square(g))))));
    });
    const [gradNorm] = (await normTensor.data()) as Float32Array;
    const clipFactor = this.config.clipNorm > 0 && gradNorm > this.config.clipNorm ? this.config.clipNorm / gradNorm : 1;
    const finalGrads = new Map<string, tf.Tensor>();
    tf.tidy(() => {
      names.forEach((n, i) => finalGrads.set(n, tf.keep(tf.mul(summed![i], clipFactor / this.config.accumulation))));
    });
    this.optimizer.apply(finalGrads, lr);
    const meanLoss = tf.div(lossSum, this.config.accumulation);
    const [loss] = (await meanLoss.data()) as Float32Array;
    tf.dispose([...summed!, ...finalGrads.values(), normTensor, lossSum, meanLoss]);
    return { step: this.step, loss, lr, gradNorm, tokens };
  }

  dispose(): void {
    this.optimizer.dispose();
  }
}
