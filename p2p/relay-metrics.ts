// What a relay operator watches: reservations held, connections by transport, bytes carried over relayed circuits,
// and refusals, as Prometheus text on a small HTTP server that also answers a health check. Node only.
import { createServer, type Server } from 'node:http';
import type { Libp2p, Metrics, Stream } from '@libp2p/interface';

/** The circuit relay v2 protocols: a relayed circuit's bytes cross the relay on a hop stream and a stop stream. */
const CIRCUIT_PROTOCOLS = new Set(['/libp2p/circuit/relay/0.2.0/hop', '/libp2p/circuit/relay/0.2.0/stop']);

export type RefusalReason = 'reservations-full' | 'connections-full';

// libp2p's services register their own gauges and histograms on whatever metrics component is given; the relay
// reports only the numbers below, so those registrations get an object that accepts and drops every update.
const discard: Record<string, (...args: unknown[]) => unknown> = {
  update: () => undefined,
  increment: () => undefined,
  decrement: () => undefined,
  reset: () => undefined,
  observe: () => undefined,
  timer: () => () => undefined,
};

/**
 * A libp2p `metrics` component that counts what the relay's operator needs and nothing else. Bytes are counted as
 * they arrive on circuit streams, so each relayed byte is counted once (plus the few bytes of each circuit's
 * handshake).
 */
export class RelayMetrics implements Metrics {
  bytesRelayed = 0;
  circuitStreams = 0;
  readonly refusals: Record<RefusalReason, number> = { 'reservations-full': 0, 'connections-full': 0 };
  connectionsOpened = 0;

  trackMultiaddrConnection(): void {
    this.connectionsOpened++;
  }

  trackProtocolStream(stream: Stream): void {
    if (!CIRCUIT_PROTOCOLS.has(stream.protocol)) return;
    this.circuitStreams++;
    stream.addEventListener('message', (evt) => {
      this.bytesRelayed += evt.data.byteLength;
    });
  }

  refused(reason: RefusalReason): void {
    this.refusals[reason]++;
  }

  registerMetric = (() => discard) as unknown as Metrics['registerMetric'];
  registerMetricGroup = (() => discard) as unknown as Metrics['registerMetricGroup'];
  registerCounter = (() => discard) as unknown as Metrics['registerCounter'];
  registerCounterGroup = (() => discard) as unknown as Metrics['registerCounterGroup'];
  registerHistogram = (() => discard) as unknown as Metrics['registerHistogram'];
  registerHistogramGroup = (() => discard) as unknown as Metrics['registerHistogramGroup'];
  registerSummary = (() => discard) as unknown as Metrics['registerSummary'];
  registerSummaryGroup = (() => discard) as unknown as Metrics['registerSummaryGroup'];
  traceFunction = (<F>(_name: string, fn: F) => fn) as Metrics['traceFunction'];
  createTrace(): undefined {
    return undefined;
  }
}

/**
 * The transport a connection came over, named as an operator would: webrtc-direct, wss, ws, or other. An inbound
 * WebSocket's remote address says /ws whether or not TLS carried it, so `websocketName` is what the relay's own
 * listeners make of it: wss or ws when it listens on only one kind, websockets when on both.
 */
export function transportOf(remoteAddr: string, websocketName = 'ws'): string {
  if (remoteAddr.includes('/webrtc-direct')) return 'webrtc-direct';
  if (remoteAddr.includes('/tls/ws') || remoteAddr.includes('/wss')) return 'wss';
  if (remoteAddr.includes('/ws')) return websocketName;
  return 'other';
}

export interface RelaySnapshot {
  reservations: number;
  maxReservations: number;
  connections: Record<string, number>;
  connectionsOpened: number;
  bytesRelayed: number;
  circuitStreams: number;
  refusals: Record<RefusalReason, number>;
  uptimeSeconds: number;
}

/** Prometheus text exposition format 0.0.4. */
export function prometheusText(s: RelaySnapshot): string {
  const lines: string[] = [];
  const metric = (name: string, type: 'gauge' | 'counter', help: string, samples: Array<[string, number]>) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) lines.push(`${name}${labels} ${value}`);
  };
  metric('swarm_relay_reservations', 'gauge', 'Circuit relay reservations held now.', [['', s.reservations]]);
  metric('swarm_relay_reservations_max', 'gauge', 'Circuit relay reservations the relay grants at most.', [['', s.maxReservations]]);
  const transports = Object.entries(s.connections);
  metric('swarm_relay_connections', 'gauge', 'Open connections by transport.', transports.length ? transports.map(([t, n]) => [`{transport="${t}"}`, n]) : [['{transport="any"}', 0]]);
  metric('swarm_relay_connections_opened_total', 'counter', 'Connections opened since start.', [['', s.connectionsOpened]]);
  metric('swarm_relay_relayed_bytes_total', 'counter', 'Bytes received on relayed circuits (hop and stop streams).', [['', s.bytesRelayed]]);
  metric('swarm_relay_circuit_streams_total', 'counter', 'Hop and stop streams opened since start.', [['', s.circuitStreams]]);
  metric('swarm_relay_refusals_total', 'counter', 'Reservations or connections refused because a limit was reached.', Object.entries(s.refusals).map(([r, n]) => [`{reason="${r}"}`, n]));
  metric('swarm_relay_uptime_seconds', 'gauge', 'Seconds since the relay started.', [['', Math.round(s.uptimeSeconds)]]);
  return lines.join('\n') + '\n';
}

export interface StatusServer {
  server: Server;
  url: string;
  close(): Promise<void>;
}

/** Serves GET /health (200 "ok" with the peer id while the node runs) and GET /metrics (Prometheus text). */
export async function startStatusServer(host: string, port: number, node: Pick<Libp2p, 'status' | 'peerId'>, snapshot: () => RelaySnapshot): Promise<StatusServer> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (path === '/health') {
      const up = node.status === 'started';
      res.writeHead(up ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ status: up ? 'ok' : node.status, peerId: node.peerId.toString() }) + '\n');
    } else if (path === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(prometheusText(snapshot()));
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('try /health or /metrics\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const boundPort = typeof address === 'object' && address ? address.port : port;
  return {
    server,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${boundPort}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
