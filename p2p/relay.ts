// The bootstrap relay: introduces peers (circuit relay v2 for WebRTC signalling, rendezvous for peer discovery),
// carries telemetry to the dashboards connected to it, and holds nothing else. Relayed connections keep libp2p's
// default limits, so no adapter payload can cross them.
import { createLibp2p, type Libp2p } from 'libp2p';
import { webSockets } from '@libp2p/websockets';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { identify } from '@libp2p/identify';
import { ping } from '@libp2p/ping';
import { gossipsub } from '@libp2p/gossipsub';
import { circuitRelayServer } from '@libp2p/circuit-relay-v2';
import type { PrivateKey } from '@libp2p/interface';
import { multiaddr } from '@multiformats/multiaddr';
import {
  CONNECTION_PING_MIN_TIMEOUT_MS,
  DEFAULT_RELAY_HOST,
  DEFAULT_RELAY_MAX_RESERVATIONS,
  DEFAULT_RELAY_PORT,
} from './constants.ts';
import { rendezvousServer, type RendezvousServer } from './discovery.ts';
import { carryTelemetryAtRelay, type RelayTelemetry } from './telemetry-topic.ts';

export interface RelayInit {
  /** Interface to listen on; loopback unless the relay should serve other machines. */
  host?: string;
  /** WebSockets port; 0 picks a free one. */
  port?: number;
  /** Simultaneous circuit reservations (one per connected tab). */
  maxReservations?: number;
  /** Stable identity, so the relay's multiaddr survives restarts. */
  privateKey?: PrivateKey;
  /** Connections the relay keeps open at once. */
  maxConnections?: number;
}

export interface SwarmRelay {
  node: Libp2p;
  peerId: string;
  rendezvous: RendezvousServer;
  telemetry: RelayTelemetry;
  /** Dialable multiaddrs, each ending in /p2p/<relay peer id>. */
  multiaddrs: string[];
  stop(): Promise<void>;
}

export class RelayListenError extends Error {
  static override readonly name = 'RelayListenError';
  override readonly name = 'RelayListenError';
}

export async function startRelay(init: RelayInit = {}): Promise<SwarmRelay> {
  const host = init.host ?? DEFAULT_RELAY_HOST;
  const port = init.port ?? DEFAULT_RELAY_PORT;
  const maxReservations = init.maxReservations ?? DEFAULT_RELAY_MAX_RESERVATIONS;
  const listenAddr = multiaddr(`/${host.includes(':') ? 'ip6' : 'ip4'}/${host}/tcp/${port}/ws`).toString();

  let node: Libp2p<{ identify: unknown; ping: unknown; pubsub: ReturnType<ReturnType<typeof gossipsub>>; relay: unknown; rendezvous: RendezvousServer }>;
  try {
    node = await createLibp2p({
      privateKey: init.privateKey,
      addresses: { listen: [listenAddr] },
      transports: [webSockets()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      // A tab busy training answers pings late; dropping it would also drop its reservation (its WebRTC address).
      connectionMonitor: { pingTimeout: { minTimeout: CONNECTION_PING_MIN_TIMEOUT_MS } },
      connectionManager: {
        maxConnections: init.maxConnections ?? Math.max(1024, maxReservations * 2),
        // A classroom opening the page at once is a burst of handshakes, not an attack.
        maxIncomingPendingConnections: 256,
        inboundConnectionThreshold: 1_000,
      },
      services: {
        identify: identify(),
        ping: ping(),
        pubsub: gossipsub({
          // The relay subscribes only to the telemetry topics of runs whose dashboards connect to it
          // (carryTelemetryAtRelay); it never joins a run's adapter topic.
          allowPublishToZeroTopicPeers: true,
          floodPublish: true,
          doPX: false,
          // All tabs on one machine or behind one NAT share an IP; the colocation penalty would silence them.
          scoreParams: { IPColocationFactorWeight: 0 },
        }),
        relay: circuitRelayServer({
          reservations: { maxReservations },
          // Each tab opens a short signalling stream per WebRTC dial; allow plenty.
          maxInboundHopStreams: 1024,
          maxOutboundStopStreams: 1024,
        }),
        rendezvous: rendezvousServer({ maxRegistrations: Math.max(4096, maxReservations * 2) }),
      },
    });
  } catch (err) {
    throw new RelayListenError(`could not listen on ${listenAddr}: ${(err as Error).message}`, { cause: err });
  }
  const telemetry = carryTelemetryAtRelay(node.services.pubsub);

  const peerId = node.peerId.toString();
  const multiaddrs = node.getMultiaddrs().map((ma) => ma.toString());
  return {
    node,
    peerId,
    rendezvous: node.services.rendezvous,
    telemetry,
    multiaddrs,
    stop: async () => {
      telemetry.stop();
      await node.stop();
    },
  };
}
