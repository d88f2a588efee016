// The relay of a simulation: the real `swarm relay` child process, with a fixed identity and port so that a
// killed relay can come back at the address the tabs were given.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRelayProcess, type RelayProcess } from '../../e2e/relay-process.ts';

export class ManagedRelay {
  private process: RelayProcess | null = null;
  private port = 0;
  private readonly dir = mkdtempSync(join(tmpdir(), 'swarm-sim-relay-'));
  multiaddr = '';

  get running(): boolean {
    return this.process !== null;
  }

  async start(): Promise<void> {
    if (this.process) return;
    this.process = await startRelayProcess(['--key-file', join(this.dir, 'relay.key'), '--port', String(this.port)]);
    if (this.port === 0) {
      const port = /\/tcp\/(\d+)\//.exec(this.process.multiaddr)?.[1];
      if (!port) throw new Error(`cannot read the relay's port from ${this.process.multiaddr}`);
      this.port = Number(port);
    } else if (this.process.multiaddr !== this.multiaddr) {
      throw new Error(`the restarted relay has a new address ${this.process.multiaddr} (was ${this.multiaddr})`);
    }
    this.multiaddr = this.process.multiaddr;
  }

  /** SIGKILL, as a crash or an unplugged machine would. */
  async kill(): Promise<void> {
    const p = this.process;
    this.process = null;
    await p?.kill();
  }

  /** Restarts on the same port with the same identity; the port may be briefly taken, so it retries. */
  async restart(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.start();
        return;
      } catch (error) {
        if (attempt >= 5) throw error;
        await new Promise((r) => setTimeout(r, 1000 * attempt));
      }
    }
  }

  async stop(): Promise<void> {
    const p = this.process;
    this.process = null;
    await p?.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
