import { describe, expect, it } from 'vitest';
import { simulationManifest } from './run.ts';
import { applySweepValue, parseFaultTime, parseKill, parseRelayKill, parseSimulateArgs, plannedRuns, SimulateArgumentError, type SimulateCommand } from './options.ts';

const parse = (args: string) => parseSimulateArgs(args.split(' ').filter((a) => a !== ''), Date.UTC(2026, 0, 2, 3, 4, 5)) as SimulateCommand;

describe('parseSimulateArgs', () => {
  it('has a default for every option', () => {
    const c = parse('');
    expect(c.base).toMatchObject({ tabs: 4, browsers: 1, strategy: 'fedavg', localSteps: 5, codec: 'fp16', steps: 40, partition: { kind: 'genre' }, seed: 1 });
    expect(c.base.genres).toEqual(['fiction', 'mystery', 'science_fiction', 'adventure']);
    expect(c.baselines).toEqual([]);
    expect(c.sweep).toBeNull();
    expect(c.outDir).toBe('reports/sim-2026-01-02T03-04-05');
  });

  it('reads the learning-rate schedule into the run manifest: constant holds the peak, cosine decays', () => {
    expect(parse('').base.schedule).toBe('cosine');
    const constant = parse('--schedule constant --steps 30').base;
    expect(simulationManifest(constant, 'a'.repeat(64)).schedule).toMatchObject({ minLrRatio: 1, totalSteps: 30 });
    expect(simulationManifest(parse('--steps 30').base, 'a'.repeat(64)).schedule).toMatchObject({ minLrRatio: 0.1 });
    expect(() => parse('--schedule linear')).toThrow(/--schedule must be cosine or constant, got 'linear'/);
  });

  it('reads DP arms into the run manifest: off by default, a target ε per sweep value, bad settings refused in words', () => {
    expect(parse('').base.privacy).toBeNull();
    expect(simulationManifest(parse('').base, 'a'.repeat(64)).privacy).toBeUndefined();
    const one = parse('--engine node --steps 40 --h 5 --privacy-epsilon 8 --privacy-clip 0.1');
    expect(one.base.privacy).toEqual({ targetEpsilon: 8, delta: 1e-5, clipNorm: 0.1, samplingRate: 0.02, maxPublishes: 8 });
    expect(simulationManifest(one.base, 'a'.repeat(64)).privacy).toEqual(one.base.privacy);
    const swept = plannedRuns(parse('--engine node --steps 20 --h 5 --sweep epsilon=none,8,2 --privacy-publishes 10'));
    expect(swept.map((r) => [r.label, r.privacy?.targetEpsilon ?? null, r.privacy?.maxPublishes ?? null])).toEqual([
      ['no-dp', null, null], ['eps-8', 8, 10], ['eps-2', 2, 10],
    ]);
    // Sweeping h keeps the target ε and recounts the publishes the budget covers.
    const byH = plannedRuns(parse('--steps 20 --privacy-epsilon 4 --sweep h=2,10'));
    expect(byH.map((r) => r.privacy?.maxPublishes)).toEqual([10, 2]);
    expect(() => parse('--privacy-epsilon 0')).toThrow(/ε must be above 0/);
    expect(() => parse('--privacy-epsilon lots')).toThrow(/must be a number or none/);
    expect(() => parse('--sweep epsilon=8,-1')).toThrow(/--sweep epsilon.*ε must be above 0/);
    expect(() => parse('--privacy-epsilon 0.001 --privacy-sampling 1 --privacy-publishes 1000')).toThrow(/would need noise above 100 times the clip norm/);
    expect(() => parse('--privacy-epsilon 8 --privacy-delta 2')).toThrow(SimulateArgumentError);
  });

  it('puts the outer optimiser and the LoRA mode into the run manifest both engines start from', () => {
    const plain = simulationManifest(parse('').base, 'a'.repeat(64));
    expect(plain.outer).toBeUndefined();
    expect(plain.lora.mode).toBeUndefined();
    const c = parse('--outer nesterov --outer-lr 1 --outer-momentum 0.5 --lora-mode frozen-a');
    expect(c.base).toMatchObject({ outer: { name: 'nesterov', params: { lr: 1, momentum: 0.5 } }, loraMode: 'frozen-a' });
    const manifest = simulationManifest(c.base, 'a'.repeat(64));
    expect(manifest.outer).toEqual({ name: 'nesterov', params: { lr: 1, momentum: 0.5 } });
    expect(manifest.lora.mode).toBe('frozen-a');
    expect(simulationManifest(parse('--outer sgd').base, 'a'.repeat(64)).outer).toEqual({ name: 'sgd', params: {} });
    expect(() => parse('--outer adam')).toThrow(/--outer: unknown outer optimiser 'adam'/);
    expect(() => parse('--outer sgd --outer-momentum 0.9')).toThrow(/has no parameter 'momentum'/);
    expect(() => parse('--outer nesterov --outer-lr 5')).toThrow(/lr' must be <= 2/);
    expect(() => parse('--outer nesterov --outer-lr x')).toThrow(/--outer-lr must be a number/);
    expect(() => parse('--lora-mode frozen-b')).toThrow(/--lora-mode must be one of standard, frozen-a/);
  });

  it('returns help for -h', () => {
    expect(parseSimulateArgs(['-h'])).toBe('help');
  });

  it('reads strategy parameters as typed values and checks them against the strategy', () => {
    const c = parse('--strategy ties --param density=0.3 --param space=products');
    expect(c.base.params).toMatchObject({ density: 0.3, space: 'products' });
    expect(() => parse('--strategy ties --param density=2')).toThrow(/density/);
    expect(() => parse('--strategy fedavg --param density=0.3')).toThrow(SimulateArgumentError);
    expect(() => parse('--strategy nope')).toThrow(/unknown merge strategy 'nope'/);
  });

  it('applies strategy-scoped parameters to that strategy only in a sweep', () => {
    const c = parse('--sweep strategy=fedavg,ties,trimmed-mean --param ties.density=0.5 --param trimmed-mean.beta=0.25');
    const runs = plannedRuns(c);
    expect(runs.map((r) => r.label)).toEqual(['fedavg', 'ties', 'trimmed-mean']);
    expect(runs[0].params).toEqual({});
    expect(runs[1].params.density).toBe(0.5);
    expect(runs[2].params.beta).toBe(0.25);
  });

  it('puts baselines first, without faults, and the centralised one in one browser', () => {
    const c = parse('--tabs 8 --browsers 2 --baselines central,local --kill 0.5@60 --byzantine scaled --sweep strategy=fedavg,median');
    const runs = plannedRuns(c);
    expect(runs.map((r) => r.label)).toEqual(['local-only', 'centralised', 'fedavg', 'median']);
    expect(runs[0]).toMatchObject({ merge: false, centralised: false, kills: [], byzantine: null });
    expect(runs[1]).toMatchObject({ merge: false, centralised: true, browsers: 1 });
    expect(runs[2].byzantine).toEqual({ mode: 'scaled', tabs: 1, scale: 10 });
    expect(runs[3].kills).toHaveLength(1);
  });

  it('plans the lockstep baselines after the others, and tuning runs on the validation split of the node engine only', () => {
    const c = parse('--engine node --tabs 8 --baselines sync-dp,local,sync-avg,central');
    expect(plannedRuns(c).map((r) => [r.label, r.lockstep, r.merge])).toEqual([
      ['local-only', null, false], ['centralised', null, false], ['sync-avg', 'sync-avg', false], ['sync-dp', 'sync-dp', false], ['fedavg', null, true],
    ]);
    expect(c.base.evalSplit).toBe('heldout');
    expect(parse('--engine node --eval-split validation').base.evalSplit).toBe('validation');
    expect(() => parse('--eval-split validation')).toThrow(SimulateArgumentError);
    expect(() => parse('--engine node --baselines sync')).toThrow(SimulateArgumentError);
  });

  it('reads partitions', () => {
    expect(parse('--partition iid').base.partition).toEqual({ kind: 'iid' });
    expect(parse('--partition dirichlet:0.3').base.partition).toEqual({ kind: 'dirichlet', alpha: 0.3 });
    expect(() => parse('--partition dirichlet:-1')).toThrow(/alpha/);
    expect(() => parse('--partition shards')).toThrow(/genre, iid or dirichlet/);
  });

  it('reads network faults and Byzantine settings', () => {
    const c = parse('--tabs 6 --latency 400:tabs=2 --drop 0.25:tabs=2 --byzantine sign-flip:tabs=1:scale=4');
    expect(c.base.network).toEqual({ tabs: 2, latencyMs: 400, drop: 0.25 });
    expect(c.base.byzantine).toEqual({ mode: 'sign-flip', tabs: 1, scale: 4 });
    expect(() => parse('--tabs 6 --latency 400:tabs=2 --drop 0.25:tabs=3')).toThrow(/same number of tabs/);
    expect(() => parse('--tabs 2 --byzantine random:tabs=2')).toThrow(/no honest tab/);
    expect(() => parse('--byzantine evil')).toThrow(/unknown mode 'evil'/);
    expect(() => parse('--drop 1')).toThrow(/\[0, 1\)/);
  });

  it('refuses bad numbers and unknown options with a named error', () => {
    expect(() => parse('--tabs 0')).toThrow(SimulateArgumentError);
    expect(() => parse('--tabs 2 --browsers 3')).toThrow(/cannot exceed/);
    expect(() => parse('--codec fp8')).toThrow(/fp32, fp16 or int8/);
    expect(() => parse('--frobnicate 1')).toThrow(SimulateArgumentError);
    expect(() => parse('--sweep colour=red')).toThrow(/--sweep/);
  });

  it('reads --sparse k/C[:K] for the node engine, as an option and as a sweep', () => {
    expect(parse('--engine node --sparse 8/256').base.sparse).toEqual({ keep: 8, chunk: 256, keyframeEvery: 16 });
    expect(parse('--engine node --sparse 16/128:4').base.sparse).toEqual({ keep: 16, chunk: 128, keyframeEvery: 4 });
    expect(parse('--engine node').base.sparse).toBeUndefined();
    const sweep = parse('--engine node --sweep sparse=off,8/256:16');
    expect(applySweepValue(sweep.base, 'sparse', 'off', {}).sparse).toBeUndefined();
    expect(applySweepValue({ ...sweep.base, sparse: { keep: 1, chunk: 16, keyframeEvery: 1 } }, 'sparse', 'off', {}).sparse).toBeUndefined();
    expect(applySweepValue(sweep.base, 'sparse', '8/256:16', {}).sparse).toEqual({ keep: 8, chunk: 256, keyframeEvery: 16 });
    expect(() => parse('--engine node --sparse 200/256')).toThrow(/keep = 200 must be an integer in 1\.\.chunk\/2/);
    expect(() => parse('--engine node --sparse top8')).toThrow(/--sparse must be off or <keep>\/<chunk>/);
    expect(() => parse('--sparse 8/256')).toThrow(/--sparse needs --engine node/);
    expect(() => parse('--sweep sparse=off,8/256')).toThrow(/--sparse needs --engine node/);
  });
});

describe('fault schedules', () => {
  it('reads times in seconds, minutes and steps', () => {
    expect(parseFaultTime('90', 'x')).toEqual({ kind: 'seconds', value: 90 });
    expect(parseFaultTime('90s', 'x')).toEqual({ kind: 'seconds', value: 90 });
    expect(parseFaultTime('1.5m', 'x')).toEqual({ kind: 'seconds', value: 90 });
    expect(parseFaultTime('step20', 'x')).toEqual({ kind: 'step', value: 20 });
    expect(() => parseFaultTime('soon', 'x')).toThrow(/not a time/);
  });

  it('reads tab kills with and without restart', () => {
    expect(parseKill('0.5@60:restart=30')).toEqual({ share: 0.5, at: { kind: 'seconds', value: 60 }, restartAfterS: 30 });
    expect(parseKill('0.25@step10')).toEqual({ share: 0.25, at: { kind: 'step', value: 10 }, restartAfterS: null });
    expect(() => parseKill('0.5')).toThrow(/<share>@<time>/);
    expect(() => parseKill('1.5@10')).toThrow(/\(0, 1\]/);
    expect(() => parseKill('0.5@10:later=3')).toThrow(/unknown part/);
  });

  it('reads relay kills', () => {
    expect(parseRelayKill('2m:restart=20')).toEqual({ at: { kind: 'seconds', value: 120 }, restartAfterS: 20 });
    expect(parseRelayKill('step15')).toEqual({ at: { kind: 'step', value: 15 }, restartAfterS: null });
  });
});
