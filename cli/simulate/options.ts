// The options of `swarm simulate`: parsing, defaults, validation and the --help text. Pure (no I/O), so the
// parsing of fault schedules and sweeps is unit-tested on its own.
import { parseArgs } from 'node:util';
import { getStrategy, resolveParams } from '../../core/merge/registry.ts';
import { isPayloadCodec, type PayloadCodec } from '../../core/wire/codec.ts';
import { DEFAULT_SPARSE_CONFIG, sparseConfigProblem, type SparseConfig } from '../../core/wire/sparse-delta.ts';
import { parsePrivacyConfig, PrivacyConfigError, type PrivacyConfig } from '../../core/privacy/config.ts';
import type { MergeParams } from '../../core/merge/types.ts';
import { availableParallelism } from 'node:os';
import { BYZANTINE_MODES, PUBLISHED_VALUE_MODES, type ByzantineMode } from '../../core/swarm/byzantine.ts';
import { parseTopology, TopologyError, type Topology } from './node/links.ts';
import { getOuterOptimizer, resolveOuterParams } from '../../core/outer/registry.ts';
import { LORA_MODES, type LoraMode } from '../../core/model/adapter.ts';
import type { OuterConfig } from '../../core/wire/run-manifest.ts';

export class SimulateArgumentError extends Error {
  static override readonly name = 'SimulateArgumentError';
  override readonly name = SimulateArgumentError.name;
}

export type PartitionChoice = { kind: 'genre' } | { kind: 'iid' } | { kind: 'dirichlet'; alpha: number };

/** When a scheduled fault fires: seconds after the swarm started, or once the live tabs' mean step reaches a step. */
export type FaultTime = { kind: 'seconds'; value: number } | { kind: 'step'; value: number };

export interface TabKillFault {
  /** Share of the tabs killed at once (the highest slots first, rounded to at least one tab). */
  share: number;
  at: FaultTime;
  /** Reopen the killed tabs (same peer key, so they resume from their checkpoint) this many seconds later. */
  restartAfterS: number | null;
}

export interface RelayKillFault {
  at: FaultTime;
  /** Restart the relay (same identity and port) this many seconds later. */
  restartAfterS: number | null;
}

export { BYZANTINE_MODES, type ByzantineMode };

export interface ByzantineSetting {
  mode: ByzantineMode;
  tabs: number;
  /** sign-flip: published B = -scale·B; scaled: scale·B; random: noise of scale × the honest RMS. */
  scale: number;
}

export interface NetworkFault {
  /** Affects this many tabs (the highest slots). */
  tabs: number;
  /** Added delay on adapters sent and received, ms. */
  latencyMs: number;
  /** Share of adapter announcements and received adapters dropped, [0, 1). */
  drop: number;
}

export const BASELINES = ['local', 'central', 'sync-avg', 'sync-dp'] as const;
/** The baselines that run as one lockstep process (cli/simulate/node/lockstep.ts) rather than as peers. */
export type LockstepArm = 'sync-avg' | 'sync-dp';
export type Baseline = (typeof BASELINES)[number];

/** The node engine's simulated network and machines (ignored by the browser engine). */
export interface NodeEngineSettings {
  topology: Topology;
  /** One-way latency of every link, ms (≥ 1). */
  latencyMs: number;
  /** Link bandwidth, Mbit/s (0 = unlimited). */
  bandwidthMbps: number;
  /** Virtual ms a training step takes on an average peer. */
  stepMs: number;
  /** Per-peer step times spread uniformly over ±spread/2 around stepMs. */
  speedSpread: number;
  /** Worker threads (shards) the peers are spread over. */
  threads: number;
  /**
   * Virtual ms between the shards' synchronisations (at least the link latency): a payload reaches its receiver at
   * its arrival time or at the next synchronisation, whichever is later. Longer windows give each thread more steps
   * to run between barriers; 250 ms adds at most a quarter of a default step to a payload's age.
   */
  windowMs: number;
}

export interface SimulationSettings {
  label: string;
  engine: 'browser' | 'node';
  node: NodeEngineSettings;
  tabs: number;
  browsers: number;
  strategy: string;
  params: MergeParams;
  partition: PartitionChoice;
  genres: string[];
  localSteps: number;
  codec: PayloadCodec;
  /** Sparse updates on the links (node engine only): keyframes in `codec`, top-k int8 deltas between. Absent: off. */
  sparse?: SparseConfig;
  /** The run manifest's outer optimiser (null = none) and LoRA mode. */
  outer: OuterConfig | null;
  loraMode: LoraMode;
  /** Local steps per tab (0 = until --minutes or --target-loss). */
  steps: number;
  minutes: number;
  targetLoss: number | null;
  seed: number;
  batchSize: number;
  seqLen: number;
  lr: number;
  /**
   * 'cosine' decays to a tenth of the peak over the run's steps; 'constant' holds the peak after warm-up, which is
   * what a volunteer's tab sees in its first hours of the default run (whose decay spans 2000 steps).
   */
  schedule: 'cosine' | 'constant';
  evaluateEvery: number;
  evalBatches: number;
  backend: string;
  modelUrl: string;
  /** Longest wait, once every tab has loaded, for each to have direct neighbours before all start together. */
  warmupS: number;
  kills: TabKillFault[];
  relayKills: RelayKillFault[];
  network: NetworkFault | null;
  byzantine: ByzantineSetting | null;
  /** true: one merging swarm; false for the local-only baseline (merge=0, no p2p). */
  merge: boolean;
  /** Centralised baseline: one tab on the union of the data, tabs × steps steps. */
  centralised: boolean;
  /** A synchronous baseline run in lockstep in one process: sync-avg or sync-dp; null for peers. */
  lockstep: LockstepArm | null;
  /** What peers evaluate on: the reported held-out split, or validation (tuning runs). */
  evalSplit: 'heldout' | 'validation';
  /** Differential privacy of the run's manifest (every publish clipped and noised); null = off. */
  privacy: PrivacyConfig | null;
  /** How --privacy-* options turn a target ε into the manifest's privacy (kept so a sweep over ε can reuse it). */
  privacyPlan: PrivacyPlan;
}

/** The --privacy-* options other than ε; maxPublishes 0 = the run's publishes, ceil(steps / h). */
export interface PrivacyPlan {
  delta: number;
  clipNorm: number;
  samplingRate: number;
  maxPublishes: number;
}

export interface SimulateCommand {
  base: SimulationSettings;
  baselines: Baseline[];
  /** Sweep: option name and the values run in turn (empty: a single run). */
  sweep: { key: SweepKey; values: string[] } | null;
  /** Strategy-scoped parameters (`--param ties.density=0.3`), applied when that strategy runs. */
  scopedParams: Record<string, Record<string, string>>;
  outDir: string | null;
  appUrl: string | null;
  progressEveryS: number;
  /** Every run is repeated with each of these seeds (paired across arms); [base.seed] without --seeds. */
  seeds: number[];
}

export const SWEEP_KEYS = ['strategy', 'h', 'partition', 'codec', 'sparse', 'tabs', 'seed', 'epsilon'] as const;
export type SweepKey = (typeof SWEEP_KEYS)[number];

export const DEFAULT_GENRES = ['fiction', 'mystery', 'science_fiction', 'adventure'];

export const HELP = `usage: swarm simulate [options]      (npm run simulate -- [options])

Runs a swarm of real browser tabs (headless Chromium) against a real relay and the app, with faults on a schedule,
and writes a report folder: run-log.json (the dashboard's run-log format), summary.json and report.html.

The engine
  --engine <e>              browser (real tabs, default) | node (the same peer engine in Node on a simulated
                            network with a virtual clock, spread over worker threads; deterministic given the seed)
  --seeds <a,b,...>         repeat every run with each seed; the report adds mean ± sd per arm and paired per-seed
                            differences against the first arm
  node engine only:
  --topology <t>            auto | full | ring | regular:<k> | small-world:<k>:<p> (default auto: a full mesh up
                            to 13 peers, then a random 12-regular graph, as the dial policy's neighbour cap makes)
  --link-latency <ms>       one-way latency of every link (default 20)
  --bandwidth <Mbit/s>      bandwidth of every link (default 0 = unlimited)
  --step-ms <ms>            virtual time of one training step on an average peer (default 1000)
  --speed-spread <x>        per-peer step times spread over ±x/2 (default 0.5)
  --threads <n>             worker threads (default: the machine's cores, ${availableParallelism()} here)
  --window-ms <ms>          how often the threads synchronise, in virtual ms; a payload arrives at the earliest at
                            the next synchronisation (default 250; at least the link latency)

The swarm
  --tabs <n>                training tabs, or peers of the node engine (default 4)
  --browsers <n>            Chromium processes the tabs are spread over (default 1)
  --strategy <name>         merge strategy (default fedavg; see \`swarm merge --list\`)
  --param <k=v>             strategy parameter, repeatable; \`strategy.k=v\` applies to that strategy only
  --partition <p>           genre | iid | dirichlet:<alpha> (default genre: slot i trains genre i mod #genres)
  --genres <a,b,...>        genres of the run (default ${DEFAULT_GENRES.join(',')})
  --h <n>                   local steps between merges (default 5)
  --codec <c>               fp32 | fp16 | int8 adapter payloads (default fp16)
  --sparse <k/C[:K]|off>    node engine: between full adapters (keyframes, every K-th publication, default
                            ${DEFAULT_SPARSE_CONFIG.keyframeEvery}) links carry top-k deltas, the k largest of every C values int8 (e.g. 8/256)
  --outer <name>            outer optimiser after each merge: none | sgd | nesterov (default none)
  --outer-lr <x>            its outer learning rate (sgd default 1, nesterov 0.7)
  --outer-momentum <x>      nesterov's momentum β (default 0.9)
  --lora-mode <m>           standard (A and B train) | frozen-a (FFA-LoRA: the shared seeded A never trains) (default standard)
  --steps <n>               local steps per tab (default 40; 0 = run until --minutes or --target-loss)
  --minutes <m>             wall-clock limit of each run (default 10)
  --target-loss <x>         stop when the tabs' mean held-out loss over all genres is <= x; also the target of
                            the time/samples-to-target columns (default: the local-only baseline's final loss)
  --seed <n>                run seed: LoRA init and batches (default 1)
  --batch <n> --seq <n>     batch size and sequence length (default 4 and 64)
  --lr <x>                  peak learning rate (default 0.003)
  --schedule <s>            cosine (decay to 0.1 x peak over --steps) | constant (peak after warm-up) (default cosine)
  --eval <n>                held-out evaluation every n steps (default 10)
  --eval-batches <n>        held-out batches per genre per evaluation (default 2)
  --backend <b>             auto | wasm | webgpu | cpu (default wasm)
  --model <url>             base model folder served by the app (default /models/swarm-brown-byte-gpt2/)
  --warmup <s>              all tabs load and pause; then up to this many seconds for each to have 2 direct
                            neighbours before Resume is pressed in every tab at once (default 60; the run's clock
                            starts at Resume)

Faults (times: 90 = 90 s, 2m, or step20 = when the live tabs' mean step reaches 20)
  --kill <share>@<time>[:restart=<s>]    kill a share of the tabs (highest slots first), optionally reopen them
                                         s seconds later (they resume from their checkpoints); repeatable
  --relay-kill <time>[:restart=<s>]      kill the relay (SIGKILL), optionally restart it (same id and port)
  --latency <ms>[:tabs=<n>]              delay adapters sent and received by n tabs (default: all tabs)
  --drop <share>[:tabs=<n>]              drop a share of adapter messages of n tabs
  --byzantine <mode>[:tabs=<n>][:scale=<x>]
                                         n tabs (default 1) publish corrupted adapters: sign-flip (-x·B, x=1),
                                         scaled (x·B, x=10), random (noise x × the honest RMS, x=1), stale
                                         (always their first adapter), huge (the codec's limit), drift (a
                                         growing aligned push), sybil (all attackers send the same poison);
                                         node engine also: joiner (poison a newcomer's bootstrap), flood (junk
                                         payloads with every adapter); summaries count honest tabs only

Differential privacy (core/privacy; every publish is anchor + update clipped to C + Gaussian noise)
  --privacy-epsilon <x>     target ε of the run (default none = off); the noise multiplier is chosen so that
                            --privacy-publishes publishes spend at most x; \`--sweep epsilon=none,32,8,2\` runs arms
  --privacy-delta <x>       δ (default 1e-5)
  --privacy-clip <C>        clip norm of each published update (default 0.05)
  --privacy-sampling <q>    Poisson rate of a volunteer's records per round, which the accountant assumes
                            (default 0.02; simulated peers hold no own files, so q only sets the noise)
  --privacy-publishes <n>   publishes the budget must cover (default: the run's, ceil(steps / h))

Baselines and sweeps
  --baselines <list>        also run local,central,sync-avg,sync-dp (comma list; default none): local-only = same
                            tabs with merging off; centralised = one tab on the union of the data (iid) for
                            tabs × steps steps; sync-avg = every peer's adapter averaged with the run's strategy
                            every H steps (full mesh, no staleness); sync-dp = every peer's gradient averaged every
                            step. The two sync baselines run in one Node process in lockstep on the same batches
                            as the peers (also for --engine browser)
  --eval-split <s>          heldout (default) | validation: what every evaluation reads (tune on validation)
  --sweep <key=v1,v2,...>   run each value in turn and write one comparison report; keys: ${SWEEP_KEYS.join(', ')}

Output
  --out <dir>               report folder (default reports/sim-<time>)
  --url <url>               use an app already served there instead of starting one
  --progress <s>            seconds between progress lines (default 5)
  -h, --help                this text
`;

function parseNumber(name: string, raw: string, check: (v: number) => boolean, what: string): number {
  const v = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(v) || !check(v)) throw new SimulateArgumentError(`${name} must be ${what}, got '${raw}'`);
  return v;
}

const positiveInt = (name: string, raw: string) => parseNumber(name, raw, (v) => Number.isInteger(v) && v >= 1, 'a positive integer');
const nonNegativeInt = (name: string, raw: string) => parseNumber(name, raw, (v) => Number.isInteger(v) && v >= 0, 'a non-negative integer');

function parseEvalSplit(raw: string): 'heldout' | 'validation' {
  if (raw === 'heldout' || raw === 'validation') return raw;
  throw new SimulateArgumentError(`--eval-split must be heldout or validation, got '${raw}'`);
}

function parseSchedule(raw: string): 'cosine' | 'constant' {
  if (raw === 'cosine' || raw === 'constant') return raw;
  throw new SimulateArgumentError(`--schedule must be cosine or constant, got '${raw}'`);
}

/** `90`, `90s`, `2m`, `step20`. */
export function parseFaultTime(raw: string, where: string): FaultTime {
  const step = /^step(\d+)$/.exec(raw);
  if (step) return { kind: 'step', value: Number(step[1]) };
  const time = /^(\d+(?:\.\d+)?)(s|m)?$/.exec(raw);
  if (!time) throw new SimulateArgumentError(`${where}: '${raw}' is not a time (90, 90s, 2m or step20)`);
  return { kind: 'seconds', value: Number(time[1]) * (time[2] === 'm' ? 60 : 1) };
}

/** Splits `head:k=v:k=v` into the head and its named fields, refusing unknown field names. */
function fields(raw: string, where: string, allowed: string[]): { head: string; named: Record<string, string> } {
  const [head, ...rest] = raw.split(':');
  const named: Record<string, string> = {};
  for (const part of rest) {
    const eq = part.indexOf('=');
    const key = eq < 0 ? part : part.slice(0, eq);
    if (eq < 0 || !allowed.includes(key)) {
      throw new SimulateArgumentError(`${where}: unknown part '${part}' in '${raw}' (allowed: ${allowed.map((a) => `${a}=…`).join(', ')})`);
    }
    named[key] = part.slice(eq + 1);
  }
  return { head, named };
}

export function parseKill(raw: string): TabKillFault {
  const { head, named } = fields(raw, '--kill', ['restart']);
  const at = head.indexOf('@');
  if (at < 0) throw new SimulateArgumentError(`--kill: '${raw}' needs <share>@<time>, e.g. 0.5@60:restart=30`);
  const share = parseNumber('--kill share', head.slice(0, at), (v) => v > 0 && v <= 1, 'in (0, 1]');
  return {
    share,
    at: parseFaultTime(head.slice(at + 1), '--kill'),
    restartAfterS: named.restart === undefined ? null : parseNumber('--kill restart', named.restart, (v) => v >= 0, 'seconds >= 0'),
  };
}

export function parseRelayKill(raw: string): RelayKillFault {
  const { head, named } = fields(raw, '--relay-kill', ['restart']);
  return {
    at: parseFaultTime(head, '--relay-kill'),
    restartAfterS: named.restart === undefined ? null : parseNumber('--relay-kill restart', named.restart, (v) => v >= 0, 'seconds >= 0'),
  };
}

export function parseByzantine(raw: string, totalTabs: number, engine: 'browser' | 'node' = 'browser'): ByzantineSetting {
  const { head, named } = fields(raw, '--byzantine', ['tabs', 'scale']);
  // Real tabs play the modes that only change what they publish; joiner and flood need the node engine's transport.
  const known: readonly string[] = engine === 'node' ? BYZANTINE_MODES : PUBLISHED_VALUE_MODES;
  if (!known.includes(head)) {
    throw new SimulateArgumentError(`--byzantine: unknown mode '${head}' for the ${engine} engine (known: ${known.join(', ')})`);
  }
  const mode = head as ByzantineMode;
  const tabs = named.tabs === undefined ? 1 : positiveInt('--byzantine tabs', named.tabs);
  if (tabs >= totalTabs) throw new SimulateArgumentError(`--byzantine: ${tabs} Byzantine tabs of ${totalTabs} leaves no honest tab`);
  const defaultScale = mode === 'scaled' ? 10 : 1;
  const scale = named.scale === undefined ? defaultScale : parseNumber('--byzantine scale', named.scale, (v) => v > 0 && v <= 1000, 'in (0, 1000]');
  return { mode, tabs, scale };
}

function parseNetworkPart(raw: string, option: '--latency' | '--drop', totalTabs: number): { value: number; tabs: number } {
  const { head, named } = fields(raw, option, ['tabs']);
  const value =
    option === '--latency'
      ? parseNumber('--latency', head.replace(/ms$/, ''), (v) => v >= 0 && v <= 600_000, 'milliseconds in [0, 600000]')
      : parseNumber('--drop', head, (v) => v >= 0 && v < 1, 'a share in [0, 1)');
  const tabs = named.tabs === undefined ? totalTabs : positiveInt(`${option} tabs`, named.tabs);
  if (tabs > totalTabs) throw new SimulateArgumentError(`${option}: tabs=${tabs} but the run has ${totalTabs} tabs`);
  return { value, tabs };
}

export function parsePartition(raw: string): PartitionChoice {
  if (raw === 'genre' || raw === 'iid') return { kind: raw };
  const m = /^dirichlet(?::|=)?(.*)$/.exec(raw);
  if (m) {
    const alpha = m[1] === '' ? 0.5 : parseNumber('--partition dirichlet alpha', m[1], (v) => v > 0, 'a positive number');
    return { kind: 'dirichlet', alpha };
  }
  throw new SimulateArgumentError(`--partition must be genre, iid or dirichlet:<alpha>, got '${raw}'`);
}

export function partitionLabel(p: PartitionChoice): string {
  return p.kind === 'dirichlet' ? `dirichlet:${p.alpha}` : p.kind;
}

/** `3` → 3, `true` → true, anything else stays a string; resolveParams checks the result against the strategy. */
function paramValue(raw: string): number | boolean | string {
  if (raw === 'true' || raw === 'false') return raw === 'true';
  const n = Number(raw);
  return raw.trim() !== '' && Number.isFinite(n) ? n : raw;
}

/** The strategy's parameters for one run: unscoped --param values plus those scoped to this strategy, checked. */
export function strategyParams(strategy: string, unscoped: Record<string, string>, scoped: Record<string, Record<string, string>>): MergeParams {
  const given: Record<string, unknown> = {};
  for (const [k, v] of Object.entries({ ...unscoped, ...(scoped[strategy] ?? {}) })) given[k] = paramValue(v);
  try {
    return resolveParams(getStrategy(strategy), given);
  } catch (error) {
    throw new SimulateArgumentError(`--strategy/--param: ${(error as Error).message}`);
  }
}

export function parseSimulateArgs(argv: string[], nowMs = Date.now()): SimulateCommand | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: false,
      strict: true,
      options: {
        tabs: { type: 'string', default: '4' },
        browsers: { type: 'string', default: '1' },
        strategy: { type: 'string', default: 'fedavg' },
        param: { type: 'string', multiple: true, default: [] },
        partition: { type: 'string', default: 'genre' },
        genres: { type: 'string', default: DEFAULT_GENRES.join(',') },
        h: { type: 'string', default: '5' },
        codec: { type: 'string', default: 'fp16' },
        sparse: { type: 'string', default: 'off' },
        outer: { type: 'string', default: 'none' },
        'outer-lr': { type: 'string' },
        'outer-momentum': { type: 'string' },
        'lora-mode': { type: 'string', default: 'standard' },
        steps: { type: 'string', default: '40' },
        minutes: { type: 'string', default: '10' },
        'target-loss': { type: 'string' },
        seed: { type: 'string', default: '1' },
        batch: { type: 'string', default: '4' },
        seq: { type: 'string', default: '64' },
        lr: { type: 'string', default: '0.003' },
        schedule: { type: 'string', default: 'cosine' },
        eval: { type: 'string', default: '10' },
        'eval-batches': { type: 'string', default: '2' },
        backend: { type: 'string', default: 'wasm' },
        model: { type: 'string', default: '/models/swarm-brown-byte-gpt2/' },
        warmup: { type: 'string', default: '60' },
        kill: { type: 'string', multiple: true, default: [] },
        'relay-kill': { type: 'string', multiple: true, default: [] },
        latency: { type: 'string' },
        drop: { type: 'string' },
        byzantine: { type: 'string' },
        baselines: { type: 'string', default: '' },
        'eval-split': { type: 'string', default: 'heldout' },
        sweep: { type: 'string' },
        out: { type: 'string' },
        url: { type: 'string' },
        progress: { type: 'string', default: '5' },
        engine: { type: 'string', default: 'browser' },
        seeds: { type: 'string' },
        topology: { type: 'string', default: 'auto' },
        'link-latency': { type: 'string', default: '20' },
        bandwidth: { type: 'string', default: '0' },
        'step-ms': { type: 'string', default: '1000' },
        'speed-spread': { type: 'string', default: '0.5' },
        threads: { type: 'string', default: String(availableParallelism()) },
        'window-ms': { type: 'string', default: '250' },
        'privacy-epsilon': { type: 'string', default: 'none' },
        'privacy-delta': { type: 'string', default: '1e-5' },
        'privacy-clip': { type: 'string', default: '0.05' },
        'privacy-sampling': { type: 'string', default: '0.02' },
        'privacy-publishes': { type: 'string', default: '0' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (error) {
    throw new SimulateArgumentError(`${(error as Error).message} (see --help)`);
  }
  const v = parsed.values;
  if (v.help) return 'help';
  const tabs = positiveInt('--tabs', v.tabs);
  const browsers = positiveInt('--browsers', v.browsers);
  if (browsers > tabs) throw new SimulateArgumentError(`--browsers (${browsers}) cannot exceed --tabs (${tabs})`);
  if (!isPayloadCodec(v.codec)) throw new SimulateArgumentError(`--codec must be fp32, fp16 or int8, got '${v.codec}'`);
  const genres = v.genres.split(',').map((g) => g.trim()).filter((g) => g !== '');
  if (genres.length === 0) throw new SimulateArgumentError('--genres needs at least one genre');
  if (!['auto', 'wasm', 'webgpu', 'cpu'].includes(v.backend)) throw new SimulateArgumentError(`--backend must be auto, wasm, webgpu or cpu, got '${v.backend}'`);
  if (!/^\/[A-Za-z0-9._/-]*\/$/.test(v.model)) throw new SimulateArgumentError(`--model must be a folder path served by the app, like /models/x/, got '${v.model}'`);

  const unscoped: Record<string, string> = {};
  const scopedParams: Record<string, Record<string, string>> = {};
  for (const p of v.param) {
    const m = /^(?:([a-z0-9-]+)\.)?([A-Za-z][A-Za-z0-9]*)=(.*)$/.exec(p);
    if (!m) throw new SimulateArgumentError(`--param must look like name=value or strategy.name=value, got '${p}'`);
    if (m[1]) (scopedParams[m[1]] ??= {})[m[2]] = m[3];
    else unscoped[m[2]] = m[3];
  }

  const baselines: Baseline[] = [];
  for (const b of v.baselines.split(',').map((s) => s.trim()).filter((s) => s !== '' && s !== 'none')) {
    if (!(BASELINES as readonly string[]).includes(b)) throw new SimulateArgumentError(`--baselines: unknown baseline '${b}' (known: ${BASELINES.join(', ')})`);
    if (!baselines.includes(b as Baseline)) baselines.push(b as Baseline);
  }

  let network: NetworkFault | null = null;
  if (v.latency !== undefined || v.drop !== undefined) {
    const latency = v.latency !== undefined ? parseNetworkPart(v.latency, '--latency', tabs) : null;
    const drop = v.drop !== undefined ? parseNetworkPart(v.drop, '--drop', tabs) : null;
    if (latency && drop && latency.tabs !== drop.tabs) throw new SimulateArgumentError('--latency and --drop must name the same number of tabs');
    network = { tabs: (latency ?? drop)!.tabs, latencyMs: latency?.value ?? 0, drop: drop?.value ?? 0 };
  }

  let sweep: SimulateCommand['sweep'] = null;
  if (v.sweep !== undefined) {
    const m = /^([a-z]+)=(.+)$/.exec(v.sweep);
    if (!m || !(SWEEP_KEYS as readonly string[]).includes(m[1])) {
      throw new SimulateArgumentError(`--sweep must look like <key>=v1,v2 with key one of ${SWEEP_KEYS.join(', ')}, got '${v.sweep}'`);
    }
    const values = m[2].split(',').map((s) => s.trim()).filter((s) => s !== '');
    if (values.length === 0) throw new SimulateArgumentError('--sweep needs at least one value');
    sweep = { key: m[1] as SweepKey, values };
  }

  if (v.engine !== 'browser' && v.engine !== 'node') throw new SimulateArgumentError(`--engine must be browser or node, got '${v.engine}'`);
  const engine = v.engine;
  let topology: Topology;
  try {
    topology = parseTopology(v.topology);
  } catch (error) {
    if (error instanceof TopologyError) throw new SimulateArgumentError(error.message);
    throw error;
  }
  const node: NodeEngineSettings = {
    topology,
    latencyMs: parseNumber('--link-latency', v['link-latency'], (x) => x >= 1 && x <= 600_000, 'milliseconds in [1, 600000]'),
    bandwidthMbps: parseNumber('--bandwidth', v.bandwidth, (x) => x >= 0, 'Mbit/s >= 0'),
    stepMs: parseNumber('--step-ms', v['step-ms'], (x) => x >= 1, 'milliseconds >= 1'),
    speedSpread: parseNumber('--speed-spread', v['speed-spread'], (x) => x >= 0 && x < 2, 'in [0, 2)'),
    threads: positiveInt('--threads', v.threads),
    windowMs: parseNumber('--window-ms', v['window-ms'], (x) => x >= 1 && x <= 600_000, 'milliseconds in [1, 600000]'),
  };
  const seeds = v.seeds === undefined ? null : v.seeds.split(',').map((x) => nonNegativeInt('--seeds', x.trim()));
  if (seeds && new Set(seeds).size !== seeds.length) throw new SimulateArgumentError('--seeds lists a seed twice');
  if (engine === 'node' && (v['relay-kill'].length > 0 || browsers > 1)) {
    throw new SimulateArgumentError('--relay-kill and --browsers need real tabs (--engine browser); the node engine has no relay or browsers');
  }
  if (engine === 'browser' && v['eval-split'] !== 'heldout') throw new SimulateArgumentError('--eval-split validation needs --engine node (tabs evaluate on held-out)');
  const steps = nonNegativeInt('--steps', v.steps);
  if (engine === 'node' && steps === 0) throw new SimulateArgumentError('--engine node needs --steps > 0 (its clock is virtual)');
  const minutes = parseNumber('--minutes', v.minutes, (x) => x > 0, 'a positive number of minutes');
  const targetLoss = v['target-loss'] === undefined ? null : parseNumber('--target-loss', v['target-loss'], (x) => x > 0, 'a positive loss');
  const base: SimulationSettings = {
    label: v.strategy,
    engine,
    node,
    tabs,
    browsers,
    strategy: v.strategy,
    params: {},
    partition: parsePartition(v.partition),
    genres,
    localSteps: positiveInt('--h', v.h),
    codec: v.codec,
    ...sparseSetting(v.sparse, '--sparse'),
    ...parseOuterOptions(v.outer, v['outer-lr'], v['outer-momentum'], v['lora-mode']),
    steps,
    minutes,
    targetLoss,
    seed: seeds ? seeds[0] : nonNegativeInt('--seed', v.seed),
    batchSize: positiveInt('--batch', v.batch),
    seqLen: positiveInt('--seq', v.seq),
    lr: parseNumber('--lr', v.lr, (x) => x > 0 && x < 1, 'in (0, 1)'),
    schedule: parseSchedule(v.schedule),
    evaluateEvery: positiveInt('--eval', v.eval),
    evalBatches: positiveInt('--eval-batches', v['eval-batches']),
    backend: v.backend,
    modelUrl: v.model,
    warmupS: parseNumber('--warmup', v.warmup, (x) => x >= 0 && x <= 600, 'seconds in [0, 600]'),
    kills: v.kill.map(parseKill),
    relayKills: v['relay-kill'].map(parseRelayKill),
    network,
    byzantine: v.byzantine === undefined ? null : parseByzantine(v.byzantine, tabs, engine),
    merge: true,
    centralised: false,
    lockstep: null,
    evalSplit: parseEvalSplit(v['eval-split']),
    privacy: null,
    privacyPlan: {
      delta: parseNumber('--privacy-delta', v['privacy-delta'], (x) => x > 0 && x < 1, 'in (0, 1)'),
      clipNorm: parseNumber('--privacy-clip', v['privacy-clip'], (x) => x > 0, 'a positive norm'),
      samplingRate: parseNumber('--privacy-sampling', v['privacy-sampling'], (x) => x > 0 && x <= 1, 'in (0, 1]'),
      maxPublishes: nonNegativeInt('--privacy-publishes', v['privacy-publishes']),
    },
  };
  base.privacy = privacyFor(base, v['privacy-epsilon'], '--privacy-epsilon');
  // Check every strategy this command will run now, not after an hour of sweeping.
  const strategies = sweep?.key === 'strategy' ? sweep.values : [base.strategy];
  for (const s of strategies) strategyParams(s, sweep?.key === 'strategy' ? {} : unscoped, scopedParams);
  base.params = sweep?.key === 'strategy' ? {} : strategyParams(base.strategy, unscoped, scopedParams);
  if (sweep) for (const value of sweep.values) applySweepValue(base, sweep.key, value, scopedParams);
  if (engine === 'browser' && (base.sparse || (sweep?.key === 'sparse' && sweep.values.some((x) => x !== 'off')))) {
    // Real tabs would publish full adapters under a manifest that promises deltas: p2p/exchange has no delta stream yet.
    throw new SimulateArgumentError('--sparse needs --engine node (real tabs do not send sparse deltas yet)');
  }
  const stamp = new Date(nowMs).toISOString().replace(/[:.]/g, '-').slice(0, 19);
  return {
    base,
    baselines,
    sweep,
    scopedParams,
    outDir: v.out ?? `reports/sim-${stamp}`,
    appUrl: v.url ?? null,
    progressEveryS: parseNumber('--progress', v.progress, (x) => x > 0, 'a positive number of seconds'),
    seeds: seeds ?? [base.seed],
  };
}

/** `off`, or `<keep>/<chunk>[:<keyframeEvery>]` (core/wire/sparse-delta.ts), as a settings fragment. */
export function sparseSetting(raw: string, option: string): { sparse?: SparseConfig } {
  if (raw === 'off') return {};
  const m = /^(\d+)\/(\d+)(?::(\d+))?$/.exec(raw);
  if (!m) throw new SimulateArgumentError(`${option} must be off or <keep>/<chunk>[:<keyframe every>], like 8/256:16, got '${raw}'`);
  const config: SparseConfig = { keep: Number(m[1]), chunk: Number(m[2]), keyframeEvery: m[3] === undefined ? DEFAULT_SPARSE_CONFIG.keyframeEvery : Number(m[3]) };
  const problem = sparseConfigProblem(config);
  if (problem) throw new SimulateArgumentError(`${option}: ${problem}`);
  return { sparse: config };
}

/** --outer, --outer-lr, --outer-momentum and --lora-mode, checked against core/outer's declarations. */
export function parseOuterOptions(name: string, lr: string | undefined, momentum: string | undefined, loraMode: string): { outer: OuterConfig | null; loraMode: LoraMode } {
  if (!(LORA_MODES as readonly string[]).includes(loraMode)) throw new SimulateArgumentError(`--lora-mode must be one of ${LORA_MODES.join(', ')}, got '${loraMode}'`);
  const params: Record<string, number> = {};
  if (lr !== undefined) params.lr = parseNumber('--outer-lr', lr, () => true, 'a number');
  if (momentum !== undefined) params.momentum = parseNumber('--outer-momentum', momentum, () => true, 'a number');
  try {
    resolveOuterParams(getOuterOptimizer(name), params);
  } catch (error) {
    throw new SimulateArgumentError(`--outer: ${(error as Error).message}`);
  }
  return { outer: name === 'none' ? null : { name, params }, loraMode: loraMode as LoraMode };
}

/** The settings of one run of a sweep: the base with the swept option set to one value. */
export function applySweepValue(base: SimulationSettings, key: SweepKey, value: string, scoped: Record<string, Record<string, string>>): SimulationSettings {
  const s: SimulationSettings = { ...base, label: `${key}=${value}` };
  switch (key) {
    case 'strategy':
      s.strategy = value;
      s.params = strategyParams(value, {}, scoped);
      s.label = value;
      break;
    case 'h':
      s.localSteps = positiveInt('--sweep h', value);
      break;
    case 'partition':
      s.partition = parsePartition(value);
      break;
    case 'codec':
      if (!isPayloadCodec(value)) throw new SimulateArgumentError(`--sweep codec: unknown codec '${value}'`);
      s.codec = value;
      break;
    case 'sparse':
      delete s.sparse;
      Object.assign(s, sparseSetting(value, '--sweep sparse'));
      break;
    case 'tabs':
      s.tabs = positiveInt('--sweep tabs', value);
      s.browsers = Math.min(s.browsers, s.tabs);
      break;
    case 'seed':
      s.seed = nonNegativeInt('--sweep seed', value);
      break;
    case 'epsilon':
      s.privacy = privacyFor(s, value, '--sweep epsilon');
      s.label = value === 'none' ? 'no-dp' : `eps-${value}`;
      break;
  }
  if (key !== 'epsilon' && s.privacy) s.privacy = privacyFor(s, String(s.privacy.targetEpsilon), '--privacy-epsilon');
  return s;
}

/**
 * The manifest's privacy for target ε `raw` ('none' = off), checked by core/privacy so a bad setting is refused in
 * its words (ε ≤ 0, δ out of range, a budget no noise multiplier up to 100 can meet) before any run starts.
 */
export function privacyFor(s: Pick<SimulationSettings, 'privacyPlan' | 'steps' | 'localSteps'>, raw: string, option: string): PrivacyConfig | null {
  if (raw === 'none') return null;
  const targetEpsilon = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(targetEpsilon)) throw new SimulateArgumentError(`${option} must be a number or none, got '${raw}'`);
  const { delta, clipNorm, samplingRate } = s.privacyPlan;
  const maxPublishes = s.privacyPlan.maxPublishes > 0 ? s.privacyPlan.maxPublishes : Math.max(1, Math.ceil(s.steps / s.localSteps));
  try {
    return parsePrivacyConfig({ targetEpsilon, delta, clipNorm, samplingRate, maxPublishes }, option);
  } catch (error) {
    if (error instanceof PrivacyConfigError) throw new SimulateArgumentError(error.message);
    throw error;
  }
}

/** The runs a command makes, in order: baselines first (their final loss is the default target), then the swarm runs. */
export function plannedRuns(cmd: SimulateCommand): SimulationSettings[] {
  const runs: SimulationSettings[] = [];
  const clean = { kills: [], relayKills: [], network: null, byzantine: null };
  if (cmd.baselines.includes('local')) runs.push({ ...cmd.base, ...clean, label: 'local-only', merge: false });
  if (cmd.baselines.includes('central')) {
    runs.push({ ...cmd.base, ...clean, label: 'centralised', merge: false, centralised: true, browsers: 1 });
  }
  for (const arm of ['sync-avg', 'sync-dp'] as const) if (cmd.baselines.includes(arm)) runs.push({ ...cmd.base, ...clean, label: arm, merge: false, lockstep: arm });
  if (cmd.sweep) for (const value of cmd.sweep.values) runs.push(applySweepValue(cmd.base, cmd.sweep.key, value, cmd.scopedParams));
  else runs.push(cmd.base);
  return runs;
}
