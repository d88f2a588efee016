// A swarm across "the internet", on one machine: network namespaces for a public network (the production build on a
// plain https server, two relays on WebRTC-Direct and WSS, coturn) and two homes behind masquerading routers, with
// Chromium running inside each home. Tabs in different homes connect directly through STUN, then (direct UDP
// between the homes blocked) through TURN; a relay dies and a new tab joins through the other; bad configuration is
// told in words. Needs root, iproute2, iptables, coturn and openssl (.ci/run installs them).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, expect, chromium, type Browser, type Page } from '@playwright/test';
import { CHROMIUM_ARGS } from './chromium.ts';
import { encodeRunLink } from '../core/swarm/run.ts';
import type { PeerProbe } from '../app/lib/probe.ts';
import { modelSha256, testManifest } from './run-fixture.ts';
import { blockDirectUdp, chromiumIn, createTopology, inNs, missingTools, NS, PUBLIC_IP, removeTopology, startIn, type NsProcess } from './netns/topology.ts';

const NODE = 'node_modules/.bin/node';
const SITE = `https://${PUBLIC_IP}:8443`;
const SITE_NO_HEADERS = `https://${PUBLIC_IP}:8444`;
const TURN_USER = 'swarm';
const TURN_PASSWORD = 'e2e-secret';
const ICE = `stun:${PUBLIC_IP}:3478,turn:${TURN_USER}:${TURN_PASSWORD}@${PUBLIC_IP}:3478`;

let dir = '';
const processes: NsProcess[] = [];
const relays: Array<{ process: NsProcess; webrtcDirect: string; wss: string; status: string }> = [];
const browsers: Browser[] = [];
let home1: Browser;
let home2: Browser;
let runLink = '';

// Every RTCPeerConnection the page makes, so the test can ask each one which candidate pair it selected.
const TRACK_PEER_CONNECTIONS = () => {
  const Native = window.RTCPeerConnection;
  const all: RTCPeerConnection[] = [];
  (window as unknown as { __pcs: RTCPeerConnection[] }).__pcs = all;
  window.RTCPeerConnection = class extends Native {
    constructor(config?: RTCConfiguration) {
      super(config);
      all.push(this);
    }
  } as typeof RTCPeerConnection;
};

/** local→remote candidate types of each connected peer connection's selected pair (host, srflx, prflx, relay). */
async function candidateTypes(page: Page): Promise<string[]> {
  return page.evaluate(async () => {
    const out: string[] = [];
    for (const pc of (window as unknown as { __pcs: RTCPeerConnection[] }).__pcs) {
      if (pc.connectionState !== 'connected') continue;
      const stats = await pc.getStats();
      let pairId: string | undefined;
      stats.forEach((s) => {
        if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
      });
      const pair = pairId ? stats.get(pairId) : undefined;
      if (!pair) continue;
      const local = stats.get(pair.localCandidateId);
      const remote = stats.get(pair.remoteCandidateId);
      out.push(`${local?.candidateType}/${local?.address}→${remote?.candidateType}/${remote?.address}`);
    }
    return out;
  });
}

const probe = (page: Page): Promise<PeerProbe> => page.evaluate(() => window.swarmPeer.status());

async function openTab(browser: Browser, label: string, query: string, site = SITE): Promise<Page> {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  await context.addInitScript(TRACK_PEER_CONNECTIONS);
  const page = await context.newPage();
  page.on('pageerror', (e) => console.log(`[${label}] page error: ${e.message}`));
  await page.goto(`${site}/?${query}`);
  return page;
}

function joinQuery(slot: number, extra = ''): string {
  return `autojoin=1&run=${runLink}&slot=${slot}&peer=internet-${slot}&eval=1000&checkpoint=1000&telemetry=5000${extra}`;
}

async function waitForAll(pages: Page[], what: string, pred: (s: PeerProbe) => boolean, timeoutMs: number): Promise<PeerProbe[]> {
  let last: PeerProbe[] = [];
  try {
    await expect
      .poll(
        async () => {
          last = await Promise.all(pages.map(probe));
          return last.every(pred);
        },
        { timeout: timeoutMs, intervals: [2000], message: `waiting for ${what}` },
      )
      .toBe(true);
  } catch (err) {
    const summary = last.map((s) => ({ slot: s.slot, phase: s.phase, step: s.step, merges: s.merges, neighbours: s.neighbours.length, relay: s.relayConnected, pending: s.dialPending, errors: s.errors.map((e) => e.message) }));
    throw new Error(`${(err as Error).message}\nlast states: ${JSON.stringify(summary)}`);
  }
  return last;
}

function metrics(status: string): Record<string, number> {
  const text = inNs(NS.pub, NODE, '-e', `fetch('${status}/metrics').then(r => r.text()).then(t => process.stdout.write(t))`);
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = line.match(/^(\w+)(\{[^}]*\})? (\d+(?:\.\d+)?)$/);
    if (m) out[`${m[1]}${m[2] ?? ''}`] = Number(m[3]);
  }
  return out;
}

const sum = (m: Record<string, number>, prefix: string) => Object.entries(m).filter(([k]) => k.startsWith(prefix)).reduce((a, [, v]) => a + v, 0);

test.describe.serial('a public swarm: production build, relays, NAT traversal', () => {
  test.beforeAll(async () => {
    test.setTimeout(300_000);
    const missing = missingTools();
    if (missing.length) throw new Error(`this spec needs ${missing.join(', ')} (.ci/run installs the Debian packages)`);
    dir = mkdtempSync(join(tmpdir(), 'swarm-internet-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=swarm-e2e',
      '-addext', `subjectAltName=IP:${PUBLIC_IP}`, '-keyout', `${dir}/key.pem`, '-out', `${dir}/cert.pem`], { stdio: 'ignore' });
    createTopology();

    for (const [i, name] of ['a', 'b'].entries()) {
      const process = await startIn(NS.pub, [NODE, '--import', 'tsx', 'cli/swarm.ts', 'relay',
        '--listen', `/ip4/${PUBLIC_IP}/udp/${9091 + i}/webrtc-direct`, '--listen', `/ip4/${PUBLIC_IP}/tcp/${9443 + i}/tls/ws`,
        '--tls-cert', `${dir}/cert.pem`, '--tls-key', `${dir}/key.pem`, '--key-file', `${dir}/relay-${name}.key`,
        '--status', `${PUBLIC_IP}:${9101 + i}`, '--no-config'], /^status http/m);
      processes.push(process);
      const out = process.output();
      relays.push({
        process,
        webrtcDirect: out.match(/^\s+(\/ip4\/\S+\/webrtc-direct\/\S+)$/m)![1],
        wss: out.match(/^\s+(\/ip4\/\S+\/tls\/ws\/\S+)$/m)![1],
        status: `http://${PUBLIC_IP}:${9101 + i}`,
      });
    }
    processes.push(await startIn(NS.pub, ['turnserver', '-n', '--no-cli', '--no-tls', '--no-dtls', '--listening-ip', PUBLIC_IP, '--relay-ip', PUBLIC_IP,
      '--listening-port', '3478', '--min-port', '49160', '--max-port', '49260', '--lt-cred-mech', '--user', `${TURN_USER}:${TURN_PASSWORD}`,
      '--realm', 'swarm.test', '--log-file', 'stdout', '--simple-log'], /listener opened on|Total General servers/i));

    // The production build, with relay A on WebRTC-Direct and relay B on WSS and the ICE servers baked in.
    const build = spawnSync(NODE, ['node_modules/vite/bin/vite.js', 'build', '--outDir', `${dir}/dist`, '--emptyOutDir', '--logLevel', 'warn'], {
      env: { ...process.env, SWARM_RELAYS: `${relays[0].webrtcDirect},${relays[1].wss}`, SWARM_ICE_SERVERS: ICE },
      encoding: 'utf8',
    });
    if (build.status !== 0) throw new Error(`npm run build failed:\n${build.stdout}\n${build.stderr}`);
    for (const [port, flags] of [[8443, ['--isolation-headers']], [8444, []]] as const) {
      processes.push(await startIn(NS.pub, [NODE, '--import', 'tsx', 'e2e/netns/https-static.ts', `${dir}/dist`, PUBLIC_IP, String(port), `${dir}/cert.pem`, `${dir}/key.pem`, ...flags], /^static https/m));
    }
    const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
    const args = [...CHROMIUM_ARGS, '--ignore-certificate-errors'];
    home1 = await chromium.launch({ executablePath: chromiumIn(NS.h1, chromiumPath, dir), args });
    home2 = await chromium.launch({ executablePath: chromiumIn(NS.h2, chromiumPath, dir), args });
    browsers.push(home1, home2);
    runLink = encodeRunLink(testManifest('e2e-internet', modelSha256()));
  });

  test.afterAll(async () => {
    for (const b of browsers) await b.close().catch(() => undefined);
    for (const p of processes) await p.kill().catch(() => undefined);
    removeTopology();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('the build is a static site: config built in, isolated by headers or by its service worker, no tfjs on the dashboard', async () => {
    const config = JSON.parse(readFileSync(`${dir}/dist/swarm-config.json`, 'utf8'));
    expect(config.relays).toEqual([relays[0].webrtcDirect, relays[1].wss]);
    expect(config.iceServers[1]).toEqual({ urls: [`turn:${PUBLIC_IP}:3478`], username: TURN_USER, credential: TURN_PASSWORD });

    const requested: string[] = [];
    const dashboard = await openTab(home1, 'dashboard', 'view=dashboard');
    dashboard.on('request', (r) => requested.push(r.url()));
    await expect(dashboard.locator('#isolation')).toContainText('by the server\'s headers');
    await dashboard.waitForTimeout(3000);
    const workerChunk = readdirSync(`${dir}/dist/assets`).find((f) => f.startsWith('swarm.worker'))!;
    expect(requested.filter((u) => u.includes(workerChunk) || u.includes('/tfjs/'))).toEqual([]);
    // The worker starts WASM pthreads from the module's own script, not from the text of a bundled function.
    expect(readFileSync(`${dir}/dist/assets/${workerChunk}`, 'utf8')).toContain('__swarmWasmThreadedScript??');
    expect(existsSync(`${dir}/dist/tfjs/tfjs-backend-wasm-threaded-simd.js`)).toBe(true);
    await dashboard.context().close();

    const noHeaders = await openTab(home1, 'no-headers', 'view=dashboard', SITE_NO_HEADERS);
    await expect(noHeaders.locator('#isolation')).toContainText('by the service worker', { timeout: 30_000 });
    expect(await noHeaders.evaluate(() => crossOriginIsolated)).toBe(true);
    await noHeaders.context().close();
  });

  test('tabs in two homes behind NAT connect directly through STUN and merge; relays count them', async () => {
    test.setTimeout(420_000);
    // STUN only: a connection between the tabs can only be a direct one through the NATs.
    const stunOnly = `&ice=${encodeURIComponent(`stun:${PUBLIC_IP}:3478`)}`;
    const tabs = [await openTab(home1, 'home1', joinQuery(0, stunOnly)), await openTab(home2, 'home2', joinQuery(1, stunOnly))];
    await waitForAll(tabs, 'both tabs to reach a relay', (s) => s.relayConnected, 120_000);
    const during = relays.map((r) => metrics(r.status));
    console.log(`[internet] relay metrics while tabs connect: ${JSON.stringify(during)}`);
    expect(during.reduce((a, m) => a + m.swarm_relay_reservations, 0)).toBeGreaterThanOrEqual(2);
    expect(sum(during[0], 'swarm_relay_connections{transport="webrtc-direct"}')).toBeGreaterThanOrEqual(2);
    expect(sum(during[1], 'swarm_relay_connections{transport="wss"}')).toBeGreaterThanOrEqual(2);

    const states = await waitForAll(tabs, 'a direct neighbour and a merge in each tab', (s) => s.neighbours.length >= 1 && s.merges >= 1, 360_000);
    for (const s of states) expect(s.mergeHistory.some((m) => m.inputs.length >= 2)).toBe(true);
    // The production build's WASM pthread workers start (vite.config.ts, swarm-wasm-threads): every core is in use.
    for (const s of states) if (s.backend === 'wasm') expect(s.threads).toBe(Math.min(8, cpus().length));
    const types = await Promise.all(tabs.map(candidateTypes));
    console.log(`[internet] direct: selected candidate pairs home1 ${JSON.stringify(types[0])} home2 ${JSON.stringify(types[1])}`);
    // The tab-to-tab connections (the others are WebRTC-Direct ones to a relay's host address) are direct.
    const between = types.map((list) => list.filter((t) => !t.endsWith(`→host/${PUBLIC_IP}`)));
    expect(between[0].length).toBeGreaterThan(0);
    expect(between.flat().filter((t) => t.includes('relay'))).toEqual([]);
    const after = relays.map((r) => metrics(r.status));
    console.log(`[internet] relay metrics after merging: ${JSON.stringify(after)}`);
    expect(after.reduce((a, m) => a + m.swarm_relay_relayed_bytes_total, 0)).toBeGreaterThan(0);
    for (const t of tabs) await t.context().close();
  });

  test('with direct UDP between the homes blocked, tabs connect through TURN and still merge', async () => {
    test.setTimeout(420_000);
    blockDirectUdp(true);
    const tabs = [await openTab(home1, 'home1-turn', joinQuery(2)), await openTab(home2, 'home2-turn', joinQuery(3))];
    await waitForAll(tabs, 'a neighbour and a merge through TURN', (s) => s.neighbours.length >= 1 && s.merges >= 1, 360_000);
    const types = await Promise.all(tabs.map(candidateTypes));
    console.log(`[internet] TURN: selected candidate pairs home1 ${JSON.stringify(types[0])} home2 ${JSON.stringify(types[1])}`);
    const between = types.map((list) => list.filter((t) => !t.endsWith(`→host/${PUBLIC_IP}`)));
    expect(between[0].length).toBeGreaterThan(0);
    expect(between.flat().every((t) => t.includes('relay'))).toBe(true);

    // Relay failover: relay B (WSS), where the tabs hold their reservations, dies; a new tab still joins through
    // relay A (WebRTC-Direct) and finds a neighbour.
    const before = relays.map((r) => metrics(r.status).swarm_relay_reservations);
    await relays[1].process.kill();
    const late = await openTab(home1, 'home1-late', joinQuery(4));
    const [state] = await waitForAll([late], 'the late tab to join through relay A', (s) => s.relayConnected && s.neighbours.length >= 1, 240_000);
    console.log(`[internet] failover: reservations before the kill A ${before[0]}, B ${before[1]}; late tab has ${state.neighbours.length} neighbour(s); relay A ${JSON.stringify(metrics(relays[0].status))}`);
    for (const t of [...tabs, late]) await t.context().close();
  });

  test('bad configuration is told in words', async () => {
    test.setTimeout(180_000);
    const malformed = await openTab(home1, 'malformed', joinQuery(5, '&relays=/ip4/10.77.0.1/udp/1/not-a-protocol'));
    await expect(malformed.getByTestId('errors')).toContainText('No relay to find other peers', { timeout: 60_000 });
    await expect(malformed.getByTestId('errors')).toContainText('not a multiaddr');
    const wrongTurn = await openTab(home2, 'wrong-turn', joinQuery(6, `&ice=${encodeURIComponent(`turn:${TURN_USER}:wrong@${PUBLIC_IP}:3478`)}`));
    await expect(wrongTurn.getByTestId('errors')).toContainText('refused the credentials', { timeout: 60_000 });
    // Relay B is dead since the failover test: a tab that knows only it says so, and keeps retrying.
    const unreachable = await openTab(home2, 'unreachable', joinQuery(7, `&relays=${encodeURIComponent(relays[1].wss)}`));
    await expect(unreachable.getByTestId('errors')).toContainText('keeps retrying', { timeout: 90_000 });
    for (const t of [malformed, wrongTurn, unreachable]) await t.context().close();
  });
});
