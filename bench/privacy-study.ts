// `npm run bench:privacy-study`: utility under differential privacy. 8 peers, each holding one Brown fiction text as
// its private file, run synchronous FedAvg in one process on the real default model: every round each peer trains
// H steps from the shared adapter on its Poisson sample, publishes (raw, or clipped + noised for the DP arms), and
// the published adapters are averaged. Every arm uses the same initial adapter, samples and batches per seed; arms
// differ only in clipping and noise. Prints and writes mean ± sd over seeds and paired differences against no DP.
import { mkdirSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { directorySource } from '../cli/hf-source.ts';
import { initNodeBackend } from '../cli/tf-node.ts';
import { evaluationBatches, type Batch } from '../core/data/batches.ts';
import { FICTION_GENRES } from '../core/data/brown.ts';
import { loadHfCheckpoint } from '../core/io/hf-checkpoint.ts';
import { mergeWith } from '../core/merge/registry.ts';
import { LORA_TARGETS, type Adapter } from '../core/model/adapter.ts';
import { DEFAULT_MODEL_ID } from '../core/model/defaults.ts';
import { Gpt2Model } from '../core/model/gpt2.ts';
import { parsePrivacyConfig, noiseMultiplierOf, volunteerRecordsProblem } from '../core/privacy/config.ts';
import { NoiseSource } from '../core/privacy/noise-source.ts';
import { splitIntoRecords } from '../core/privacy/peer-privacy.ts';
import { privateRound } from '../core/privacy/private-round.ts';
import { evaluate } from '../core/train/evaluate.ts';
import { createRng, deriveSeed } from '../core/util/random.ts';

const HELP = `usage: npx tsx bench/privacy-study.ts [options]
  --peers N        peers (default 8); peer i holds fiction genre i mod 6 (peers 6 and 7 the second half of theirs)
  --rounds R       FedAvg rounds = publishes per peer (default 4)
  --steps H        local steps per round (default 4)
  --batch B        sequences per step (default 4)
  --seq L          sequence length; records are L + 1 bytes (default 64)
  --lr X           learning rate (default 0.003)
  --epsilons LIST  DP arms, comma-separated target ε (default 2,8,32)
  --delta X        δ (default 1e-5)
  --clip C         clip norm of each published update (default 0.05)
  --q X            Poisson sampling rate of records per round (default 0.02)
  --seeds N        seeds 1..N (default 3)
  --out DIR        write results.json and README.md there`;

interface ArmResult {
  arm: string;
  epsilon: number | null;
  noiseMultiplier: number | null;
  seed: number;
  heldOutLoss: number;
  perGenre: Record<string, number>;
  minutes: number;
}

function stats(xs: number[]): { mean: number; sd: number } {
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  const sd = xs.length > 1 ? Math.sqrt(xs.reduce((s, x) => s + (x - mean) ** 2, 0) / (xs.length - 1)) : 0;
  return { mean, sd };
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      peers: { type: 'string', default: '8' },
      rounds: { type: 'string', default: '4' },
      steps: { type: 'string', default: '4' },
      batch: { type: 'string', default: '4' },
      seq: { type: 'string', default: '64' },
      lr: { type: 'string', default: '0.003' },
      epsilons: { type: 'string', default: '2,8,32' },
      delta: { type: 'string', default: '1e-5' },
      clip: { type: 'string', default: '0.05' },
      q: { type: 'string', default: '0.02' },
      seeds: { type: 'string', default: '3' },
      out: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const [peers, rounds, steps, batch, seq, lr, delta, clip, q, seeds] = [values.peers, values.rounds, values.steps, values.batch, values.seq, values.lr, values.delta, values.clip, values.q, values.seeds].map(Number);
  const epsilons = values.epsilons!.split(',').map(Number);
  const root = join(import.meta.dirname, '..');
  const backend = await initNodeBackend('wasm');
  const checkpoint = await loadHfCheckpoint(directorySource(join(root, 'public', 'models', DEFAULT_MODEL_ID)));
  const model = new Gpt2Model(checkpoint.config, checkpoint.weights, { baseModelId: DEFAULT_MODEL_ID });
  const read = (genre: string, split: string) => readFile(join(root, 'public', 'data', 'brown', `${genre}.${split}.txt`)).then((b) => new Uint8Array(b));

  const peerRecords: Uint8Array[][] = [];
  const peerGenre: string[] = [];
  for (let i = 0; i < peers; i++) {
    const genre = FICTION_GENRES[i % FICTION_GENRES.length];
    const all = splitIntoRecords(await read(genre, 'train'), seq + 1);
    const shares = Math.ceil(peers / FICTION_GENRES.length);
    const share = Math.floor(i / FICTION_GENRES.length);
    const per = Math.floor(all.length / shares);
    peerRecords.push(all.slice(share * per, (share + 1) * per));
    peerGenre.push(genre);
  }
  const heldOut = new Map<string, Batch[]>();
  for (const genre of FICTION_GENRES) heldOut.set(genre, evaluationBatches(await read(genre, 'heldout'), 8, seq, 2));
  const evaluateAll = async (adapter: Adapter) => {
    model.setAdapter(adapter);
    const perGenre: Record<string, number> = {};
    for (const [genre, batches] of heldOut) perGenre[genre] = (await evaluate(model, batches)).loss;
    const losses = Object.values(perGenre);
    return { heldOutLoss: losses.reduce((s, x) => s + x, 0) / losses.length, perGenre };
  };

  const arms: { arm: string; epsilon: number | null; noiseMultiplier: number | null }[] = [{ arm: 'no DP', epsilon: null, noiseMultiplier: null }];
  for (const epsilon of epsilons) {
    const config = parsePrivacyConfig({ targetEpsilon: epsilon, delta, clipNorm: clip, samplingRate: q, maxPublishes: rounds });
    for (let i = 0; i < peers; i++) {
      const problem = volunteerRecordsProblem(config, peerRecords[i].length);
      if (problem) throw new Error(`peer ${i}: ${problem}`);
    }
    arms.push({ arm: `ε = ${epsilon}`, epsilon, noiseMultiplier: noiseMultiplierOf(config) });
  }
  const trainer = {
    schedule: { lr, warmupSteps: 0, totalSteps: steps, minLrRatio: 1 },
    optimizer: { beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0 },
    clipNorm: 1,
    accumulation: 1,
  };
  console.log(
    `privacy study: ${peers} peers, ${rounds} rounds × ${steps} steps of ${batch}×${seq} bytes, lr ${lr}, q ${q}, C ${clip}, δ ${delta}, ` +
      `records per peer ${peerRecords.map((r) => r.length).join('/')}, backend ${backend}`,
  );
  for (const a of arms) if (a.noiseMultiplier !== null) console.log(`  ${a.arm}: noise multiplier z = ${a.noiseMultiplier.toFixed(4)} (noise sd ${(2 * a.noiseMultiplier * clip).toExponential(2)} per value)`);

  const results: ArmResult[] = [];
  const baseBySeed: number[] = [];
  for (let seed = 1; seed <= seeds; seed++) {
    model.attachLora({ r: 8, alpha: 16, targetModules: [...LORA_TARGETS] }, seed);
    const initial = await model.getAdapter();
    const base = await evaluateAll(initial);
    baseBySeed.push(base.heldOutLoss);
    console.log(`seed ${seed}: base held-out loss ${base.heldOutLoss.toFixed(4)}`);
    for (const arm of arms) {
      const started = performance.now();
      let global = initial;
      const samplers = peerRecords.map((_, i) => NoiseSource.fromTestSeed(deriveSeed(seed, `sample-${i}`)));
      const batchRngs = peerRecords.map((_, i) => createRng(deriveSeed(seed, `batches-${i}`)));
      const noise = peerRecords.map((_, i) => NoiseSource.fromTestSeed(deriveSeed(seed, `noise-${i}-${arm.arm}`)));
      for (let round = 0; round < rounds; round++) {
        const published: Adapter[] = [];
        for (let i = 0; i < peers; i++) {
          const r = await privateRound({
            model,
            anchor: global,
            records: peerRecords[i],
            steps,
            batchSize: batch,
            trainer,
            samplingRate: q,
            privacy: arm.noiseMultiplier === null ? null : { clipNorm: clip, noiseMultiplier: arm.noiseMultiplier },
            sampleSource: samplers[i],
            noiseSource: noise[i],
            batchRng: batchRngs[i],
          });
          published.push(r.published);
        }
        global = mergeWith('fedavg', published.map((adapter, i) => ({ adapter, weight: 1, meta: { peerId: `peer-${i}`, samples: 0, ageMs: 0 } })));
      }
      const evaluation = await evaluateAll(global);
      const minutes = (performance.now() - started) / 60000;
      results.push({ ...arm, seed, ...evaluation, minutes });
      console.log(`  seed ${seed} ${arm.arm.padEnd(8)} held-out loss ${evaluation.heldOutLoss.toFixed(4)} (${minutes.toFixed(1)} min)`);
    }
  }

  const lines: string[] = [];
  const base = stats(baseBySeed);
  lines.push(`| arm | noise multiplier z | held-out loss (nats/byte), mean ± sd over ${seeds} seeds | paired difference vs no DP, mean ± sd | change from base |`);
  lines.push('|---|---|---|---|---|');
  lines.push(`| base model (untrained adapter) | — | ${base.mean.toFixed(4)} ± ${base.sd.toFixed(4)} | — | — |`);
  const noDp = results.filter((r) => r.epsilon === null);
  for (const arm of arms) {
    const mine = results.filter((r) => r.arm === arm.arm);
    const s = stats(mine.map((r) => r.heldOutLoss));
    const diff = stats(mine.map((r) => r.heldOutLoss - noDp.find((n) => n.seed === r.seed)!.heldOutLoss));
    const change = stats(mine.map((r, k) => r.heldOutLoss - baseBySeed[k]));
    lines.push(
      `| ${arm.arm} | ${arm.noiseMultiplier === null ? '—' : arm.noiseMultiplier.toFixed(3)} | ${s.mean.toFixed(4)} ± ${s.sd.toFixed(4)} | ` +
        `${arm.epsilon === null ? '—' : `${diff.mean >= 0 ? '+' : ''}${diff.mean.toFixed(4)} ± ${diff.sd.toFixed(4)}`} | ${change.mean >= 0 ? '+' : ''}${change.mean.toFixed(4)} ± ${change.sd.toFixed(4)} |`,
    );
  }
  const table = lines.join('\n');
  console.log(table);
  if (values.out) {
    mkdirSync(values.out, { recursive: true });
    const settings = { peers, rounds, steps, batch, seq, lr, epsilons, delta, clip, q, seeds, backend, recordsPerPeer: peerRecords.map((r) => r.length), genres: peerGenre };
    writeFileSync(join(values.out, 'results.json'), JSON.stringify({ settings, baseBySeed, arms, results }, null, 2) + '\n');
    writeFileSync(join(values.out, 'table.md'), table + '\n');
  }
  model.dispose();
  return 0;
}

process.exitCode = await main();
