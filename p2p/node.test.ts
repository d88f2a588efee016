// The node's connection limits against a transport whose dials are slow, as a tab's are when its CPU is busy
// training: real libp2p nodes in this process over WebSockets on 127.0.0.1, the dialling side delayed.
import { afterEach, describe, expect, it } from 'vitest';
import { createLibp2p, type Libp2p } from 'libp2p';
import { webSockets } from '@libp2p/websockets';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import type { Transport } from '@libp2p/interface';
import { createSwarmNode, type SwarmNode } from './node.ts';

/** libp2p 3 abandons any single address dial after this long unless told otherwise. */
const LIBP2P_ADDRESS_DIAL_TIMEOUT_MS = 6_000;
const SLOW_DIAL_MS = LIBP2P_ADDRESS_DIAL_TIMEOUT_MS + 1_500;

type TransportFactory = ReturnType<typeof webSockets>;

/** WebSockets whose dials first wait SLOW_DIAL_MS (and give up when the dial's signal aborts). */
function slowWebSockets(): TransportFactory {
  return (components) => {
    const inner = webSockets()(components) as Transport;
    return new Proxy(inner, {
      get(target, prop) {
        if (prop === 'dial') {
          return async (...args: Parameters<Transport['dial']>) => {
            const signal = args[1].signal;
            await new Promise<void>((resolve, reject) => {
              const timer = setTimeout(resolve, SLOW_DIAL_MS);
              signal?.addEventListener('abort', () => {
                clearTimeout(timer);
                reject(signal.reason ?? new Error('aborted'));
              }, { once: true });
            });
            return target.dial(...args);
          };
        }
        const value = Reflect.get(target, prop, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
  };
}

const started: Array<{ stop(): void | Promise<void> }> = [];

async function listener(): Promise<SwarmNode> {
  const node = await createSwarmNode({
    relays: [],
    transport: { transports: [webSockets()], addresses: { listen: ['/ip4/127.0.0.1/tcp/0/ws'] } },
    dial: { isDirectAddress: (ma) => ma.toString().includes('/ws') },
  });
  started.push(node);
  return node;
}

afterEach(async () => {
  await Promise.all(started.splice(0).map((n) => Promise.resolve(n.stop()).catch(() => undefined)));
});

describe('swarm node connection limits', () => {
  it('a plain libp2p node gives up on a slow dial after its 6 s address limit, whatever the caller allows', async () => {
    const target = await listener();
    const plain: Libp2p = await createLibp2p({ transports: [slowWebSockets()], connectionEncrypters: [noise()], streamMuxers: [yamux()] });
    started.push(plain);
    const began = Date.now();
    await expect(plain.dial(target.multiaddrs()[0], { signal: AbortSignal.timeout(20_000) })).rejects.toThrow();
    expect(Date.now() - began).toBeLessThan(SLOW_DIAL_MS);
  }, 30_000);

  it('a swarm node lets a slow dial finish within the dial policy\'s limit', async () => {
    const target = await listener();
    const dialer = await createSwarmNode({
      relays: [],
      transport: { transports: [slowWebSockets()], addresses: { listen: [] } },
      dial: { isDirectAddress: (ma) => ma.toString().includes('/ws') },
    });
    started.push(dialer);
    const connection = await dialer.libp2p.dial(target.multiaddrs()[0], { signal: AbortSignal.timeout(20_000) });
    expect(connection.status).toBe('open');
    expect(connection.remotePeer.equals(target.peerId)).toBe(true);
  }, 30_000);
});
