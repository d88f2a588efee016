// `swarm peer`: a headless peer in Node that joins a real swarm next to browser tabs. The same peer engine as a tab
// (core/swarm/peer-engine.ts, on tfjs WASM) and the same protocol session (p2p/peer-session.ts) over the same libp2p
// node: WebSockets to the relays, WebRTC (node-datachannel) to tabs and to other Node peers. Checkpoints go to
// files in --data-dir and a restart resumes from them; Ctrl-C stops after a last checkpoint. The engine trains in a
// worker thread (cli/peer-worker.ts), so the node's thread stays free for handshakes, as a tab's page does.
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import type { EngineOptions, EngineStatus, MainToWorker, ReadyInfo } from '../core/swarm/engine-protocol.ts';
import { parseRunLink, type RunLink } from '../core/swarm/run.ts';
import { decodeRunManifest, encodeRunManifest, runManifestId, type RunManifest } from '../core/wire/run-manifest.ts';
import { PeerSession, type NetworkState, type RunLookup, type SessionProblemKind } from '../p2p/peer-session.ts';
import { InvalidRelayAddressError, parseRelayList } from '../p2p/relay-config.ts';
import type { NodeBackend } from './tf-node.ts';
import { writeFileAtomic } from './file-store.ts';
import type { FromPeerWorker, PeerWorkerInit, ToPeerWorker } from './peer-worker.ts';
import { AssetsMissingError, ensurePreparedCorpus } from './prepare-assets.ts';
import { loadOrCreateKey } from './relay.ts';

export const HELP = `usage: swarm peer --run <run link or manifest id> --relays <multiaddr>[,<multiaddr>…] [options]
  --run LINK            the run to join: a run link (base64url manifest), a 64-hex manifest id (asked of the
                        swarm's peers unless this data dir knows it), or 'default' (default: default)
  --relays LIST         relay multiaddrs ending in /p2p/<relay id>, comma separated
                        (default: public/relay.json, which \`npm run relay\` writes)
  --name NAME           this peer's name (default: a random one); picks the default data dir
  --data-dir DIR        checkpoints, identity, known runs (default .data/peer-<name>); a restart resumes from it
  --genre NAME          train on this Brown genre only
  --slot N              or: take partition slot N of the run's data split (default 0)
  --steps N             stop training after N local steps and keep serving the adapter (default 0 = never stop)
  --duty X              share of the time spent training, (0, 1] (default 1)
  --bootstrap MS        without a checkpoint, wait this long for neighbours' adapters to start from (default 20000)
  --eval N              held-out evaluation every N steps (default 40; 0 = never)
  --eval-batches N      held-out batches per genre per evaluation (default 2)
  --checkpoint N        checkpoint at least every N steps (default 20; merges checkpoint too)
  --telemetry MS        telemetry report interval (default 10000)
  --model DIR           base model folder (default: public/ + the run's base model path)
  --backend wasm|cpu    tfjs backend (default wasm)
  --status-file FILE    rewrite this JSON file with the peer's state every second (step, merges, neighbours…)
  --progress N          print a progress line every N steps (default: every H steps of the run)
  --lookup-timeout S    a run id that every peer asked says it does not know after S seconds is an error (default 60)`;

export class PeerUsageError extends Error {
  static override readonly name = 'PeerUsageError';
  override readonly name = PeerUsageError.name;
}

export interface PeerCommand {
  run: string;
  relays: string[] | null;
  name: string;
  dataDir: string;
  genre?: string;
  slot: number;
  steps: number;
  duty: number;
  bootstrapMs: number;
  evaluateEvery: number;
  evalBatches: number;
  checkpointEvery: number;
  telemetryMs: number;
  modelDir?: string;
  backend: NodeBackend;
  statusFile?: string;
  progressEvery?: number;
  lookupTimeoutMs: number;
}

function integer(text: string | undefined, what: string, fallback: number, min = 0): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min) throw new PeerUsageError(`${what} must be an integer ≥ ${min}, got '${text}'`);
  return value;
}

/** Parses and checks the command line; a malformed value is a PeerUsageError naming it. */
export function parsePeerArgs(argv: string[]): PeerCommand | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        run: { type: 'string', default: 'default' },
        relays: { type: 'string' },
        name: { type: 'string' },
        'data-dir': { type: 'string' },
        genre: { type: 'string' },
        slot: { type: 'string' },
        steps: { type: 'string' },
        duty: { type: 'string' },
        bootstrap: { type: 'string' },
        eval: { type: 'string' },
        'eval-batches': { type: 'string' },
        checkpoint: { type: 'string' },
        telemetry: { type: 'string' },
        model: { type: 'string' },
        backend: { type: 'string', default: 'wasm' },
        'status-file': { type: 'string' },
        progress: { type: 'string' },
        'lookup-timeout': { type: 'string' },
        help: { type: 'boolean', default: false },
      },
    }));
  } catch (error) {
    // node:util's messages run over several lines; the first one names the problem.
    throw new PeerUsageError((error as Error).message.split('\n')[0]);
  }
  if (values.help) return 'help';
  if (values.genre !== undefined && values.slot !== undefined) throw new PeerUsageError('--genre and --slot exclude each other: a peer trains on one genre, or on one slot of the run\'s split');
  if (values.name !== undefined && !/^[A-Za-z0-9_.-]{1,64}$/.test(values.name)) throw new PeerUsageError(`--name may hold letters, digits, '_', '.', '-' (at most 64), got '${values.name}'`);
  const duty = values.duty === undefined ? 1 : Number(values.duty);
  if (!(duty > 0 && duty <= 1)) throw new PeerUsageError(`--duty must be in (0, 1], got '${values.duty}'`);
  if (values.backend !== 'wasm' && values.backend !== 'cpu') throw new PeerUsageError(`--backend must be wasm or cpu, got '${values.backend}'`);
  let relays: string[] | null = null;
  if (values.relays !== undefined) {
    try {
      relays = parseRelayList(values.relays);
    } catch (error) {
      if (error instanceof InvalidRelayAddressError) throw new PeerUsageError(`--relays: ${error.message}`);
      throw error;
    }
    if (relays.length === 0) throw new PeerUsageError('--relays is empty');
  }
  const name = values.name ?? `node-${randomBytes(4).toString('hex')}`;
  const progress = values.progress === undefined ? undefined : integer(values.progress, '--progress', 0, 1);
  return {
    run: values.run!,
    relays,
    name,
    dataDir: resolve(values['data-dir'] ?? join('.data', `peer-${name}`)),
    genre: values.genre,
    slot: integer(values.slot, '--slot', 0),
    steps: integer(values.steps, '--steps', 0),
    duty,
    bootstrapMs: integer(values.bootstrap, '--bootstrap', 20_000),
    evaluateEvery: integer(values.eval, '--eval', 40),
    evalBatches: integer(values['eval-batches'], '--eval-batches', 2, 1),
    checkpointEvery: integer(values.checkpoint, '--checkpoint', 20, 1),
    telemetryMs: integer(values.telemetry, '--telemetry', 10_000, 1000),
    modelDir: values.model,
    backend: values.backend,
    statusFile: values['status-file'] ? resolve(values['status-file']) : undefined,
    progressEvery: progress,
    lookupTimeoutMs: integer(values['lookup-timeout'], '--lookup-timeout', 60, 1) * 1000,
  };
}

/** Bad input found once the peer runs (a run nobody knows, a model that does not match the run). */
export class PeerFatalError extends Error {
  static override readonly name = 'PeerFatalError';
  override readonly name = PeerFatalError.name;
}

const ROOT = join(import.meta.dirname, '..');

/** The relays `npm run relay` advertises in public/relay.json, when --relays is not given. */
function relaysFromConfig(): string[] {
  const path = join(ROOT, 'public', 'relay.json');
  if (!existsSync(path)) throw new PeerUsageError('no relay given: pass --relays <multiaddr> (a relay prints it; `npm run relay` starts one and writes public/relay.json)');
  let relays: unknown;
  try {
    relays = (JSON.parse(readFileSync(path, 'utf8')) as { relays?: unknown }).relays;
  } catch (error) {
    throw new PeerUsageError(`${path} is not valid JSON (${(error as Error).message}): pass --relays <multiaddr>`);
  }
  if (!Array.isArray(relays) || !relays.every((r) => typeof r === 'string')) throw new PeerUsageError(`${path} holds no "relays" list: pass --relays <multiaddr>`);
  try {
    return parseRelayList(relays.join(','));
  } catch (error) {
    throw new PeerUsageError(`${path}: ${(error as Error).message}`);
  }
}

/** A manifest this data dir joined before, by its id (as a tab remembers runs in localStorage). */
async function knownManifest(dataDir: string, id: string): Promise<RunManifest | null> {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await readFile(join(dataDir, 'runs', `${id}.json`)));
  } catch {
    return null;
  }
  const decoded = decodeRunManifest(bytes);
  return decoded.ok && runManifestId(decoded.value) === id ? decoded.value : null;
}

async function rememberManifest(dataDir: string, manifest: RunManifest): Promise<void> {
  await mkdir(join(dataDir, 'runs'), { recursive: true });
  await writeFileAtomic(join(dataDir, 'runs', `${runManifestId(manifest)}.json`), encodeRunManifest(manifest));
}

const short = (peerId: string) => `…${peerId.slice(-6)}`;
const megabytes = (bytes: number) => `${(bytes / 1e6).toFixed(2)} MB`;

/** What --status-file holds: enough for a script (or the e2e spec) to follow the peer without parsing its lines. */
export interface PeerStatusFile {
  name: string;
  peerId: string | null;
  pid: number;
  updatedAtMs: number;
  manifestId: string | null;
  wireRunId: string | null;
  phase: string;
  step: number;
  trainLoss: number | null;
  heldOut: EngineStatus['heldOut'];
  baseHeldOut: EngineStatus['baseHeldOut'];
  merges: number;
  mergeHistory: Array<{ step: number; inputs: string[]; outcome?: string }>;
  /** Direct neighbours (the same list a tab's probe and telemetry show). */
  neighbours: string[];
  /** The engine's neighbour table: whose adapters it holds, their versions and weights. */
  neighbourTable: EngineStatus['neighbours'];
  /** Peers still being dialled directly, with the last dial error. */
  dialPending: NetworkState['dialPending'];
  relayConnected: boolean;
  bytesSent: number;
  bytesReceived: number;
  checkpoint: EngineStatus['checkpoint'];
  resumedFromStep: number | null;
  adoptedFrom: EngineStatus['adoptedFrom'];
  runLookup: RunLookup | null;
}

export async function main(argv: string[]): Promise<number> {
  const code = await runPeer(argv);
  // Whatever handle might still be open (a socket closing, a timer of the engine's), the command is over.
  setTimeout(() => process.exit(code), 2000).unref();
  return code;
}

/** The command without the process exit (tests call this). */
export async function runPeer(argv: string[]): Promise<number> {
  let cmd: PeerCommand | 'help';
  let relays: string[];
  try {
    cmd = parsePeerArgs(argv);
    if (cmd === 'help') {
      console.log(HELP);
      return 0;
    }
    relays = cmd.relays ?? relaysFromConfig();
  } catch (error) {
    if (error instanceof PeerUsageError) {
      console.error(`swarm peer: ${error.message}`);
      return 2;
    }
    throw error;
  }
  const run = parseRunLink(cmd.run);
  if (!run.ok) {
    console.error(`swarm peer: --run is not a run link or a manifest id (${run.reason}: ${run.detail})`);
    return 2;
  }
  let corpusDir: string;
  try {
    corpusDir = ensurePreparedCorpus(ROOT, (line) => console.log(`[peer] ${line}`));
  } catch (error) {
    if (!(error instanceof AssetsMissingError)) throw error;
    console.error(`swarm peer: ${error.message}`);
    return 1;
  }
  return new NodePeer(cmd, relays, corpusDir).run(run.value);
}

class NodePeer {
  private worker?: Worker;
  private shutDown: ((status: EngineStatus | null) => void) | null = null;
  private readonly session: PeerSession;
  private info: ReadyInfo | null = null;
  private status: EngineStatus | null = null;
  private network: NetworkState;
  private lookup: RunLookup | null = null;
  private lastNeighbours = '';
  private lastProgressStep = -1;
  private fatal: ((error: PeerFatalError) => void) | null = null;
  private stopping = false;
  private timer?: ReturnType<typeof setInterval>;
  private mergeHistory: PeerStatusFile['mergeHistory'] = [];
  private readonly signalHandlers: Array<() => void> = [];

  constructor(
    private readonly cmd: PeerCommand,
    private readonly relays: string[],
    private readonly corpusDir: string,
  ) {
    this.session = new PeerSession(
      {
        toEngine: (message: MainToWorker, transfer?: ArrayBuffer[]) => this.toEngine(message, transfer),
        notice: (level, message) => this.say(level === 'warning' ? `warning: ${message}` : message),
        problem: (kind, message) => this.problem(kind, message),
        clearProblem: () => undefined,
      },
      { telemetryMs: cmd.telemetryMs, duty: cmd.duty, relayHint: 'check the --relays address and that the relay runs' },
    );
    this.network = this.session.network();
  }

  private say(line: string): void {
    console.log(`[peer] ${line}`);
  }

  private problem(kind: SessionProblemKind, message: string): void {
    this.say(`${kind === 'run-mismatch' ? 'refused' : 'waiting'}: ${message}`);
  }

  /** The worker handles messages in order, each after the one before (init first). */
  private toEngine(message: ToPeerWorker, transfer: ArrayBuffer[] = []): void {
    this.worker?.postMessage(message, transfer);
  }

  async run(link: RunLink): Promise<number> {
    const cmd = this.cmd;
    await mkdir(cmd.dataDir, { recursive: true });
    const failed = new Promise<PeerFatalError>((resolve) => (this.fatal = resolve));
    const signalled = new Promise<string>((resolve) => {
      for (const signal of ['SIGINT', 'SIGTERM'] as const) {
        const handler = () => {
          if (this.stopping) {
            this.say(`${signal} again: exiting without waiting for the checkpoint`);
            process.exit(130);
          }
          resolve(signal);
        };
        process.on(signal, handler);
        this.signalHandlers.push(() => process.off(signal, handler));
      }
    });
    const privateKey = await loadOrCreateKey(join(cmd.dataDir, 'peer.key'));
    const nodeStarted = this.session.start(this.relays, { privateKey });
    const node = await nodeStarted;
    if (!node) return this.end(1, new PeerFatalError('the peer-to-peer node did not start (the reason is above)'));
    this.say(`peer ${node.peerId.toString()} (${cmd.name}), data in ${cmd.dataDir}`);
    this.say(`connecting to ${this.relays.length === 1 ? 'relay' : 'relays'} ${this.relays.join(', ')}; it is retried with backoff until it answers`);
    this.timer = setInterval(() => this.tick(), 1000);

    let manifest: RunManifest | null = null;
    if (link.kind === 'manifest') manifest = link.manifest;
    if (link.kind === 'id') {
      manifest = await knownManifest(cmd.dataDir, link.id);
      if (manifest) this.say(`run ${link.id.slice(0, 12)}… is known from ${join(cmd.dataDir, 'runs')}`);
      else {
        const found = await Promise.race([this.lookUp(link.id), failed, signalled.then(() => null)]);
        if (found instanceof PeerFatalError) return this.end(1, found);
        if (!found) return this.end(0);
        manifest = found;
      }
    }
    const options: EngineOptions = {
      peerKey: `node-${cmd.name}`,
      slot: cmd.slot,
      genre: cmd.genre,
      maxSteps: cmd.steps,
      mergeEnabled: true,
      bootstrapWaitMs: cmd.bootstrapMs,
      evaluateEvery: cmd.evaluateEvery,
      checkpointEvery: cmd.checkpointEvery,
      duty: cmd.duty,
      slowWhenHidden: false,
      halfLifeMs: 60_000,
      dropAfterMs: 300_000,
      evalBatches: cmd.evalBatches,
    };
    this.startWorker();
    this.say(manifest ? `joining run "${manifest.runId}" (${runManifestId(manifest).slice(0, 12)}…)` : 'joining the default run');
    this.toEngine({ type: 'init', manifest, baseModelUrl: manifest?.baseModel.url ?? '/models/swarm-brown-byte-gpt2/', backend: cmd.backend, options });
    const outcome = await Promise.race([failed, signalled]);
    if (outcome instanceof PeerFatalError) return this.end(1, outcome);
    this.say(`${outcome}: stopping after the current step`);
    return this.end(0);
  }

  private startWorker(): void {
    const init: PeerWorkerInit = {
      backend: this.cmd.backend,
      corpusDir: this.corpusDir,
      publicDir: join(ROOT, 'public'),
      modelDir: this.cmd.modelDir,
      storeDir: join(this.cmd.dataDir, 'store'),
    };
    const worker = new Worker(new URL('./peer-worker.ts', import.meta.url), { workerData: init, execArgv: ['--import', 'tsx'] });
    worker.on('message', (message: FromPeerWorker) => {
      if (message.type === 'shut-down') this.shutDown?.(message.status);
      else this.onEngineMessage(message);
    });
    worker.on('error', (error) => this.fatal?.(new PeerFatalError(`the training thread failed: ${error.message}`)));
    worker.on('exit', (code) => {
      if (!this.stopping) this.fatal?.(new PeerFatalError(`the training thread exited with code ${code}`));
      this.shutDown?.(null);
    });
    this.worker = worker;
  }

  /**
   * Asks the swarm's peers for the manifest. A run that every peer asked says it does not know for
   * --lookup-timeout is an error; with no peer to ask yet (no relay answers) the peer keeps waiting.
   */
  private async lookUp(id: string): Promise<RunManifest | PeerFatalError> {
    const abort = new AbortController();
    let verdict: PeerFatalError | null = null;
    const check = setInterval(() => {
      const l = this.lookup;
      if (!l || Date.now() - l.startedAtMs < this.cmd.lookupTimeoutMs) return;
      if (l.notFound + l.rejected > 0) {
        verdict = new PeerFatalError(`unknown run ${id}: ${l.notFound} peer(s) said they do not know it${l.rejected ? ` and ${l.rejected} answer(s) were refused` : ''} in ${Math.round(this.cmd.lookupTimeoutMs / 1000)} s`);
        abort.abort();
      }
    }, 1000);
    try {
      const found = await this.session.lookUpRun(id, { signal: abort.signal, onChange: (l) => (this.lookup = l), warnAfterMs: this.cmd.lookupTimeoutMs });
      if (found) {
        await rememberManifest(this.cmd.dataDir, found.manifest);
        return found.manifest;
      }
      return verdict ?? new PeerFatalError(`run ${id} could not be looked up: the node stopped`);
    } finally {
      clearInterval(check);
    }
  }

  private onEngineMessage(message: Exclude<FromPeerWorker, { type: 'shut-down' }>): void {
    this.session.onEngineMessage(message);
    switch (message.type) {
      case 'ready':
        this.info = message.info;
        this.status = message.status;
        this.onReady(message.info, message.status);
        return;
      case 'status':
        this.status = message.status;
        if (message.newMerge) {
          const m = message.newMerge;
          this.mergeHistory = [...this.mergeHistory, { step: m.step, inputs: m.inputs.map((i) => i.peerId), outcome: m.outcome }].slice(-50);
          const others = m.inputs.filter((i) => i.peerId !== 'self');
          this.say(`merge at step ${m.step}: ${m.outcome ?? 'merged'} with ${others.length} neighbour adapter(s) [${others.map((i) => `${short(i.peerId)} w=${i.weight.toFixed(2)}`).join(', ')}] (${m.strategy}, ${m.ms} ms)`);
        }
        if (message.newLoss) this.progress(message.status);
        if (message.newHeldOut) this.say(`held-out loss at step ${message.newHeldOut.step}: ${message.newHeldOut.own.toFixed(4)} nats/byte on its own data, ${message.newHeldOut.allGenres.toFixed(4)} on all genres`);
        if (message.status.phase === 'done' && this.lastProgressStep !== -2) {
          this.lastProgressStep = -2;
          this.say(`done: ${message.status.step} steps; still serving the adapter to the swarm (Ctrl-C stops)`);
        }
        return;
      case 'notice':
        this.say(message.level === 'warning' ? `warning: ${message.message}` : message.message);
        return;
      case 'error':
        if (message.fatal) this.fatal?.(new PeerFatalError(message.kind === 'run-mismatch' ? `the run does not match the base model: ${message.message}` : `${message.kind}: ${message.message}`));
        else this.say(`error (${message.kind}): ${message.message}`);
        return;
      default:
        return;
    }
  }

  private onReady(info: ReadyInfo, status: EngineStatus): void {
    const resumed = status.resumedFromStep !== null ? `, resumed from the checkpoint at step ${status.resumedFromStep}` : '';
    const base = status.baseHeldOut ? `; base held-out ${status.baseHeldOut.own.toFixed(4)} nats/byte` : '';
    this.say(`ready: run "${info.manifest.runId}", manifest id ${info.manifestId}, ${status.data.map((d) => d.name).join("+")}, tfjs ${info.backend}${resumed}${base}`);
    void rememberManifest(this.cmd.dataDir, info.manifest).catch((error) => this.say(`warning: the run's manifest was not saved: ${(error as Error).message}`));
    void this.session.joinRun(info);
  }

  private progress(status: EngineStatus): void {
    const every = this.cmd.progressEvery ?? this.info?.manifest.localSteps ?? 10;
    if (status.step % every !== 0 || status.step === this.lastProgressStep) return;
    this.lastProgressStep = status.step;
    const n = this.network;
    this.say(
      `step ${status.step}  loss ${status.trainLoss?.toFixed(4) ?? '–'}  neighbours ${n.neighbours.length}  merges ${status.merges}  ` +
        `sent ${megabytes(n.bytesSent)}  received ${megabytes(n.bytesReceived)}  ${status.tokensPerSecond?.toFixed(0) ?? '–'} tok/s`,
    );
  }

  private tick(): void {
    this.network = this.session.tick();
    const neighbours = [...this.network.neighbours].sort().join(',');
    if (neighbours !== this.lastNeighbours) {
      this.lastNeighbours = neighbours;
      this.say(`neighbours (${this.network.neighbours.length}): ${this.network.neighbours.join(', ') || 'none'}`);
    }
    if (this.cmd.statusFile) void this.writeStatus(this.cmd.statusFile);
  }

  private statusFile(): PeerStatusFile {
    const s = this.status;
    const n = this.network;
    return {
      name: this.cmd.name, peerId: n.peerId, pid: process.pid, updatedAtMs: Date.now(),
      manifestId: this.info?.manifestId ?? null, wireRunId: this.info?.wireRunId ?? null,
      phase: s?.phase ?? 'loading', step: s?.step ?? 0, trainLoss: s?.trainLoss ?? null, heldOut: s?.heldOut ?? null, baseHeldOut: s?.baseHeldOut ?? null,
      merges: s?.merges ?? 0, mergeHistory: this.mergeHistory, neighbours: n.neighbours, neighbourTable: s?.neighbours ?? [], dialPending: n.dialPending,
      relayConnected: n.relayConnected, bytesSent: n.bytesSent, bytesReceived: n.bytesReceived,
      checkpoint: s?.checkpoint ?? null, resumedFromStep: s?.resumedFromStep ?? null, adoptedFrom: s?.adoptedFrom ?? null, runLookup: this.lookup,
    };
  }

  private writingStatus = false;
  private async writeStatus(path: string): Promise<void> {
    if (this.writingStatus) return;
    this.writingStatus = true;
    try {
      await writeFileAtomic(path, JSON.stringify(this.statusFile(), null, 1));
    } catch (error) {
      this.say(`warning: could not write ${path}: ${(error as Error).message}`);
    } finally {
      this.writingStatus = false;
    }
  }

  /** Stops the engine after its current step, writes a last checkpoint, leaves the swarm. */
  private async end(code: number, error?: PeerFatalError): Promise<number> {
    this.stopping = true;
    if (error) console.error(`swarm peer: ${error.message}`);
    const worker = this.worker;
    if (worker) {
      const final = new Promise<EngineStatus | null>((resolve) => (this.shutDown = resolve));
      worker.postMessage({ type: 'shutdown' } satisfies ToPeerWorker);
      const status = await final;
      if (status) {
        this.status = status;
        this.say(`stopped at step ${status.step}; last checkpoint at step ${status.checkpoint?.step ?? '–'} in ${join(this.cmd.dataDir, 'store')}`);
      }
      await worker.terminate();
    }
    clearInterval(this.timer);
    for (const remove of this.signalHandlers) remove();
    if (this.cmd.statusFile) await this.writeStatus(this.cmd.statusFile);
    await this.session.stop();
    return code;
  }
}
