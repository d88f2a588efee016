// The small run the peer and dashboard specs share: the default manifest shrunk to H = 5 and 4×64-byte batches,
// on the four fiction genres their tabs train on, with the base model served by the app.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { defaultRunManifest } from '../core/swarm/run.ts';
import type { RunManifest } from '../core/wire/run-manifest.ts';

export const MODEL_URL = process.env.SWARM_E2E_MODEL ?? '/models/swarm-brown-byte-gpt2/';
export const GENRES = ['fiction', 'mystery', 'science_fiction', 'adventure'];
export const SCREENSHOTS = 'docs/screenshots';

export function modelSha256(): string {
  const file = `public${MODEL_URL}model.safetensors`;
  if (!existsSync(file)) throw new Error(`${file} is missing: the default base model must be in public/models (or set SWARM_E2E_MODEL)`);
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

export function testManifest(runId: string, sha256: string): RunManifest {
  const m = defaultRunManifest(sha256, { localSteps: 5 });
  return {
    ...m,
    runId,
    baseModel: { ...m.baseModel, url: MODEL_URL },
    schedule: { ...m.schedule, batchSize: 4, seqLen: 64, warmupSteps: 3 },
    data: { kind: 'genre', genres: GENRES, seed: 1 },
  };
}
