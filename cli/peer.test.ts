// `swarm peer` argument handling: every malformed value ends in one line naming it and a non-zero exit, before
// anything starts. (Running peers, Ctrl-C, resume, unknown runs and model mismatches: e2e/node-peer.spec.ts.)
import { describe, expect, it } from 'vitest';
import { useCommandSandbox } from './command-sandbox.ts';
import { parsePeerArgs, PeerUsageError, runPeer } from './peer.ts';

const RELAY = '/ip4/127.0.0.1/tcp/9090/ws/p2p/12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq';

describe('parsePeerArgs', () => {
  it('reads the options, with the data dir named after the peer', () => {
    const cmd = parsePeerArgs(['--run', 'ab'.repeat(32), '--relays', `${RELAY}, ${RELAY}`, '--name', 'lab-1', '--genre', 'mystery', '--steps', '50', '--duty', '0.5']);
    expect(cmd).toMatchObject({ run: 'ab'.repeat(32), relays: [RELAY], name: 'lab-1', genre: 'mystery', steps: 50, duty: 0.5, slot: 0, backend: 'wasm' });
    expect(cmd !== 'help' && cmd.dataDir.endsWith('.data/peer-lab-1')).toBe(true);
  });

  it.each([
    [['--relays', '/ip4/127.0.0.1/tcp/9090/ws'], /--relays: '\/ip4\/127.0.0.1\/tcp\/9090\/ws' does not end in \/p2p\/<relay peer id>/],
    [['--relays', 'relay.example.org'], /--relays: 'relay.example.org' is not a multiaddr/],
    [['--genre', 'mystery', '--slot', '2'], /--genre and --slot exclude each other/],
    [['--slot=-1'], /--slot must be an integer ≥ 0, got '-1'/],
    [['--steps', '1.5'], /--steps must be an integer/],
    [['--duty', '0'], /--duty must be in \(0, 1\], got '0'/],
    [['--backend', 'webgpu'], /--backend must be wasm or cpu/],
    [['--name', '../x'], /--name may hold/],
    [['--bogus'], /Unknown option '--bogus'/],
    [['--slot', '-1'], /^Option '--slot' argument is ambiguous\.$/],
  ])('%j is refused by name', (argv, message) => {
    expect(() => parsePeerArgs(argv as string[])).toThrow(PeerUsageError);
    expect(() => parsePeerArgs(argv as string[])).toThrow(message);
  });
});

describe('swarm peer', () => {
  const sandbox = useCommandSandbox('swarm-peer-');

  it('a malformed relay address ends in one line and exit code 2', async () => {
    expect(await runPeer(['--relays', '/dns4/relay/tcp/443/wss', '--data-dir', sandbox.dir])).toBe(2);
    expect(sandbox.stderr).toHaveLength(1);
    expect(sandbox.stderr[0]).toMatch(/^swarm peer: --relays: '\/dns4\/relay\/tcp\/443\/wss' does not end in \/p2p\/<relay peer id>; a relay address looks like /);
    expect(sandbox.stdout).toEqual([]);
  });

  it('a run that is neither a link nor an id ends in one line and exit code 2', async () => {
    expect(await runPeer(['--run', 'not-a-run!', '--relays', RELAY, '--data-dir', sandbox.dir])).toBe(2);
    expect(sandbox.stderr).toHaveLength(1);
    expect(sandbox.stderr[0]).toMatch(/^swarm peer: --run is not a run link or a manifest id \(malformed: /);
  });
});
