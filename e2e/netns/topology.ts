// The internet in network namespaces: a "public" namespace (the static site, two relays, coturn) that also routes
// between two homes, each a router namespace masquerading a LAN namespace where Chromium runs. Created and removed
// by the spec itself; a run that crashed leaves namespaces behind, so creation first removes anything of ours.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync, chmodSync } from 'node:fs';

export const PREFIX = 'swe2e';
export const NS = { pub: `${PREFIX}-pub`, r1: `${PREFIX}-r1`, h1: `${PREFIX}-h1`, r2: `${PREFIX}-r2`, h2: `${PREFIX}-h2` } as const;
/** The one public address: the site, both relays and the TURN server live on it. */
export const PUBLIC_IP = '10.77.0.1';

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

export function inNs(ns: string, command: string, ...args: string[]): string {
  return execFileSync('ip', ['netns', 'exec', ns, command, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Kills whatever still runs in our namespaces, then deletes them. Safe to call any number of times. */
export function removeTopology(): void {
  let list = '';
  try {
    list = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  } catch {
    return;
  }
  for (const ns of list.split('\n').map((l) => l.split(' ')[0]).filter((n) => n.startsWith(`${PREFIX}-`))) {
    try {
      const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split('\n').filter(Boolean);
      for (const pid of pids) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
    } catch {
      // No pids.
    }
    try {
      ip('netns', 'del', ns);
    } catch {
      // Removed meanwhile.
    }
  }
}

/** What the machine needs; the spec fails with this list rather than half-building a topology. */
export function missingTools(): string[] {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push('root (network namespaces)');
  for (const tool of ['ip', 'iptables', 'turnserver', 'openssl']) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    } catch {
      missing.push(tool);
    }
  }
  return missing;
}

export function createTopology(): void {
  removeTopology();
  for (const ns of Object.values(NS)) {
    ip('netns', 'add', ns);
    inNs(ns, 'ip', 'link', 'set', 'lo', 'up');
  }
  inNs(NS.pub, 'ip', 'addr', 'add', `${PUBLIC_IP}/32`, 'dev', 'lo');
  inNs(NS.pub, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
  for (const home of [1, 2] as const) {
    const r = home === 1 ? NS.r1 : NS.r2;
    const h = home === 1 ? NS.h1 : NS.h2;
    // WAN: public namespace <-> router.
    ip('link', 'add', `swp${home}`, 'netns', NS.pub, 'type', 'veth', 'peer', 'name', `swr${home}w`, 'netns', r);
    inNs(NS.pub, 'ip', 'addr', 'add', `10.77.${home}.1/24`, 'dev', `swp${home}`);
    inNs(NS.pub, 'ip', 'link', 'set', `swp${home}`, 'up');
    inNs(r, 'ip', 'addr', 'add', `10.77.${home}.2/24`, 'dev', `swr${home}w`);
    inNs(r, 'ip', 'link', 'set', `swr${home}w`, 'up');
    inNs(r, 'ip', 'route', 'add', 'default', 'via', `10.77.${home}.1`);
    // LAN: router <-> home.
    ip('link', 'add', `swr${home}l`, 'netns', r, 'type', 'veth', 'peer', 'name', `swh${home}`, 'netns', h);
    inNs(r, 'ip', 'addr', 'add', `192.168.${home}.1/24`, 'dev', `swr${home}l`);
    inNs(r, 'ip', 'link', 'set', `swr${home}l`, 'up');
    inNs(h, 'ip', 'addr', 'add', `192.168.${home}.2/24`, 'dev', `swh${home}`);
    inNs(h, 'ip', 'link', 'set', `swh${home}`, 'up');
    inNs(h, 'ip', 'route', 'add', 'default', 'via', `192.168.${home}.1`);
    inNs(r, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
    inNs(r, 'iptables', '-t', 'nat', '-A', 'POSTROUTING', '-o', `swr${home}w`, '-j', 'MASQUERADE');
    // Like a home router, drop unsolicited UDP addressed to the router itself. Accepted (answered with ICMP), the first
    // hole-punching packet from the other home leaves a conntrack entry that takes the very tuple this router's own
    // outgoing packet needs, so MASQUERADE picks another port for it and the NAT behaves as a symmetric one.
    inNs(r, 'iptables', '-A', 'INPUT', '-i', `swr${home}w`, '-p', 'udp', '-j', 'DROP');
  }
}

/** Drops UDP between the homes' public addresses: only TURN (through the public namespace) still connects them. */
export function blockDirectUdp(block: boolean): void {
  for (const [from, to] of [['10.77.1.0/24', '10.77.2.0/24'], ['10.77.2.0/24', '10.77.1.0/24']]) {
    inNs(NS.pub, 'iptables', block ? '-I' : '-D', 'FORWARD', '-s', from, '-d', to, '-p', 'udp', '-j', 'DROP');
  }
}

/** A Chromium that runs inside a namespace; Playwright drives it over a pipe, which crosses namespaces. */
export function chromiumIn(ns: string, chromium: string, dir: string): string {
  const path = `${dir}/chromium-${ns}.sh`;
  writeFileSync(path, `#!/bin/sh\nexec ip netns exec ${ns} ${chromium} "$@"\n`);
  chmodSync(path, 0o755);
  return path;
}

export interface NsProcess {
  child: ChildProcess;
  output(): string;
  kill(): Promise<void>;
}

/** Starts a process in a namespace and resolves once its output matches `ready`. */
export async function startIn(ns: string, argv: string[], ready: RegExp, timeoutMs = 60_000): Promise<NsProcess> {
  const child = spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${argv.join(' ')} not ready within ${timeoutMs} ms:\n${output}`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (ready.test(output)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${argv.join(' ')} exited with ${code}:\n${output}`));
    });
  });
  return {
    child,
    output: () => output,
    kill: async () => {
      child.kill('SIGKILL');
      await exited;
    },
  };
}
