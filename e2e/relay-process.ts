// Starts the real relay (`swarm relay`) as a child process on a free loopback port, for specs and the benchmark.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';

/** libp2p needs Node 22; the project pins it as a devDependency, which may differ from the Node running this. */
const NODE = existsSync('node_modules/.bin/node') ? 'node_modules/.bin/node' : process.execPath;

export interface RelayProcess {
  child: ChildProcess;
  multiaddr: string;
  /** SIGKILL: the relay vanishes as a crashed or unplugged one would. */
  kill(): Promise<void>;
  stop(): Promise<void>;
}

/** extraArgs come last (a later --port wins); with --key-file the relay keeps that identity, so a restart on the same port has the same address. */
export async function startRelayProcess(extraArgs: string[] = []): Promise<RelayProcess> {
  const identity = extraArgs.includes('--key-file') ? [] : ['--ephemeral'];
  const child = spawn(NODE, ['--import', 'tsx', 'cli/swarm.ts', 'relay', '--port', '0', ...identity, '--no-config', ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const multiaddr = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`relay did not start within 60 s:\n${output}`)), 60_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = output.match(/^\s+(\/ip4\/\S+\/ws\/p2p\/\S+)$/m);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`relay exited with ${code}:\n${output}`));
    });
  });
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  return {
    child,
    multiaddr,
    async kill() {
      child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}
