// Load harness for swarms of many peers: N network-only peers (the real libp2p node of p2p/node.ts with its real
// discovery, dial policy, gossipsub topics and telemetry, no training) spread over several Node processes, against
// real relay processes on this machine. Node has no WebRTC, so peers reach each other over WebSockets on 127.0.0.1;
// they still hold a circuit reservation at a relay, as tabs do. For each N it measures, per peer: gossipsub messages
// and bytes per second in and out (and discovery-protocol messages), CPU time, time to k neighbours, final
// neighbour counts, and the share of peers in the largest connected component; per relay: CPU, memory,
// connections and reservations.
//
// Usage: npm run bench:scale -- [--n 25,50,100] [--relays 1] [--procs 4] [--k 4] [--ramp 10] [--warm 60]
//        [--window 60] [--json out.json]
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { startRelayProcess, type RelayProcess } from '../e2e/relay-process.ts';
import { benchNodeInit, runScalePeers, runOfBench } from './scale-peers.ts';
import { createSwarmNode, type SwarmNode } from '../p2p/node.ts';
import { listenToTelemetry } from '../p2p/telemetry-topic.ts';
import type { CoordinatorMessage, PeerResult, WorkerMessage } from './scale-peers.ts';


interface RelaySample {
  cpuMs: number;
  rssMiB: number;
}

/** CPU (user + system) and resident memory of a process, from /proc (Linux). */
function sampleProcess(pid: number): RelaySample {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of /proc/pid/stat (index 11 and 12 after the command name), in ticks.
  const ticks = Number(fields[11]) + Number(fields[12]);
  const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  return { cpuMs: ticks * 10, rssMiB: rssKiB / 1024 };
}

function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * (s.length - 1) + 0.5))];
}

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);

/** Size of the largest connected component of the undirected graph given by each peer's neighbour list. */
export function largestComponent(adjacency: Map<string, string[]>): number {
  const graph = new Map<string, Set<string>>();
  for (const [id, ns] of adjacency) {
    if (!graph.has(id)) graph.set(id, new Set());
    for (const n of ns) {
      if (!adjacency.has(n)) continue;
      graph.get(id)!.add(n);
      if (!graph.has(n)) graph.set(n, new Set());
      graph.get(n)!.add(id);
    }
  }
  const seen = new Set<string>();
  let best = 0;
  for (const start of graph.keys()) {
    if (seen.has(start)) continue;
    let size = 0;
    const stack = [start];
    seen.add(start);
    while (stack.length) {
      const id = stack.pop()!;
      size++;
      for (const n of graph.get(id)!) if (!seen.has(n)) (seen.add(n), stack.push(n));
    }
    best = Math.max(best, size);
  }
  return best;
}

interface WorkerHandle {
  child: ChildProcess;
  messages: WorkerMessage[];
  waiters: Array<(m: WorkerMessage) => boolean>;
}

function startWorker(): WorkerHandle {
  const child = fork(fileURLToPath(import.meta.url), ['--worker'], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const handle: WorkerHandle = { child, messages: [], waiters: [] };
  child.on('message', (m: WorkerMessage) => {
    handle.messages.push(m);
    handle.waiters = handle.waiters.filter((w) => !w(m));
  });
  return handle;
}

function waitFor<T extends WorkerMessage['type']>(w: WorkerHandle, type: T, timeoutMs: number): Promise<Extract<WorkerMessage, { type: T }>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`worker sent no '${type}' within ${timeoutMs / 1000} s`)), timeoutMs);
    w.waiters.push((m) => {
      if (m.type !== type) return false;
      clearTimeout(timer);
      resolve(m as Extract<WorkerMessage, { type: T }>);
      return true;
    });
  });
}

const send = (w: WorkerHandle, m: CoordinatorMessage) => w.child.send(m);

export interface ScaleRow {
  n: number;
  relays: number;
  k: number;
  windowS: number;
  loadAverage: { before: number[]; after: number[] };
  /** Per peer, steady-state window: gossipsub application messages (publish entries, duplicates included). */
  msgsInPerS: { mean: number; p50: number; p95: number };
  msgsOutPerS: { mean: number; p50: number; p95: number };
  /** Gossipsub RPC frames and encoded bytes (messages plus control and subscriptions), per peer. */
  rpcInPerS: number;
  rpcOutPerS: number;
  bytesInPerS: { mean: number; p95: number };
  bytesOutPerS: { mean: number; p95: number };
  /** Messages on the discovery and telemetry topics only, per peer (the traffic this issue is about). */
  discoveryTelemetryMsgsPerS: number;
  discoveryTelemetryBytesPerS: number;
  /** Discovery-protocol streams (requests or introductions) per peer, and their bytes, when a protocol is used. */
  discoveryProtocolMsgsPerS: number;
  discoveryProtocolBytesPerS: number;
  cpuSecondsPerPeerMinute: number;
  timeToKNeighboursS: { p50: number; p95: number; max: number; reached: number };
  neighbours: { min: number; mean: number; max: number };
  largestComponentShare: number;
  /** A watching dashboard (connected to every relay): distinct peers whose reports it accepted during the window. */
  dashboard: { peersSeen: number; reportsPerS: number };
  relay: Array<{ cpuSecondsPerMinute: number; rssMiB: number; reservations: number; connections: number }>;
}

async function measure(n: number, opts: { relays: number; procs: number; k: number; rampS: number; warmS: number; windowS: number }): Promise<ScaleRow> {
  const loadBefore = loadavg().map((x) => Math.round(x * 100) / 100);
  const relays: RelayProcess[] = [];
  const workers: WorkerHandle[] = [];
  let dashboard: SwarmNode | undefined;
  try {
    for (let i = 0; i < opts.relays; i++) relays.push(await startRelayProcess());
    const relayAddrs = relays.map((r) => r.multiaddr);
    // The researcher's dashboard, as app/lib/telemetry.ts starts it: a node of its own, every relay, the telemetry topic.
    dashboard = await createSwarmNode({ ...benchNodeInit(relayAddrs), dial: { ...benchNodeInit(relayAddrs).dial, maxRelays: relayAddrs.length } });
    const feed = listenToTelemetry(dashboard, runOfBench().wireRunId);
    const heardFrom = new Set<string>();
    let reportsInWindow = 0;
    let inWindow = false;
    feed.onReport((report) => {
      if (!inWindow) return;
      heardFrom.add(report.peerId);
      reportsInWindow++;
    });
    const procs = Math.min(opts.procs, n);
    for (let i = 0; i < procs; i++) workers.push(startWorker());
    const t0 = Date.now() + 3_000;
    const k = Math.min(opts.k, n - 1);
    workers.forEach((w, wi) => {
      const peers = [];
      for (let p = wi; p < n; p += procs) peers.push({ index: p, startAtMs: t0 + Math.round((p / n) * opts.rampS * 1000) });
      send(w, { type: 'start', peers, relays: relayAddrs, k });
    });
    await Promise.all(workers.map((w) => waitFor(w, 'started', 120_000)));
    // Warm-up: until every peer has k neighbours, or the warm-up time is over.
    const warmEnd = Date.now() + opts.warmS * 1000;
    let reached = 0;
    while (Date.now() < warmEnd) {
      await new Promise((r) => setTimeout(r, 2000));
      workers.forEach((w) => send(w, { type: 'progress?' }));
      const answers = await Promise.all(workers.map((w) => waitFor(w, 'progress', 30_000)));
      reached = answers.reduce((s, a) => s + a.reached, 0);
      process.stdout.write(`\r  N=${n}: ${reached}/${n} peers with >= ${k} neighbours, ${Math.round((Date.now() - t0) / 1000)} s   `);
      if (reached === n) break;
    }
    process.stdout.write('\n');
    // A short settle after the last peer reached k, so the window sees steady state rather than the join burst.
    await new Promise((r) => setTimeout(r, 5000));
    const relayBefore = relays.map((r) => sampleProcess(r.child.pid!));
    workers.forEach((w) => send(w, { type: 'window-start' }));
    inWindow = true;
    const windowStart = Date.now();
    await new Promise((r) => setTimeout(r, opts.windowS * 1000));
    workers.forEach((w) => send(w, { type: 'window-end' }));
    const results = await Promise.all(workers.map((w) => waitFor(w, 'result', 60_000)));
    inWindow = false;
    const windowS = (Date.now() - windowStart) / 1000;
    const relayAfter = relays.map((r) => sampleProcess(r.child.pid!));
    const peers: PeerResult[] = results.flatMap((r) => r.peers);
    const cpuMs = results.reduce((s, r) => s + r.cpuMs, 0);
    const adjacency = new Map(peers.map((p) => [p.peerId, p.neighbours]));
    const perS = (x: number) => x / windowS;
    const ins = peers.map((p) => perS(p.counters.msgsIn));
    const outs = peers.map((p) => perS(p.counters.msgsOut));
    const bytesIn = peers.map((p) => perS(p.counters.bytesIn));
    const bytesOut = peers.map((p) => perS(p.counters.bytesOut));
    const kTimes = peers.filter((p) => p.kAtMs !== null).map((p) => (p.kAtMs! - p.joinedAtMs) / 1000);
    const neighbourCounts = peers.map((p) => p.neighbours.length);
    const relayIds = relayAddrs.map((a) => a.split('/p2p/').at(-1)!);
    const row: ScaleRow = {
      n,
      relays: opts.relays,
      k,
      windowS: Math.round(windowS * 10) / 10,
      loadAverage: { before: loadBefore, after: loadavg().map((x) => Math.round(x * 100) / 100) },
      msgsInPerS: { mean: mean(ins), p50: quantile(ins, 0.5), p95: quantile(ins, 0.95) },
      msgsOutPerS: { mean: mean(outs), p50: quantile(outs, 0.5), p95: quantile(outs, 0.95) },
      rpcInPerS: mean(peers.map((p) => perS(p.counters.rpcIn))),
      rpcOutPerS: mean(peers.map((p) => perS(p.counters.rpcOut))),
      bytesInPerS: { mean: mean(bytesIn), p95: quantile(bytesIn, 0.95) },
      bytesOutPerS: { mean: mean(bytesOut), p95: quantile(bytesOut, 0.95) },
      discoveryTelemetryMsgsPerS: mean(peers.map((p) => perS(p.counters.discoveryTelemetryMsgs + p.counters.protocolMsgs))),
      discoveryTelemetryBytesPerS: mean(peers.map((p) => perS(p.counters.discoveryTelemetryBytes + p.counters.protocolBytes))),
      discoveryProtocolMsgsPerS: mean(peers.map((p) => perS(p.counters.protocolMsgs))),
      discoveryProtocolBytesPerS: mean(peers.map((p) => perS(p.counters.protocolBytes))),
      cpuSecondsPerPeerMinute: cpuMs / 1000 / n / (windowS / 60),
      timeToKNeighboursS: { p50: quantile(kTimes, 0.5), p95: quantile(kTimes, 0.95), max: kTimes.length ? Math.max(...kTimes) : NaN, reached: kTimes.length },
      neighbours: { min: Math.min(...neighbourCounts), mean: mean(neighbourCounts), max: Math.max(...neighbourCounts) },
      largestComponentShare: largestComponent(adjacency) / n,
      dashboard: { peersSeen: peers.filter((p) => heardFrom.has(p.peerId)).length, reportsPerS: reportsInWindow / windowS },
      relay: relays.map((_, i) => ({
        cpuSecondsPerMinute: (relayAfter[i].cpuMs - relayBefore[i].cpuMs) / 1000 / (windowS / 60),
        rssMiB: Math.round(relayAfter[i].rssMiB),
        reservations: peers.filter((p) => p.reservedAt.includes(relayIds[i])).length,
        connections: peers.filter((p) => p.connectedRelays.includes(relayIds[i])).length,
      })),
    };
    return row;
  } finally {
    workers.forEach((w) => {
      try {
        send(w, { type: 'stop' });
      } catch {
        // already gone
      }
    });
    await Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.child.exitCode !== null) return resolve();
            const timer = setTimeout(() => (w.child.kill('SIGKILL'), resolve()), 20_000);
            w.child.once('exit', () => (clearTimeout(timer), resolve()));
          }),
      ),
    );
    await dashboard?.stop().catch(() => undefined);
    await Promise.all(relays.map((r) => r.stop()));
  }
}

const f = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '–');

function printTable(rows: ScaleRow[]): void {
  console.log('\n| N | msgs in/s | msgs out/s | bytes in/s | bytes out/s | disc+telem msgs/s | disc+telem B/s | CPU s/peer-min | time to k (p50/p95/max) | neighbours min/mean/max | one component | dashboard saw | relay CPU s/min, RSS MiB, reservations | load |');
  console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---|---|');
  for (const r of rows) {
    console.log(
      `| ${r.n} | ${f(r.msgsInPerS.mean, 2)} | ${f(r.msgsOutPerS.mean, 2)} | ${f(r.bytesInPerS.mean, 0)} | ${f(r.bytesOutPerS.mean, 0)} | ${f(r.discoveryTelemetryMsgsPerS, 2)} | ` +
        `${f(r.discoveryTelemetryBytesPerS, 0)} | ${f(r.cpuSecondsPerPeerMinute, 2)} | ${f(r.timeToKNeighboursS.p50)}/${f(r.timeToKNeighboursS.p95)}/${f(r.timeToKNeighboursS.max)} s (${r.timeToKNeighboursS.reached}/${r.n} reached ${r.k}) | ` +
        `${r.neighbours.min}/${f(r.neighbours.mean)}/${r.neighbours.max} | ${f(r.largestComponentShare * 100, 0)}% | ${r.dashboard.peersSeen}/${r.n} | ` +
        `${r.relay.map((x) => `${f(x.cpuSecondsPerMinute, 2)}, ${x.rssMiB}, ${x.reservations}`).join('; ')} | ${r.loadAverage.before[0]} → ${r.loadAverage.after[0]} |`,
    );
  }
}

/** Least-squares slope of log(y) on log(x): y ∝ x^slope. */
export function fittedExponent(xs: number[], ys: number[]): number {
  const lx = xs.map(Math.log);
  const ly = ys.map(Math.log);
  const mx = mean(lx);
  const my = mean(ly);
  let num = 0;
  let den = 0;
  for (let i = 0; i < lx.length; i++) {
    num += (lx[i] - mx) * (ly[i] - my);
    den += (lx[i] - mx) ** 2;
  }
  return num / den;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      n: { type: 'string' },
      relays: { type: 'string' },
      procs: { type: 'string' },
      k: { type: 'string' },
      ramp: { type: 'string' },
      warm: { type: 'string' },
      window: { type: 'string' },
      json: { type: 'string' },
      label: { type: 'string' },
    },
  });
  const ns = (values.n ?? '25,50,100').split(',').map(Number);
  const opts = {
    relays: Number(values.relays ?? 1),
    procs: Number(values.procs ?? 4),
    k: Number(values.k ?? 4),
    rampS: Number(values.ramp ?? 10),
    warmS: Number(values.warm ?? 60),
    windowS: Number(values.window ?? 60),
  };
  const rows: ScaleRow[] = [];
  for (const n of ns) {
    console.log(`N = ${n}: ${opts.relays} relay(s), ${Math.min(opts.procs, n)} processes, load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
    rows.push(await measure(n, opts));
    printTable(rows.slice(-1));
  }
  printTable(rows);
  if (rows.length >= 2) {
    const exponent = fittedExponent(rows.map((r) => r.n), rows.map((r) => r.msgsInPerS.mean + r.msgsOutPerS.mean + r.discoveryProtocolMsgsPerS));
    console.log(`\nper-peer messages/s (in + out) ∝ N^${exponent.toFixed(2)}`);
  }
  if (values.json) {
    const exponent = rows.length >= 2 ? fittedExponent(rows.map((r) => r.n), rows.map((r) => r.msgsInPerS.mean + r.msgsOutPerS.mean + r.discoveryProtocolMsgsPerS)) : null;
    await mkdir(dirname(values.json), { recursive: true });
    await writeFile(
      values.json,
      JSON.stringify({ label: values.label ?? null, command: `npm run bench:scale -- ${process.argv.slice(2).join(' ')}`, date: new Date().toISOString(), options: opts, messagesPerSecondExponent: exponent, rows }, null, 2) + '\n',
    );
    console.log(`wrote ${values.json}`);
  }
}

if (process.argv.includes('--worker')) {
  runScalePeers();
} else {
  await main();
}
