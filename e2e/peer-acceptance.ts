// The acceptance comparison, too long for CI: 4 real tabs, one fiction genre each, train N local steps with the
// default strategy (merging), then 4 fresh tabs train the same N steps from the same seeds with merging off.
// Prints each tab's held-out loss on its own genre and the mean over all four genres, for base, local-only and
// merged. Usage: npx tsx e2e/peer-acceptance.ts [--steps 60] [--h 5] [--batch 4] [--seq 64] [--model /models/x/]
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { chromium, type Browser, type Page } from '@playwright/test';
import { CHROMIUM_ARGS, findChromium } from './chromium.ts';
import { startRelayProcess } from './relay-process.ts';
import { defaultRunManifest, encodeRunLink } from '../core/swarm/run.ts';
import type { PeerProbe } from '../app/lib/probe.ts';

const { values } = parseArgs({
  options: {
    steps: { type: 'string', default: '60' },
    h: { type: 'string', default: '5' },
    batch: { type: 'string', default: '4' },
    seq: { type: 'string', default: '64' },
    model: { type: 'string', default: '/models/swarm-brown-byte-gpt2/' },
    url: { type: 'string', default: 'http://127.0.0.1:5173' },
  },
});
const steps = Number(values.steps);
const GENRES = ['fiction', 'mystery', 'science_fiction', 'adventure'];
const sha = createHash('sha256').update(readFileSync(`public${values.model}model.safetensors`)).digest('hex');
const base = defaultRunManifest(sha, { localSteps: Number(values.h) });
const manifest = {
  ...base,
  runId: 'acceptance',
  baseModel: { ...base.baseModel, url: values.model! },
  schedule: { ...base.schedule, batchSize: Number(values.batch), seqLen: Number(values.seq) },
  data: { kind: 'genre', genres: GENRES, seed: 1 },
};
const link = encodeRunLink(manifest);

async function runPhase(browser: Browser, merged: boolean, relay: string): Promise<PeerProbe[]> {
  const context = await browser.newContext();
  const started = Date.now();
  const tabs: Page[] = [];
  for (let slot = 0; slot < GENRES.length; slot++) {
    const page = await context.newPage();
    const net = merged ? `&relays=${encodeURIComponent(relay)}&bootstrap=0` : '&merge=0&p2p=0';
    await page.goto(`${values.url}/?autojoin=1&run=${link}&slot=${slot}&peer=${merged ? 'merged' : 'local'}-${slot}&steps=${steps}&eval=0&evalBatches=4${net}`);
    tabs.push(page);
  }
  let states: PeerProbe[] = [];
  for (;;) {
    await new Promise((r) => setTimeout(r, 5000));
    states = await Promise.all(tabs.map((t) => t.evaluate(() => window.swarmPeer.status())));
    const errors = states.flatMap((s) => s.errors);
    if (errors.length > 0) throw new Error(JSON.stringify(errors));
    process.stdout.write(`\r${merged ? 'merged' : 'local-only'}: steps ${states.map((s) => s.step).join(', ')}; merges ${states.map((s) => s.merges).join(', ')}   `);
    if (states.every((s) => s.phase === 'done')) break;
  }
  console.log(`\n${merged ? 'merged' : 'local-only'} phase: ${((Date.now() - started) / 1000).toFixed(0)} s`);
  await context.close();
  return states;
}

const executablePath = await findChromium();
const browser = await chromium.launch({ executablePath, args: CHROMIUM_ARGS });
const relay = await startRelayProcess();
try {
  const merged = await runPhase(browser, true, relay.multiaddr);
  const local = await runPhase(browser, false, relay.multiaddr);
  console.log(`\n${steps} local steps per tab, H = ${values.h}, batch ${values.batch}×${values.seq}, strategy ${manifest.strategy.name}; held-out nats/byte`);
  console.log('genre            | own: base  local  merged | all 4 genres: base  local  merged | merges');
  let localMean = 0;
  let mergedMean = 0;
  for (let i = 0; i < GENRES.length; i++) {
    const m = merged.find((s) => s.slot === i)!;
    const l = local.find((s) => s.slot === i)!;
    localMean += l.heldOut!.allGenres / GENRES.length;
    mergedMean += m.heldOut!.allGenres / GENRES.length;
    console.log(
      `${GENRES[i].padEnd(16)} | ${m.baseHeldOut!.own.toFixed(3)}  ${l.heldOut!.own.toFixed(3)}  ${m.heldOut!.own.toFixed(3)} | ` +
        `${m.baseHeldOut!.allGenres.toFixed(3)}  ${l.heldOut!.allGenres.toFixed(3)}  ${m.heldOut!.allGenres.toFixed(3)} | ${m.merges}`,
    );
  }
  console.log(`mean over tabs of the all-genre held-out loss: local-only ${localMean.toFixed(4)}, merged ${mergedMean.toFixed(4)} (${mergedMean < localMean ? 'merged is better' : 'merged is NOT better'})`);
} finally {
  await browser.close();
  await relay.stop();
}
