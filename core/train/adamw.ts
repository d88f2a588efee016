/** AdamW (decoupled weight decay, Loshchilov & Hutter) over named tfjs variables, with a serialisable state. */
import * as tf from '@tensorflow/tfjs';

export interface AdamWConfig {
  beta1: number;
  beta2: number;
  epsilon: number;
  weightDecay: number;
  /** Names the decay applies to (default: every variable of rank ≥ 2; biases and layer norms are not decayed). */
  decay?: (name: string, variable: tf.Variable) => boolean;
}

export const ADAMW_DEFAULTS: AdamWConfig = { beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0 };

/** Optimiser state as plain arrays, for checkpoints. */
export interface AdamWState {
  step: number;
  moments: Record<string, { m: Float32Array; v: Float32Array }>;
}

export class AdamW {
  private step = 0;
  /** The step at which the moments were last restarted: their bias correction counts from there. */
  private momentsFrom = 0;
  private readonly m = new Map<string, tf.Variable>();
  private readonly v = new Map<string, tf.Variable>();

  constructor(
    private readonly variables: Map<string, tf.Variable>,
    private readonly config: AdamWConfig = ADAMW_DEFAULTS,
  ) {
    // tidy frees the zero tensors the moment variables are copied from (it never disposes variables).
    tf.tidy(() => {
      for (const [name, variable] of variables) {
        this.m.set(name, tf.variable(tf.zerosLike(variable), false));
        this.v.set(name, tf.variable(tf.zerosLike(variable), false));
      }
    });
  }

  get stepCount(): number {
    return this.step;
  }

  /** One update; `grads` are keyed like the variables. Disposes nothing it was given. */
  apply(grads: Map<string, tf.Tensor>, lr: number): void {
    this.step += 1;
    const { beta1, beta2, epsilon, weightDecay } = this.config;
    const decays = this.config.decay ?? ((_n: string, v: tf.Variable) => v.rank >= 2);
    const correction1 = 1 - beta1 ** (this.step - this.momentsFrom);
    const correction2 = 1 - beta2 ** (this.step - this.momentsFrom);
    tf.tidy(() => {
      for (const [name, variable] of this.variables) {
        const g = grads.get(name);
        if (!g) continue;
        const m = this.m.get(name)!;
        const v = this.v.get(name)!;
        const mNext = tf.add(tf.mul(m, beta1), tf.mul(g, 1 - beta1));
        const vNext = tf.add(tf.mul(v, beta2), tf.mul(tf.square(g), 1 - beta2));
        m.assign(mNext);
        v.assign(vNext);
        let update = tf.div(tf.div(mNext, correction1), tf.add(tf.sqrt(tf.div(vNext, correction2)), epsilon));
        if (weightDecay > 0 && decays(name, variable)) update = tf.add(update, tf.mul(variable, weightDecay));
        variable.assign(tf.sub(variable, tf.mul(update, lr)));
      }
    });
  }

  async exportState(): Promise<AdamWState> {
    const moments: AdamWState['moments'] = {};
    for (const name of this.variables.keys()) {
      moments[name] = {
        m: (await this.m.get(name)!.data()) as Float32Array,
        v: (await this.v.get(name)!.data()) as Float32Array,
      };
    }
    return { step: this.step, moments };
  }

  importState(state: AdamWState): void {
    for (const [name, variable] of this.variables) {
      const saved = state.moments[name];
      if (!saved || saved.m.length !== variable.size || saved.v.length !== variable.size) {
        throw new RangeError(`AdamW.importState: state for '${name}' is missing or has the wrong size`);
      }
      tf.tidy(() => {
        this.m.get(name)!.assign(tf.tensor(saved.m, variable.shape));
        this.v.get(name)!.assign(tf.tensor(saved.v, variable.shape));
      });
    }
    this.step = state.step;
    this.momentsFrom = 0;
  }

  /**
   * Restarts the moments as a fresh optimiser would (zero, bias correction from the next step), keeping the step
   * count that the learning-rate schedule reads.
   */
  resetMoments(): void {
    this.momentsFrom = this.step;
    tf.tidy(() => {
      for (const name of this.variables.keys()) {
        this.m.get(name)!.assign(tf.zerosLike(this.m.get(name)!));
        this.v.get(name)!.assign(tf.zerosLike(this.v.get(name)!));
      }
    });
  }

  dispose(): void {
    for (const t of [...this.m.values(), ...this.v.values()]) t.dispose();
    this.m.clear();
    this.v.clear();
  }
}
