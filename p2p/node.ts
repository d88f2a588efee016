// The swarm's libp2p node for a browser tab: WebSockets to reach the relays, WebRTC between tabs (signalled over
// the circuit-relay transport), gossipsub for manifests and peer discovery, the adapter exchange protocol, and the
// run-manifest protocol that lets a tab with only a manifest id get the manifest from its peers.
import { createLibp2p, type Libp2p, type Libp2pOptions } from 'libp2p';
import { webSockets } from '@libp2p/websockets';
import { webRTC, webRTCDirect } from '@libp2p/webrtc';
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { identify } from '@libp2p/identify';
import { ping } from '@libp2p/ping';
import { gossipsub, StrictSign, type GossipSub } from '@libp2p/gossipsub';
import type { PeerId, PrivateKey } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr';
import { RejectionLedger, type RejectionLedgerOptions } from '../core/wire/verdict.ts';
import { CONNECTION_PING_MIN_TIMEOUT_MS, DEFAULT_MAX_DIAL_TIMEOUT_MS } from './constants.ts';
import { rendezvousDiscovery, type RendezvousDiscovery, type RendezvousDiscoveryInit } from './discovery.ts';
import { dialPolicy, isDirectConnection, isWebRtcAddress, type DialPolicy, type DialPolicyInit } from './dial-policy.ts';
import type { KnownPeers } from './known-peers.ts';
import { adapterExchange, PeerBans, type AdapterExchange, type AdapterExchangeInit } from './exchange.ts';
import { runManifestService, type RunManifestService, type RunManifestServiceInit } from './run-manifest-protocol.ts';

export interface SwarmNodeInit {
  /** Bootstrap relay multiaddrs (each ending in /p2p/<relay id>); several are allowed, any one suffices. */
  relays: string[];
  /**
   * The run this node takes part in: manifests travel on a per-run topic and other runs are rejected. Absent when
   * the run is not known yet (the tab looks its manifest up first); exchange.joinRun() joins it later.
   */
  runId?: string;
  /** Identity of the node; a fresh one per page load when absent. */
  privateKey?: PrivateKey;
  /** Rendezvous at the relays (p2p/discovery.ts): how often to ask while neighbour slots are free, and so on. */
  discovery?: Omit<RendezvousDiscoveryInit, 'relays' | 'maxNeighbours'>;
  /** ICE servers (STUN, TURN) for WebRTC; none by default, because tabs on one machine or LAN need none. */
  iceServers?: RTCIceServer[];
  /** Relays and peers met on earlier visits: tried first, and updated as this node meets more. */
  knownPeers?: KnownPeers;
  dial?: Omit<DialPolicyInit, 'relays'>;
  exchange?: Omit<AdapterExchangeInit, 'runId' | 'ledger' | 'bans'>;
  runManifests?: Omit<RunManifestServiceInit, 'ledger' | 'bans'>;
  ledger?: RejectionLedgerOptions;
  /**
   * Replaces the transports and listen addresses (Node tests run the same services over WebSockets on 127.0.0.1,
   * because Node has no WebRTC of its own).
   */
  transport?: Pick<Libp2pOptions, 'transports' | 'addresses'>;
  /**
   * Inbound connections accepted per second from one host (libp2p's default is 5). Many peers on one machine
   * (bench:scale, a classroom behind one NAT reaching a peer directly) share a host.
   */
  inboundConnectionThreshold?: number;
}

export type SwarmServices = {
  identify: ReturnType<ReturnType<typeof identify>>;
  ping: ReturnType<ReturnType<typeof ping>>;
  pubsub: GossipSub;
  dialPolicy: DialPolicy;
  exchange: AdapterExchange;
  runManifests: RunManifestService;
  discovery: RendezvousDiscovery;
};

export interface SwarmNode {
  libp2p: Libp2p<SwarmServices>;
  peerId: PeerId;
  dialPolicy: DialPolicy;
  exchange: AdapterExchange;
  runManifests: RunManifestService;
  ledger: RejectionLedger;
  /** The addresses other tabs can dial (WebRTC via a relay once a reservation exists). */
  multiaddrs(): Multiaddr[];
  stop(): Promise<void>;
}

/**
 * Gossipsub's application score for a peer: each weighted rejection in the ledger's window costs 10 points, so
 * a peer reaches the graylist threshold (-80) at the same point where the ledger asks for a disconnect (8).
 */
export const SCORE_PER_REJECTION = -10;

export async function createSwarmNode(init: SwarmNodeInit): Promise<SwarmNode> {
  const ledger = new RejectionLedger(init.ledger);
  const dialLimitMs = Math.max(init.dial?.maxDialTimeoutMs ?? 0, init.dial?.dialTimeoutMs ?? 0, DEFAULT_MAX_DIAL_TIMEOUT_MS);
  const bans = new PeerBans();
  // Relays met on earlier visits first; discovery and the dial policy use the same order.
  const relays = init.knownPeers ? init.knownPeers.orderRelays(init.relays) : init.relays;
  const transport = init.transport ?? {
    addresses: { listen: ['/p2p-circuit', '/webrtc'] },
    transports: [
      webSockets(),
      // Relays on public hosts: an https page reaches them without a CA-signed certificate.
      webRTCDirect({ rtcConfiguration: { iceServers: init.iceServers ?? [] } }),
      webRTC({ rtcConfiguration: { iceServers: init.iceServers ?? [] } }),
      circuitRelayTransport({ reservationCompletionTimeout: 10_000 }),
    ],
  };
  const libp2p = await createLibp2p<SwarmServices>({
    privateKey: init.privateKey,
    ...transport,
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionMonitor: { pingTimeout: { minTimeout: CONNECTION_PING_MIN_TIMEOUT_MS } },
    // The dial policy's own timeout decides when a dial is abandoned; libp2p's shorter ones must not cut it first.
    connectionManager: {
      dialTimeout: dialLimitMs,
      addressDialTimeout: dialLimitMs,
      inboundUpgradeTimeout: dialLimitMs,
      ...(init.inboundConnectionThreshold !== undefined ? { inboundConnectionThreshold: init.inboundConnectionThreshold } : {}),
    },
    // The browser's default gater refuses private and loopback addresses, which is where relays and tabs of a
    // local swarm live; the dial policy decides what gets dialled.
    connectionGater: {
      denyDialMultiaddr: () => false,
      // A peer disconnected for sending bad data stays out for the ban period, in both directions.
      denyDialPeer: (peerId) => bans.isBanned(peerId.toString()),
      denyInboundEncryptedConnection: (peerId) => bans.isBanned(peerId.toString()),
    },
    services: {
      identify: identify(),
      ping: ping(),
      pubsub: gossipsub({
        globalSignaturePolicy: StrictSign,
        allowPublishToZeroTopicPeers: true,
        scoreParams: {
          appSpecificScore: (peerId: string) => SCORE_PER_REJECTION * ledger.recentWeight(peerId),
          appSpecificWeight: 1,
          // Every tab of a local swarm (and of a classroom behind one NAT) shares an IP; gossipsub's colocation
          // penalty would graylist them all once more than ten had ever connected.
          IPColocationFactorWeight: 0,
        },
      }),
      dialPolicy: dialPolicy({ ...init.dial, relays }),
      exchange: adapterExchange({ ...init.exchange, runId: init.runId, ledger, bans }),
      runManifests: runManifestService({ ...init.runManifests, ledger, bans }),
      discovery: rendezvousDiscovery({ dialableAddress: init.dial?.isDirectAddress, ...init.discovery, relays, maxNeighbours: init.dial?.maxNeighbours }),
    },
  });
  const policy = libp2p.services.dialPolicy;
  libp2p.services.discovery.useNeighbours(
    () => policy.neighbours().length,
    (listener) => policy.addEventListener('neighbour:removed', listener),
  );
  if (init.knownPeers) rememberPeers(libp2p, init.knownPeers, init.relays);
  return {
    libp2p,
    peerId: libp2p.peerId,
    dialPolicy: libp2p.services.dialPolicy,
    exchange: libp2p.services.exchange,
    runManifests: libp2p.services.runManifests,
    ledger,
    multiaddrs: () => libp2p.getMultiaddrs(),
    stop: async () => {
      await libp2p.stop();
    },
  };
}

/** Records relays and direct neighbours as they connect, and offers last visit's neighbours to the dial policy. */
function rememberPeers(libp2p: Libp2p<SwarmServices>, known: KnownPeers, relays: string[]): void {
  libp2p.addEventListener('connection:open', ({ detail: connection }) => {
    const peerId = connection.remotePeer.toString();
    if (libp2p.services.dialPolicy.isRelay(peerId)) {
      // The configured address, which names the relay's id (and certhash); the connection's own may not.
      const configured = [...relays, ...known.relays()].find((a) => a.endsWith(`/p2p/${peerId}`));
      if (configured) known.rememberRelay(peerId, configured);
    } else if (isDirectConnection(connection)) {
      const addrs = libp2p.getConnections(connection.remotePeer).map((c) => c.remoteAddr).filter(isWebRtcAddress);
      known.rememberPeer(peerId, addrs.map((a) => a.toString()));
    }
  });
  // A peer-store entry raises peer:update, which is how the dial policy learns candidates.
  for (const { peerId, addrs } of known.peers()) {
    try {
      const ids = addrs.map((a) => multiaddr(a));
      void libp2p.peerStore.merge(peerIdFromString(peerId), { multiaddrs: ids }).catch(() => undefined);
    } catch {
      // A malformed remembered entry is skipped.
    }
  }
}
