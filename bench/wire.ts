/**
 * core/wire benchmark: payload sizes and encode / decode / validate times per codec on GPT-2-small-shaped
 * adapters. `npx tsx bench/wire.ts [--json]`
 */
import { schemaHash } from '../core/model/adapter.ts';
import { decodeAdapter, encodeAdapter, PAYLOAD_CODECS } from '../core/wire/codec.ts';
import { announcementFor, validatePayload, validatePayloadSync } from '../core/wire/manifest.ts';
import { makeAdapter } from '../core/wire/test-support.ts';

function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.floor(sorted.length / 2)];
}

async function timeAsync(runs: number, body: () => Promise<unknown>): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    await body();
    samples.push(performance.now() - start);
  }
  return median(samples);
}

function time(runs: number, body: () => void): number {
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    body();
    samples.push(performance.now() - start);
  }
  return median(samples);
}

const cases = [
  { label: 'gpt2-small r=8 attn', adapter: makeAdapter({ r: 8 }) },
  { label: 'gpt2-small r=16 attn+mlp', adapter: makeAdapter({ r: 16, targets: ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj'] }) },
];
const rows = [];
for (const { label, adapter } of cases) {
  const fp32Bytes = encodeAdapter(adapter, 'fp32').length;
  for (const codec of PAYLOAD_CODECS) {
    const payload = encodeAdapter(adapter, codec);
    const manifest = announcementFor(payload, {
      runId: 'bench', peerId: '12D3KooWBenchBenchBench', baseModelId: adapter.baseModelId, baseModelSha256: '0'.repeat(64),
      schemaHash: schemaHash(adapter), version: 1, step: 1, samplesSeen: 1, localLoss: 1, codec, createdAtMs: 0,
    });
    const runs = 7;
    rows.push({
      adapter: label,
      codec,
      bytes: payload.length,
      ratioVsFp32: +(fp32Bytes / payload.length).toFixed(3),
      encodeMs: +time(runs, () => encodeAdapter(adapter, codec)).toFixed(1),
      decodeMs: +time(runs, () => decodeAdapter(payload)).toFixed(1),
      validateSyncMs: +time(runs, () => validatePayloadSync(payload, manifest, { schemaHash: manifest.schemaHash })).toFixed(1),
      validateAsyncMs: +(await timeAsync(runs, () => validatePayload(payload, manifest, { schemaHash: manifest.schemaHash }))).toFixed(1),
    });
  }
}
if (process.argv.includes('--json')) console.log(JSON.stringify(rows, null, 2));
else console.table(rows);
