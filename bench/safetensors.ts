/**
 * Safetensors read/write throughput for F32, F16 and BF16 (median of 3 runs).
 * Run: npx tsx bench/safetensors.ts [millions of values, default 25]
 */
import { parseSafetensors, serializeSafetensors } from '../core/io/safetensors.ts';

const count = Math.round(Number(process.argv[2] ?? 25) * 1e6);
const data = new Float32Array(count);
for (let i = 0; i < count; i++) data[i] = Math.sin(i);
const median = (values: number[]) => [...values].sort((x, y) => x - y)[Math.floor(values.length / 2)];

for (const dtype of ['F32', 'F16', 'BF16'] as const) {
  const writeMs: number[] = [];
  const readMs: number[] = [];
  let fileBytes = 0;
  for (let run = 0; run < 3; run++) {
    let start = performance.now();
    const file = serializeSafetensors({ x: { dtype, shape: [count], data } });
    writeMs.push(performance.now() - start);
    fileBytes = file.byteLength;
    start = performance.now();
    parseSafetensors(file);
    readMs.push(performance.now() - start);
  }
  const w = median(writeMs);
  const r = median(readMs);
  console.log(
    `${dtype}: ${(count / 1e6).toFixed(1)}M values, ${(fileBytes / 1e6).toFixed(0)} MB file: ` +
      `write ${w.toFixed(0)} ms (${(count / 1e3 / w).toFixed(0)} M values/s), read ${r.toFixed(0)} ms (${(count / 1e3 / r).toFixed(0)} M values/s)`,
  );
}
