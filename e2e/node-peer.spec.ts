// `swarm peer` next to browser tabs: one real Node peer process (tfjs WASM, WebRTC through node-datachannel) and two
// real Chromium tabs in one run, behind the real relay. They must exchange and merge each other's adapters, and
// each must show the other in its neighbour table. Then Ctrl-C, a resume from the data dir, and bad input.
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, expect, type BrowserContext, type Page } from '@playwright/test';
import { startRelayProcess, type RelayProcess } from './relay-process.ts';
import { encodeRunLink } from '../core/swarm/run.ts';
import { runManifestId } from '../core/wire/run-manifest.ts';
import type { PeerProbe } from '../app/lib/probe.ts';
import type { PeerStatusFile } from '../cli/peer.ts';
import { modelSha256, testManifest } from './run-fixture.ts';

const NODE = existsSync('node_modules/.bin/node') ? 'node_modules/.bin/node' : process.execPath;

interface PeerProcess {
  child: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
}

function startNodePeer(args: string[]): PeerProcess {
  const child = spawn(NODE, ['--import', 'tsx', 'cli/swarm.ts', 'peer', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const collect = (chunk: Buffer) => {
    output += chunk.toString();
    for (const line of chunk.toString().split('\n')) if (line.trim()) console.log(`[node peer] ${line}`);
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output: () => output, exited };
}

let relay: RelayProcess | undefined;
let context: BrowserContext;
let tabs: Page[] = [];
let runLink = '';
let manifestId = '';
let dataDir = '';
let statusPath = '';
let nodePeer: PeerProcess | undefined;

const probe = (page: Page): Promise<PeerProbe> => page.evaluate(() => window.swarmPeer.status());

function readStatus(): PeerStatusFile | null {
  try {
    return JSON.parse(readFileSync(statusPath, 'utf8')) as PeerStatusFile;
  } catch {
    return null;
  }
}

function peerArgs(run: string, extra: string[] = []): string[] {
  return ['--run', run, '--relays', relay!.multiaddr, '--name', 'e2e', '--data-dir', dataDir, '--genre', 'adventure', '--bootstrap', '0',
    '--eval', '10', '--eval-batches', '2', '--checkpoint', '5', '--telemetry', '2000', '--status-file', statusPath, ...extra];
}

test.describe.serial('swarm peer: a Node peer in a swarm of tabs', () => {
  test.beforeAll(async ({ browser }) => {
    const manifest = testManifest('e2e-node-peer', modelSha256());
    runLink = encodeRunLink(manifest);
    manifestId = runManifestId(manifest);
    relay = await startRelayProcess();
    context = await browser.newContext();
    dataDir = mkdtempSync(join(tmpdir(), 'swarm-node-peer-'));
    statusPath = join(dataDir, 'status.json');
    // A fixed identity decides which side dials (the smaller peer id does): SWARM_E2E_NODE_KEY=<protobuf key file>.
    if (process.env.SWARM_E2E_NODE_KEY) copyFileSync(process.env.SWARM_E2E_NODE_KEY, join(dataDir, 'peer.key'));
  });

  test.afterAll(async () => {
    if (nodePeer && nodePeer.child.exitCode === null) {
      nodePeer.child.kill('SIGKILL');
      await nodePeer.exited;
    }
    await context?.close();
    await relay?.stop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  test('the Node peer and two tabs exchange and merge each other\'s adapters', async () => {
    test.setTimeout(480_000);
    const started = Date.now();
    nodePeer = startNodePeer(peerArgs(runLink));
    tabs = await Promise.all(
      [0, 1].map(async (slot) => {
        const page = await context.newPage();
        page.on('pageerror', (e) => console.log(`[tab ${slot}] page error: ${e.message}`));
        await page.goto(`/?autojoin=1&run=${runLink}&relays=${encodeURIComponent(relay!.multiaddr)}&slot=${slot}&peer=e2e-node-${slot}&eval=10&evalBatches=2&checkpoint=5&telemetry=2000&bootstrap=0`);
        return page;
      }),
    );
    let nodeState: PeerStatusFile | null = null;
    let tabStates: PeerProbe[] = [];
    let lastReport = Date.now();
    const pending = (list: Array<{ peerId: string; attempts: number; lastError?: string }>) =>
      list.map((d) => `…${d.peerId.slice(-6)}×${d.attempts}${d.lastError ? ` (${d.lastError.slice(0, 80)})` : ''}`).join('; ') || 'none';
    await expect
      .poll(
        async () => {
          if (nodePeer!.child.exitCode !== null) throw new Error(`the Node peer exited with ${nodePeer!.child.exitCode}`);
          nodeState = readStatus();
          tabStates = await Promise.all(tabs.map(probe));
          for (const s of tabStates) if (s.errors.length > 0) throw new Error(`tab ${s.slot} shows errors: ${JSON.stringify(s.errors)}`);
          const nodeId = nodeState?.peerId;
          if (!nodeState || !nodeId) return false;
          if (Date.now() - lastReport > 30_000) {
            lastReport = Date.now();
            console.log(`[node-peer] ${((Date.now() - started) / 1000).toFixed(0)} s: node step ${nodeState.step}, neighbours ${nodeState.neighbours.length}, dialling ${pending(nodeState.dialPending)}`);
            for (const s of tabStates) console.log(`[node-peer]   tab ${s.slot} …${s.peerId?.slice(-6)}: step ${s.step}, neighbours ${s.neighbours.map((n) => n.slice(-6)).join(',') || 'none'}, dialling ${pending(s.dialPending)}`);
          }
          const tabIds = tabStates.map((s) => s.peerId);
          const nodeMerged = new Set(nodeState.mergeHistory.flatMap((m) => (m.outcome === 'merged' ? m.inputs : [])));
          return (
            tabIds.every((id) => id !== null && nodeState!.neighbours.includes(id) && nodeMerged.has(id)) &&
            tabStates.every((s) => s.neighbours.includes(nodeId) && s.mergeHistory.some((m) => m.outcome !== 'kept-own' && m.inputs.some((i) => i.peerId === nodeId)))
          );
        },
        { timeout: 420_000, intervals: [2000], message: 'waiting for the Node peer and both tabs to be neighbours and to merge each other\'s adapters' },
      )
      .toBe(true);
    const node = nodeState! as PeerStatusFile;
    console.log(`[node-peer] all three merged each other's adapters after ${((Date.now() - started) / 1000).toFixed(0)} s`);
    console.log(`[node-peer] node peer ${node.peerId}: step ${node.step}, merges ${node.merges}, neighbours ${node.neighbours.length}, sent ${node.bytesSent} B, received ${node.bytesReceived} B, held-out ${node.baseHeldOut?.own.toFixed(3)} → ${node.heldOut?.own.toFixed(3)}`);
    for (const s of tabStates) console.log(`[node-peer] tab ${s.slot} (${s.genres.join(',')}): step ${s.step}, merges ${s.merges}, neighbours ${s.neighbours.length}, sent ${s.bytesSent} B, received ${s.bytesReceived} B`);
    expect(node.wireRunId).toBe(tabStates[0].wireRunId);
    expect(node.bytesSent).toBeGreaterThan(0);
    expect(node.bytesReceived).toBeGreaterThan(0);
    // The engine's neighbour table holds the tabs' adapters, and the progress lines say what happened.
    expect(node.neighbourTable.map((n) => n.peerId).sort()).toEqual(expect.arrayContaining(tabStates.map((s) => s.peerId!)));
    expect(nodePeer!.output()).toMatch(/step \d+ {2}loss \d\.\d+ {2}neighbours [12] {2}merges \d+/);
    expect(nodePeer!.output()).toMatch(/merge at step \d+: merged with [12] neighbour adapter/);
  });

  test('Ctrl-C stops the Node peer with a last checkpoint; started again by the run id, it resumes from it', async () => {
    test.setTimeout(240_000);
    nodePeer!.child.kill('SIGINT');
    expect(await nodePeer!.exited).toBe(0);
    const stopped = nodePeer!.output().match(/stopped at step (\d+); last checkpoint at step (\d+)/);
    expect(stopped, 'the stop line').not.toBeNull();
    const [stepAtStop, checkpointStep] = [Number(stopped![1]), Number(stopped![2])];
    expect(checkpointStep).toBe(stepAtStop);
    // Only the id this time: the data dir remembers the manifest, as a browser remembers it in localStorage.
    nodePeer = startNodePeer(peerArgs(manifestId));
    await expect.poll(() => nodePeer!.output(), { timeout: 180_000, message: 'waiting for the restarted Node peer to be ready' }).toMatch(/ready: run "e2e-node-peer"/);
    expect(nodePeer.output()).toContain(`resumed from the checkpoint at step ${checkpointStep}`);
    nodePeer.child.kill('SIGINT');
    expect(await nodePeer.exited).toBe(0);
  });

  test('bad input ends with one line and a non-zero exit', async () => {
    test.setTimeout(240_000);
    // A run id no peer knows: the tabs answer "not found", so after the lookup timeout it is an error.
    const unknown = startNodePeer(['--run', 'ab'.repeat(32), '--relays', relay!.multiaddr, '--data-dir', join(dataDir, 'unknown'), '--lookup-timeout', '5']);
    expect(await unknown.exited).toBe(1);
    expect(unknown.output()).toMatch(/^swarm peer: unknown run abab\S+: [1-9]\d* peer\(s\) said they do not know it/m);
    const badRelay = startNodePeer(['--run', runLink, '--relays', '/ip4/127.0.0.1/tcp/9/ws']);
    expect(await badRelay.exited).toBe(2);
    expect(badRelay.output().trim()).toBe(
      "swarm peer: --relays: '/ip4/127.0.0.1/tcp/9/ws' does not end in /p2p/<relay peer id>; a relay address looks like /ip4/203.0.113.7/udp/9091/webrtc-direct/certhash/<hash>/p2p/<peer id>",
    );
    const wrongModel = startNodePeer(['--run', encodeRunLink(testManifest('e2e-node-peer', 'f'.repeat(64))), '--relays', relay!.multiaddr, '--data-dir', join(dataDir, 'wrong')]);
    expect(await wrongModel.exited).toBe(1);
    expect(wrongModel.output()).toMatch(/^swarm peer: the run does not match the base model: .*expects base model sha256 ffffffffffffffff/m);
  });
});
