// The relay as an operator runs it: real libp2p clients in this process dial it over WebRTC-Direct (node-datachannel)
// and WebSockets on 127.0.0.1, reserve circuits, talk through them, and the numbers on /metrics follow.
import { afterEach, describe, expect, it } from 'vitest';
import { createLibp2p, type Libp2p } from 'libp2p';
import { webSockets } from '@libp2p/websockets';
import { webRTCDirect } from '@libp2p/webrtc';
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { identify } from '@libp2p/identify';
import { ping } from '@libp2p/ping';
import { multiaddr } from '@multiformats/multiaddr';
import { startRelay, RelayListenError, type SwarmRelay } from './relay.ts';
import { startStatusServer, type StatusServer } from './relay-metrics.ts';
import { createWebRTCDirectCertificate, parseWebRTCDirectCertificate, WebRTCCertificateError } from './webrtc-certificate.ts';

let relay: SwarmRelay | undefined;
let status: StatusServer | undefined;
const clients: Libp2p[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.stop()));
  await status?.close();
  await relay?.stop();
  relay = status = undefined;
});

async function client(): Promise<Libp2p<{ identify: unknown; ping: ReturnType<ReturnType<typeof ping>> }>> {
  const node = await createLibp2p({
    addresses: { listen: ['/p2p-circuit'] },
    transports: [webRTCDirect(), webSockets(), circuitRelayTransport()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionGater: { denyDialMultiaddr: () => false },
    services: { identify: identify(), ping: ping() },
  });
  clients.push(node);
  return node;
}

async function until(what: string, ok: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('relay', () => {
  it('counts reservations, connections by transport and relayed bytes, and serves them as Prometheus text', async () => {
    relay = await startRelay({ listen: ['/ip4/127.0.0.1/udp/0/webrtc-direct', '/ip4/127.0.0.1/tcp/0/ws'] });
    const direct = relay.multiaddrs.find((a) => a.includes('/webrtc-direct/certhash/'))!;
    const ws = relay.multiaddrs.find((a) => a.includes('/ws/'))!;
    expect(direct).toBeDefined();
    const [a, b] = [await client(), await client()];
    await a.dial(multiaddr(direct));
    await b.dial(multiaddr(ws));
    await until('two reservations', () => relay!.snapshot().reservations === 2);
    const circuit = b.getMultiaddrs().find((ma) => ma.toString().includes('/p2p-circuit'))!;
    await a.services.ping.ping(circuit);
    await until('one connection per transport', () => relay!.snapshot().connections['webrtc-direct'] === 1 && relay!.snapshot().connections.ws === 1);
    const s = relay.snapshot();
    expect(s.connections).toEqual({ 'webrtc-direct': 1, ws: 1 });
    expect(s.connectionsOpened).toBeGreaterThanOrEqual(2);
    expect(s.circuitStreams).toBeGreaterThanOrEqual(2);
    // A ping is 32 bytes each way, on top of the circuit's noise and yamux handshakes.
    expect(s.bytesRelayed).toBeGreaterThan(64);

    status = await startStatusServer('127.0.0.1', 0, relay.node, relay.snapshot);
    const text = await (await fetch(`${status.url}/metrics`)).text();
    expect(text).toContain('# TYPE swarm_relay_reservations gauge\nswarm_relay_reservations 2\n');
    expect(text).toContain('swarm_relay_connections{transport="webrtc-direct"} 1\n');
    expect(text).toMatch(/^swarm_relay_relayed_bytes_total (\d+)$/m);
    const health = await fetch(`${status.url}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok', peerId: relay.peerId });
    expect((await fetch(`${status.url}/other`)).status).toBe(404);
  }, 60_000);

  it('refuses reservations beyond its limit and counts the refusal', async () => {
    relay = await startRelay({ listen: ['/ip4/127.0.0.1/tcp/0/ws'], maxReservations: 1 });
    const [a, b] = [await client(), await client()];
    await a.dial(multiaddr(relay.multiaddrs[0]));
    await until('the first reservation', () => relay!.snapshot().reservations === 1);
    await b.dial(multiaddr(relay.multiaddrs[0]));
    await until('a refusal', () => relay!.snapshot().refusals['reservations-full'] >= 1);
    expect(relay.snapshot().reservations).toBe(1);
    expect(b.getMultiaddrs().some((ma) => ma.toString().includes('/p2p-circuit'))).toBe(false);
  }, 60_000);

  it('keeps its WebRTC-Direct certhash across restarts when given its certificate', async () => {
    const certificate = await createWebRTCDirectCertificate();
    const hashes: string[] = [];
    for (let i = 0; i < 2; i++) {
      relay = await startRelay({ listen: ['/ip4/127.0.0.1/udp/0/webrtc-direct'], webrtcDirectCertificate: certificate });
      hashes.push(relay.multiaddrs[0].match(/\/certhash\/([^/]+)/)![1]);
      await relay.stop();
      relay = undefined;
    }
    expect(hashes[0]).toBe(certificate.certhash);
    expect(hashes[1]).toBe(certificate.certhash);
    // A stored certificate is re-read with its hash recomputed from the certificate, not trusted from the file.
    expect(parseWebRTCDirectCertificate(JSON.stringify({ privateKey: certificate.privateKey, pem: certificate.pem, certhash: 'uForged' })).certhash).toBe(certificate.certhash);
    expect(() => parseWebRTCDirectCertificate('{"pem": 1}')).toThrow(WebRTCCertificateError);
    expect(() => parseWebRTCDirectCertificate(JSON.stringify({ privateKey: certificate.privateKey, pem: 'garbage' }))).toThrow(WebRTCCertificateError);
  }, 60_000);

  it('names the address it could not listen on', async () => {
    relay = await startRelay({ listen: ['/ip4/127.0.0.1/tcp/0/ws'] });
    const port = relay.multiaddrs[0].match(/\/tcp\/(\d+)\//)![1];
    await expect(startRelay({ listen: [`/ip4/127.0.0.1/tcp/${port}/ws`] })).rejects.toThrow(/EADDRINUSE/);
    await expect(startRelay({ listen: ['/ip4/127.0.0.1/tcp/0/tls/ws'] })).rejects.toThrow(RelayListenError);
  }, 60_000);
});
