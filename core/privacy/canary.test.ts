import { readFileSync } from 'node:fs';
// Measured protection (issue 15): secrets planted in a volunteer's file, LoRA trained on the real default model
// (tfjs WASM backend), and what the published adapter reveals with and without differential privacy.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { filesSource } from '../io/source.ts';
import { loadHfCheckpoint } from '../io/hf-checkpoint.ts';
import { LORA_TARGETS, type Adapter } from '../model/adapter.ts';
import { DEFAULT_MODEL_ID } from '../model/defaults.ts';
import { Gpt2Model } from '../model/gpt2.ts';
import { useTestBackend } from '../test-backend.ts';
import { runCanaryExperiment, type CanaryExperimentOptions, type CanaryExperimentResult } from './canary-experiment.ts';
import { chanceExposure } from './exposure.ts';
import { noiseMultiplierFor } from './rdp.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const ROUNDS = 5;
const EPSILON = 8;
const DELTA = 1e-5;
const CANARIES = 8;
const CANDIDATES = 127;

let model: Gpt2Model;
let options: Omit<CanaryExperimentOptions, 'privacy'>;

beforeAll(async () => {
  await useTestBackend();
  const dir = join(ROOT, 'public', 'models', DEFAULT_MODEL_ID);
  const files = new Map(['config.json', 'model.safetensors'].map((name) => [name, new Uint8Array(readFileSync(join(dir, name)))] as const));
  const checkpoint = await loadHfCheckpoint(filesSource(files, dir));
  model = new Gpt2Model(checkpoint.config, checkpoint.weights, { baseModelId: DEFAULT_MODEL_ID });
  model.attachLora({ r: 8, alpha: 16, targetModules: [...LORA_TARGETS] }, 1);
  const initial: Adapter = await model.getAdapter();
  // Needs `npm run prepare-assets` (npm test runs it first).
  const text = new Uint8Array(await readFile(join(ROOT, 'public', 'data', 'brown', 'romance.train.txt')));
  options = {
    model,
    initial,
    text,
    records: 24,
    recordBytes: 49,
    canaries: CANARIES,
    candidates: CANDIDATES,
    rounds: ROUNDS,
    stepsPerRound: 10,
    batchSize: 4,
    trainer: {
      schedule: { lr: 0.01, warmupSteps: 0, totalSteps: 10, minLrRatio: 1 },
      optimizer: { beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0 },
      clipNorm: 1,
      accumulation: 1,
    },
    seed: 1,
  };
}, 120_000);

function summary(r: CanaryExperimentResult): string {
  return `exposure ${r.meanExposure.toFixed(2)} bits [${r.exposures.map((e) => e.toFixed(1)).join(' ')}] (before training ${r.before.meanExposure.toFixed(2)}), membership AUC ${r.membershipAuc.toFixed(3)} (before ${r.before.membershipAuc.toFixed(3)})`;
}

describe('canary exposure and membership inference from the published adapter', () => {
  // One secret's exposure under a uniform rank over 128 has sd ≈ 1.4 bits, so the mean of 8 has a standard error
  // of ≈ 0.5; 1 bit is 2 standard errors.
  const chance = chanceExposure(CANDIDATES);
  const margin = 1;
  let withoutDp: CanaryExperimentResult;

  it('without DP, the secrets are exposed above chance and trained records are recognisable', async () => {
    withoutDp = await runCanaryExperiment({ ...options, privacy: null });
    console.log(`canary, no DP: ${summary(withoutDp)}; chance ${chance.toFixed(2)}`);
    expect(withoutDp.meanExposure).toBeGreaterThan(chance + margin);
    expect(withoutDp.membershipAuc).toBeGreaterThan(0.75);
  }, 240_000);

  it(`with DP at ε = ${EPSILON}, δ = ${DELTA}, exposure is at chance level and membership is a coin flip`, async () => {
    // q = 1: every record takes part in every round; the budget covers the run's publishes.
    const noiseMultiplier = noiseMultiplierFor({ targetEpsilon: EPSILON, delta: DELTA, samplingRate: 1, steps: ROUNDS });
    const dp = await runCanaryExperiment({ ...options, privacy: { clipNorm: 0.005, noiseMultiplier } });
    console.log(`canary, DP ε = ${EPSILON} (z = ${noiseMultiplier.toFixed(3)}): ${summary(dp)}; chance ${chance.toFixed(2)}`);
    expect(dp.meanExposure).toBeLessThan(chance + margin);
    expect(Math.abs(dp.membershipAuc - 0.5)).toBeLessThan(0.25);
    expect(withoutDp.meanExposure - dp.meanExposure).toBeGreaterThan(1);
  }, 240_000);
});
