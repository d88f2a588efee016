/** Learning-rate schedule: linear warmup, then cosine decay to a floor. */

export interface ScheduleConfig {
  /** Peak learning rate. */
  lr: number;
  /** Steps of linear warmup from 0 to lr. */
  warmupSteps: number;
  /** Step at which the cosine reaches its floor; later steps stay at the floor. */
  totalSteps: number;
  /** The floor as a share of lr (0.1 = decays to lr / 10). */
  minLrRatio: number;
}

export function learningRateAt(step: number, s: ScheduleConfig): number {
  if (step < s.warmupSteps) return (s.lr * (step + 1)) / s.warmupSteps;
  const span = Math.max(1, s.totalSteps - s.warmupSteps);
  const progress = Math.min(1, (step - s.warmupSteps) / span);
  const floor = s.lr * s.minLrRatio;
  return floor + 0.5 * (s.lr - floor) * (1 + Math.cos(Math.PI * progress));
}
