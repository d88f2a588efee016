// The node engine is deterministic: the same seed and options give the same run log, whether its peers run in this
// thread or spread over worker threads; and the log really depends on the seed.
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { useTestBackend } from '../../../core/test-backend.ts';
import { runLogToJson } from '../../../core/swarm/run-log.ts';
import { modelSha256 } from '../command.ts';
import { parseSimulateArgs, type SimulationSettings } from '../options.ts';
import { runNodeSimulation } from './run.ts';
import type { TelemetryReport } from '../../../core/wire/telemetry.ts';

function settings(extra: string[]): SimulationSettings {
  const cmd = parseSimulateArgs(['--engine', 'node', '--tabs', '3', '--steps', '4', '--h', '2', '--batch', '2', '--seq', '32', '--eval', '2', '--eval-batches', '1', ...extra]);
  if (cmd === 'help') throw new Error('help');
  return cmd.base;
}

async function runLog(extra: string[]) {
  const s = settings(extra);
  const result = await runNodeSimulation(s, { log: () => undefined, modelSha256: modelSha256(s.modelUrl), root: process.cwd(), progressEveryS: 3600 });
  const last = new Map<string, TelemetryReport>();
  for (const r of result.runLog.records) if (r.type === 'report') last.set(r.report.peerId, r.report);
  return { json: runLogToJson(result.runLog), merges: result.summary.merges, reports: [...last.values()] };
}

beforeAll(async () => {
  await useTestBackend();
});

describe('swarm simulate --engine node', () => {
  it('gives an identical run log for the same seed, in one thread or two, and another for another seed', async () => {
    const first = await runLog(['--seed', '5', '--threads', '1']);
    const again = await runLog(['--seed', '5', '--threads', '1']);
    const threaded = await runLog(['--seed', '5', '--threads', '2']);
    const otherSeed = await runLog(['--seed', '6', '--threads', '1']);
    // The runs merged (3 peers, H = 2, 4 steps: each peer merges at steps 2 and 4), so the logs hold real swarm work.
    expect(first.merges).toBeGreaterThanOrEqual(4);
    expect(again.json).toBe(first.json);
    expect(threaded.json).toBe(first.json);
    expect(otherSeed.json).not.toBe(first.json);
  }, 300_000);

  it('frees every engine it ran in this thread, so a long series of runs (the Byzantine matrix) does not run out of memory', async () => {
    const before = tf.memory().numTensors;
    // With a kill: the killed incarnation is dropped mid-run and its restart is a second engine.
    await runLog(['--seed', '5', '--threads', '1', '--kill', '0.34@step2:restart=1']);
    expect(tf.memory().numTensors).toBe(before);
    // More steps, so more merges: nothing may grow with them either.
    await runLog(['--seed', '5', '--threads', '1', '--steps', '8']);
    expect(tf.memory().numTensors).toBe(before);
  }, 300_000);
});

describe('swarm simulate --engine node --sparse', () => {
  it('runs the real engines on a sparse stream: a keyframe, then deltas of the exact size, merged without a refusal', async () => {
    // 3 peers (each has 2 neighbours), H = 2, 6 steps: 3 publications each, the first a keyframe.
    const { merges, reports } = await runLog(['--seed', '5', '--threads', '1', '--steps', '6', '--sparse', '8/256:16']);
    // The default model's adapter: 4 layers × (c_attn 1024 + 3072, c_proj 1024 + 1024, c_fc 1024 + 4096,
    // mlp.c_proj 4096 + 1024) = 65,536 values = 256 chunks of 256, each 4 + 2·8 bytes, after a 40-byte header.
    const deltaBytes = 40 + 256 * 20;
    const fullBytes = 2 * 65_536;
    expect(reports).toHaveLength(3);
    for (const r of reports) {
      expect(r.versionsAnnounced).toBe(3);
      const keyframe = r.bytesSent / 2 - 2 * deltaBytes;
      // One fp16 keyframe (its values plus a header of names and dims) and two deltas on each of the 2 links.
      expect(keyframe).toBeGreaterThan(fullBytes);
      expect(keyframe).toBeLessThan(fullBytes + 1024);
      expect(r.rejections).toEqual({});
    }
    expect(merges).toBeGreaterThanOrEqual(6);
  }, 300_000);
});
