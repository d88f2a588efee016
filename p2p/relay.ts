// The bootstrap relay: introduces peers (circuit relay v2 for WebRTC signalling, rendezvous for peer discovery),
// carries telemetry to the dashboards connected to it, and holds nothing else. Relayed connections keep libp2p's
// default limits, so no adapter payload can cross them.
// Browsers on https pages reach it over WebRTC-Direct (no CA certificate needed) or WSS (a certificate by file);
// plain ws is for a swarm on one machine.
import { createLibp2p, type Libp2p } from 'libp2p';
import { webSockets } from '@libp2p/websockets';
import { webRTCDirect } from '@libp2p/webrtc';
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
import { RelayMetrics, transportOf, type RelaySnapshot } from './relay-metrics.ts';
import type { WebRTCDirectCertificate } from './webrtc-certificate.ts';

export interface RelayInit {
  /** Multiaddrs to listen on (`/ip4/0.0.0.0/udp/9091/webrtc-direct`, `/ip4/0.0.0.0/tcp/443/tls/ws`, ...). */
  listen?: string[];
  /** Interface and WebSockets port of the default listen address when `listen` is absent (a local swarm). */
  host?: string;
  port?: number;
  /** Addresses to advertise instead of the listen ones (a public IP or DNS name in front of a NAT or proxy). */
  announce?: string[];
  /** PEM certificate chain and key for `/tls/ws` listen addresses. */
  tls?: { cert: string; key: string };
  /** A stable WebRTC-Direct certificate, so the certhash in run links survives restarts. */
  webrtcDirectCertificate?: WebRTCDirectCertificate;
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
  /** Dialable multiaddrs, each ending in /p2p/<relay peer id>. */
  multiaddrs: string[];
  rendezvous: RendezvousServer;
  telemetry: RelayTelemetry;
  metrics: RelayMetrics;
  /** The numbers /metrics reports. */
  snapshot(): RelaySnapshot;
  stop(): Promise<void>;
}

export class RelayListenError extends Error {
  static override readonly name = 'RelayListenError';
  override readonly name = 'RelayListenError';
}

export function defaultListenAddress(host = DEFAULT_RELAY_HOST, port = DEFAULT_RELAY_PORT): string {
  return multiaddr(`/${host.includes(':') ? 'ip6' : 'ip4'}/${host}/tcp/${port}/ws`).toString();
}

/** libp2p lists each failed address on a line of its own under a long preamble; an operator needs just those lines. */
function listenFailures(message: string): string | undefined {
  const failures = message.split('\n').map((line) => line.trim()).filter((line) => line.startsWith('/'));
  return failures.length ? failures.join('; ') : undefined;
}

function isSecureWebSocket(addr: string): boolean {
  return /\/(tls\/ws|wss)(\/|$)/.test(addr);
}

type RelayServices = {
  identify: unknown;
  ping: unknown;
  pubsub: ReturnType<ReturnType<typeof gossipsub>>;
  relay: { reservations: { size: number; has(peer: unknown): boolean } };
  rendezvous: RendezvousServer;
};

export async function startRelay(init: RelayInit = {}): Promise<SwarmRelay> {
  const maxReservations = init.maxReservations ?? DEFAULT_RELAY_MAX_RESERVATIONS;
  const maxConnections = init.maxConnections ?? Math.max(1024, maxReservations * 2);
  const listen = init.listen?.length ? init.listen : [defaultListenAddress(init.host, init.port)];
  for (const addr of listen) {
    try {
      multiaddr(addr);
    } catch (err) {
      throw new RelayListenError(`'${addr}' is not a multiaddr: ${(err as Error).message}`);
    }
    if (isSecureWebSocket(addr) && !init.tls) throw new RelayListenError(`${addr} needs a TLS certificate and key (--tls-cert, --tls-key)`);
  }
  const wantsWebRTCDirect = listen.some((a) => a.includes('/webrtc-direct'));
  const metrics = new RelayMetrics();
  const startedAt = Date.now();

  let node: Libp2p<RelayServices> | undefined;
  const holdsReservation = (peer: unknown) => node?.services.relay.reservations.has(peer) ?? false;
  try {
    node = await createLibp2p({
      privateKey: init.privateKey,
      addresses: { listen, announce: init.announce },
      transports: [
        webSockets(init.tls ? { https: { cert: init.tls.cert, key: init.tls.key } } : {}),
        ...(wantsWebRTCDirect ? [webRTCDirect(init.webrtcDirectCertificate ? { certificate: init.webrtcDirectCertificate } : {})] : []),
      ],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      metrics: () => metrics,
      // A tab busy training answers pings late; dropping it would also drop its reservation (its WebRTC address).
      connectionMonitor: { pingTimeout: { minTimeout: CONNECTION_PING_MIN_TIMEOUT_MS } },
      connectionManager: {
        maxConnections,
        // A classroom opening the page at once is a burst of handshakes, not an attack.
        maxIncomingPendingConnections: 256,
        inboundConnectionThreshold: 1_000,
      },
      // The gater sees each limit before libp2p applies it, which is where refusals get counted.
      connectionGater: {
        denyInboundConnection: () => {
          if ((node?.getConnections().length ?? 0) < maxConnections) return false;
          metrics.refused('connections-full');
          return true;
        },
        denyInboundRelayReservation: (peer) => {
          if ((node?.services.relay.reservations.size ?? 0) < maxReservations || holdsReservation(peer)) return false;
          metrics.refused('reservations-full');
          return true;
        },
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
    }) as unknown as Libp2p<RelayServices>;
  } catch (err) {
    throw new RelayListenError(`could not listen: ${listenFailures((err as Error).message) ?? `${listen.join(', ')}: ${(err as Error).message}`}`, { cause: err });
  }
  const started = node;
  const telemetry = carryTelemetryAtRelay(started.services.pubsub);

  const secure = listen.some((a) => isSecureWebSocket(a));
  const plain = listen.some((a) => /\/ws(\/|$)/.test(a) && !isSecureWebSocket(a));
  const websocketName = secure && plain ? 'websockets' : secure ? 'wss' : 'ws';
  const snapshot = (): RelaySnapshot => {
    const connections: Record<string, number> = {};
    for (const c of started.getConnections()) {
      const t = transportOf(c.remoteAddr.toString(), websocketName);
      connections[t] = (connections[t] ?? 0) + 1;
    }
    return {
      reservations: started.services.relay.reservations.size,
      maxReservations,
      connections,
      connectionsOpened: metrics.connectionsOpened,
      bytesRelayed: metrics.bytesRelayed,
      circuitStreams: metrics.circuitStreams,
      refusals: { ...metrics.refusals },
      uptimeSeconds: (Date.now() - startedAt) / 1000,
    };
  };
  const peerId = started.peerId.toString();
  return {
    node: started,
    peerId,
    multiaddrs: started.getMultiaddrs().map((ma) => ma.toString()),
    rendezvous: started.services.rendezvous,
    telemetry,
    metrics,
    snapshot,
    stop: async () => {
      telemetry.stop();
      await started.stop();
    },
  };
}
