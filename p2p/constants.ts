// Protocol names and defaults shared by the browser node, the relay and the tests.

/** Stream protocol that carries adapter payloads between two directly connected peers. */
export const ADAPTER_PROTOCOL = '/swarm/adapter/1.0.0';

/**
 * Stream protocol that hands a run manifest, by its id, to a tab that came by a `?run=<id>` link it has never seen.
 * A manifest is a few KiB at most, so it may cross a relayed (limited) connection.
 */
export const RUN_MANIFEST_PROTOCOL = '/swarm/run-manifest/1.0.0';

/** One manifest request that has not been answered after this long is abandoned. */
export const DEFAULT_MANIFEST_REQUEST_TIMEOUT_MS = 10_000;

/** How long a tab looks for an unknown run among its peers before it says that none knows it (and keeps looking). */
export const DEFAULT_RUN_LOOKUP_WARN_MS = 60_000;

/** Gossip topic that carries the announcement manifests of one run. */
export function runTopic(runId: string): string {
  return `swarm/run/${runId}/adapters/1`;
}

/**
 * The longest a WebRTC dial may take (signalling over a relay, ICE, Noise, Yamux) before the dial policy gives up
 * on it (the first tries get 5 s, see dialTimeoutFor). libp2p's own limits sit under this one: it caps
 * every address dial at 6 s and every inbound upgrade at 10 s, which made the policy's longer tries dead letters
 * (a tab whose CPU is busy training needs 10–30 s for a handshake).
 */
export const DEFAULT_MAX_DIAL_TIMEOUT_MS = 30_000;

/** Direct (WebRTC) neighbours a node keeps; small swarms get a full mesh, larger ones a bounded degree. */
export const DEFAULT_MAX_NEIGHBOURS = 12;

/** A payload larger than this is refused before a single byte is fetched. */
export const DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024 * 1024;

/** A fetch that has not finished after this long is abandoned. */
export const DEFAULT_FETCH_TIMEOUT_MS = 60_000;

/**
 * A fetch whose sender sends nothing for this long, or less than DEFAULT_FETCH_MIN_BYTES_PER_SECOND over a
 * DEFAULT_FETCH_RATE_WINDOW_MS window, loses its slot (a stall or a trickle would otherwise hold it for the whole
 * fetch timeout). The default run's adapter is ~130 KiB in fp16, so an honest neighbour sending 4 KiB/s, a
 * hundred times slower than two busy tabs on one machine measured, still delivers within the fetch timeout.
 */
export const DEFAULT_FETCH_IDLE_TIMEOUT_MS = 20_000;
export const DEFAULT_FETCH_MIN_BYTES_PER_SECOND = 4096;
export const DEFAULT_FETCH_RATE_WINDOW_MS = 15_000;

/** Concurrent fetches, and the most announced payload bytes they may cover together (one fetch always may start). */
export const DEFAULT_MAX_CONCURRENT_FETCHES = 4;
export const DEFAULT_MAX_BYTES_IN_FLIGHT = 64 * 1024 * 1024;

/**
 * Announcements accepted per sender: a burst of 8, then one per 500 ms. An honest peer announces once per H local
 * steps (seconds at the least); a flood is counted as rate-limited in the rejection ledger and ends in a ban.
 */
export const DEFAULT_ANNOUNCE_BURST = 8;
export const DEFAULT_ANNOUNCE_INTERVAL_MS = 500;

/**
 * Payload requests served per requester: a burst of 6, then one per 500 ms, and at most 2 at once. An honest
 * neighbour fetches each of our versions once (plus at most two retries); beyond that it is a serving flood,
 * answered with a rate-limited status and counted against the requester.
 */
export const DEFAULT_SERVE_BURST = 6;
export const DEFAULT_SERVE_INTERVAL_MS = 500;
export const DEFAULT_SERVE_CONCURRENT_PER_PEER = 2;
/** Payloads being sent at once, over all requesters. */
export const DEFAULT_MAX_CONCURRENT_SERVES = 16;

/** Reservations a relay grants at once (libp2p's own default is 15, too few for a classroom). */
export const DEFAULT_RELAY_MAX_RESERVATIONS = 512;

export const DEFAULT_RELAY_HOST = '127.0.0.1';
export const DEFAULT_RELAY_PORT = 9090;

/**
 * libp2p pings every connection every 10 s and aborts the connection when a ping outlives an adaptive timeout of
 * at least 5 s. A tab whose CPU is busy training (eight tabs on two cores, or one slow laptop) answers late, and
 * lost every WebRTC neighbour it had within a minute of resuming (dashboard.spec with 8 peers: full mesh while
 * paused, 0–5 neighbours after). Dead peers are still found: WebRTC closes a connection whose ICE consent lapses,
 * and a ping that takes longer than this still aborts the connection.
 */
export const CONNECTION_PING_MIN_TIMEOUT_MS = 30_000;

/**
 * Rendezvous at the relays (p2p/discovery.ts): a peer registers its addresses and free neighbour slots with the
 * relays it holds connections to, and asks them for a few peers with room; the relay answers with a random sample
 * and introduces the asker to each peer it named.
 */
export const RENDEZVOUS_PROTOCOL = '/swarm/rendezvous/1.0.0';
/** The relay's push to a peer it named in an answer: "this peer was told about you" (a list of one or more peers). */
export const INTRODUCTION_PROTOCOL = '/swarm/introduce/1.0.0';
/** How soon a peer that still has free slots asks again after an answer that named someone new. */
export const RENDEZVOUS_FAST_MS = 2_000;
/**
 * Neighbours after which a peer stops asking the relays for more and only refreshes its registration: half the
 * neighbour cap. Its free slots still fill as newcomers are introduced to it, and a swarm whose every peer has 6
 * random neighbours is one connected component with overwhelming probability, so asking on up to the cap would only
 * cost answers (each naming up to 14 peers) that nobody needs.
 */
export const RENDEZVOUS_ENOUGH_NEIGHBOURS = 6;
/** The longest a peer waits between two registrations (they also refresh its free slots at the relay). */
export const RENDEZVOUS_REFRESH_MS = 60_000;
/**
 * How often a peer with enough neighbours but free slots refreshes its registration (a request of ~150 bytes and an
 * empty answer): the relay spends a peer's advertised room each time it names it, so without refreshes a peer that
 * stopped asking looks full to the relay within seconds of a join burst. 16 peers in one thread
 * (p2p/discovery.test.ts) left some with 1–2 neighbours for 90 s with only the 60 s refresh.
 */
export const RENDEZVOUS_ROOM_REFRESH_MS = 15_000;
/** A registration that has not been refreshed for this long is dropped (also when the peer's connection closes). */
export const RENDEZVOUS_TTL_MS = 3 * RENDEZVOUS_REFRESH_MS;
/** Relays a peer keeps connections (and registrations) with; the rest of the run's list are fallbacks. */
export const DEFAULT_RELAYS_PER_PEER = 2;
