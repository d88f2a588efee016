// `swarm relay` as an operator meets it: flags checked before anything starts, certificate files checked before
// listening, and the process's own exit code and one-line message for a bad file or a busy port.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadOrCreateWebRTCCertificate, loadTls, parseRelayArgs, RelayArgumentError } from './relay.ts';

const dir = mkdtempSync(join(tmpdir(), 'swarm-relay-cli-'));

function relayCli(args: string[]) {
  return spawnSync(process.execPath, ['--import', 'tsx', 'cli/swarm.ts', 'relay', '--ephemeral', '--no-config', ...args], { encoding: 'utf8', timeout: 60_000 });
}

describe('swarm relay flags', () => {
  it('reads listen, announce, TLS, limits and status flags', () => {
    const options = parseRelayArgs([
      '--listen', '/ip4/0.0.0.0/udp/9091/webrtc-direct', '--listen', '/ip4/0.0.0.0/tcp/9443/tls/ws',
      '--announce', '/dns4/relay.example.org/tcp/9443/tls/ws', '--tls-cert', 'c.pem', '--tls-key', 'k.pem',
      '--key-file', 'id.key', '--max-reservations', '64', '--max-connections', '256', '--status', '127.0.0.1:9100',
    ]);
    expect(options).toMatchObject({
      listen: ['/ip4/0.0.0.0/udp/9091/webrtc-direct', '/ip4/0.0.0.0/tcp/9443/tls/ws'],
      announce: ['/dns4/relay.example.org/tcp/9443/tls/ws'],
      tlsCertFile: 'c.pem',
      tlsKeyFile: 'k.pem',
      keyFile: 'id.key',
      webrtcCertFile: 'id.key.webrtc.json',
      maxReservations: 64,
      maxConnections: 256,
      status: { host: '127.0.0.1', port: 9100 },
    });
  });

  it('refuses inconsistent flags before starting anything', () => {
    expect(() => parseRelayArgs(['--listen', '/ip4/0.0.0.0/tcp/9443/tls/ws'])).toThrow(/needs --tls-cert and --tls-key/);
    expect(() => parseRelayArgs(['--tls-cert', 'c.pem'])).toThrow(/go together/);
    expect(() => parseRelayArgs(['--listen', 'nonsense'])).toThrow(RelayArgumentError);
    expect(() => parseRelayArgs(['--status', '9100'])).toThrow(/<host>:<port>/);
    expect(() => parseRelayArgs(['--port', '70000'])).toThrow(/up to 65535/);
  });

  it('checks the TLS files and the stored WebRTC certificate', async () => {
    writeFileSync(join(dir, 'garbage.pem'), 'not a certificate\n');
    await expect(loadTls(join(dir, 'missing.pem'), join(dir, 'missing.pem'))).rejects.toThrow(/no such file/);
    await expect(loadTls(join(dir, 'garbage.pem'), join(dir, 'garbage.pem'))).rejects.toThrow(/not a PEM certificate/);
    const first = await loadOrCreateWebRTCCertificate(join(dir, 'webrtc.json'));
    expect((await loadOrCreateWebRTCCertificate(join(dir, 'webrtc.json'))).certhash).toBe(first.certhash);
    writeFileSync(join(dir, 'broken.json'), '{"pem":');
    await expect(loadOrCreateWebRTCCertificate(join(dir, 'broken.json'))).rejects.toThrow(/delete it to make a new one/);
  });

  it('ends with one line and exit code 1 for a bad certificate file or a busy port', async () => {
    const bad = relayCli(['--listen', '/ip4/127.0.0.1/tcp/0/tls/ws', '--tls-cert', join(dir, 'garbage.pem'), '--tls-key', join(dir, 'garbage.pem')]);
    expect(bad.status).toBe(1);
    expect(bad.stderr.trim().split('\n')).toEqual([`swarm relay: --tls-cert ${join(dir, 'garbage.pem')}: not a PEM certificate`]);

    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    try {
      const busy = relayCli(['--port', String(port)]);
      expect(busy.status).toBe(1);
      const lines = busy.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(new RegExp(`^swarm relay: could not listen: /ip4/127.0.0.1/tcp/${port}/ws: .*EADDRINUSE`));
    } finally {
      server.close();
    }
  }, 120_000);
});
