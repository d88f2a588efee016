// The researcher's dashboard: the whole swarm this tab can hear, from the gossiped telemetry (no server).
// Everything shown is derived from the run log, so what is on screen is what the exported JSON/CSV holds.
import { memo, useEffect, useMemo, useSyncExternalStore } from 'react';
import type { PeerController } from '../lib/peer-controller.ts';
import { TelemetryObserver, type DashboardState } from '../lib/telemetry.ts';
import {
  latestEdges,
  perPeerSeries,
  rejectionCounts,
  swarmMeanSeries,
  trafficTotals,
  type RunLogRecord,
  type Series,
} from '../../core/swarm/run-log.ts';
import type { TelemetryReport } from '../../core/wire/telemetry.ts';
import { formatDelta, formatEpsilon } from '../../core/privacy/describe.ts';
import { SeriesChart, type ChartSeries } from './dashboard/SeriesChart.tsx';
import { TopologyGraph, type GraphPeer } from './dashboard/TopologyGraph.tsx';
import './dashboard/dashboard.css';

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#17becf', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22',
  '#393b79', '#ad494a', '#637939', '#7b4173', '#e6550d', '#3182bd'];

const observers = new WeakMap<PeerController, TelemetryObserver>();

/** One observer per tab, kept while the tab lives (switching screens does not drop what was heard). */
export function dashboardObserver(controller: PeerController): TelemetryObserver {
  let observer = observers.get(controller);
  if (!observer) {
    observer = new TelemetryObserver(controller);
    observers.set(controller, observer);
  }
  return observer;
}

export const shortId = (peerId: string) => `…${peerId.slice(-6)}`;

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(2)} MiB`;
}

function relayPeerId(addr: string): string {
  const parts = addr.split('/p2p/');
  return parts[parts.length - 1].split('/')[0];
}

function download(name: string, text: string, type: string): void {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

interface PeerRow {
  peerId: string;
  color: string;
  present: boolean;
  latest: TelemetryReport;
  reports: number;
  joinedAtMs: number;
}

interface Derived {
  t0: number;
  peers: PeerRow[];
  edges: Array<[string, string]>;
  train: ChartSeries[];
  heldOut: ChartSeries[];
  consensus: ChartSeries[];
  bytes: ChartSeries[];
  traffic: ReturnType<typeof trafficTotals>;
  rejections: ReturnType<typeof rejectionCounts>;
  /** Rejections the peers themselves reported (their own validators), summed over their latest reports. */
  peerReportedRejections: Partial<Record<string, number>>;
  membership: Array<{ type: 'joined' | 'left'; peerId: string; atMs: number; detail: string }>;
  merges: number;
}

function derive(records: readonly RunLogRecord[], createdAtMs: number): Derived {
  const rows = new Map<string, PeerRow>();
  const membership: Derived['membership'] = [];
  let merges = 0;
  for (const r of records) {
    if (r.type === 'joined') {
      const existing = rows.get(r.peerId);
      if (existing) existing.present = true;
      membership.push({ type: 'joined', peerId: r.peerId, atMs: r.atMs, detail: '' });
    } else if (r.type === 'left') {
      const existing = rows.get(r.peerId);
      if (existing) existing.present = false;
      membership.push({ type: 'left', peerId: r.peerId, atMs: r.atMs, detail: r.detail });
    } else if (r.type === 'merge') {
      merges++;
    } else if (r.type === 'report') {
      const existing = rows.get(r.report.peerId);
      if (existing) {
        existing.latest = r.report;
        existing.reports++;
        existing.present = true;
      } else {
        rows.set(r.report.peerId, { peerId: r.report.peerId, color: PALETTE[rows.size % PALETTE.length], present: true, latest: r.report, reports: 1, joinedAtMs: r.atMs });
      }
    }
  }
  const peers = [...rows.values()];
  const firstReport = records.find((r) => r.type === 'report');
  const t0 = firstReport?.type === 'report' ? Math.min(firstReport.report.timeMs, createdAtMs) : createdAtMs;
  const seconds = (t: number[]) => t.map((x) => (x - t0) / 1000);
  const perPeer = (metric: 'trainLoss' | 'heldOutLoss' | 'consensusDistance' | 'bytesSent'): ChartSeries[] => {
    const series = perPeerSeries(records, metric);
    return peers
      .filter((p) => series.get(p.peerId)?.v.some((v) => v !== null))
      .map((p) => {
        const s = series.get(p.peerId) as Series;
        return { label: shortId(p.peerId), color: p.color, x: seconds(s.t), y: s.v };
      });
  };
  const mean = (metric: 'trainLoss' | 'heldOutLoss' | 'consensusDistance'): ChartSeries[] => {
    const s = swarmMeanSeries(records, metric);
    return s.t.length === 0 ? [] : [{ label: 'swarm mean', color: '#000', x: seconds(s.t), y: s.v, kind: 'mean' }];
  };
  // Merges as events on the training-loss timeline, at the merging peer's loss.
  const mergeX: number[] = [];
  const mergeY: Array<number | null> = [];
  const lastTrain = new Map<string, { timeMs: number; loss: number | null }>();
  for (const r of records) {
    if (r.type === 'report') lastTrain.set(r.report.peerId, { timeMs: r.report.timeMs, loss: r.report.trainLoss });
    if (r.type === 'merge') {
      const last = lastTrain.get(r.peerId);
      if (!last) continue;
      mergeX.push((last.timeMs - t0) / 1000);
      mergeY.push(last.loss);
    }
  }
  const mergeSeries: ChartSeries[] = mergeX.length > 0 ? [{ label: 'merge', color: '#7048e8', x: mergeX, y: mergeY, kind: 'events' }] : [];
  const peerReportedRejections: Partial<Record<string, number>> = {};
  for (const p of peers) for (const [reason, n] of Object.entries(p.latest.rejections)) peerReportedRejections[reason] = (peerReportedRejections[reason] ?? 0) + (n ?? 0);
  return {
    t0,
    peers,
    edges: latestEdges(records),
    train: [...perPeer('trainLoss'), ...mean('trainLoss'), ...mergeSeries],
    heldOut: [...perPeer('heldOutLoss'), ...mean('heldOutLoss')],
    consensus: [...perPeer('consensusDistance'), ...mean('consensusDistance')],
    bytes: perPeer('bytesSent'),
    traffic: trafficTotals(records),
    rejections: rejectionCounts(records),
    peerReportedRejections,
    membership,
    merges,
  };
}

/** One row of the peers table; re-rendered only when that peer sent a new report or came and went. */
const PeerTableRow = memo(function PeerTableRow({ peerId, color, present, latest, showEpsilon }: { peerId: string; color: string; present: boolean; latest: TelemetryReport; showEpsilon: boolean }) {
  return (
    <tr data-testid="dashboard-peer-row" data-peer-id={peerId} data-present={present} className={present ? '' : 'left'}>
      <td><span className="swatch" style={{ background: color }} /> {shortId(peerId)}</td>
      <td>{latest.step}</td>
      <td>{latest.trainLoss?.toFixed(3) ?? '–'}</td>
      <td>{latest.heldOutLoss?.toFixed(3) ?? '–'}</td>
      <td>{latest.merges}</td>
      <td>{latest.neighbours.length}</td>
      <td data-testid="peer-bytes-sent">{formatBytes(latest.bytesSent)}</td>
      <td>{formatBytes(latest.bytesReceived)}</td>
      <td>{latest.versionsAnnounced}/{latest.versionsFetched}</td>
      <td>{latest.tokensPerSecond?.toFixed(0) ?? '–'}</td>
      <td>{latest.backend}</td>
      {showEpsilon && (
        <td data-testid="peer-epsilon" data-epsilon={latest.epsilonSpent ?? ''}>
          {latest.epsilonSpent === undefined ? '–' : `${formatEpsilon(latest.epsilonSpent)}${latest.privacyExhausted ? ' (spent)' : ''}`}
        </td>
      )}
      <td data-testid="peer-health" data-health={latest.health ?? 'ok'} title={latest.healthReason}>
        {latest.health === 'unhealthy' ? `unhealthy${latest.healthReason ? `: ${latest.healthReason}` : ''}` : 'ok'}
      </td>
    </tr>
  );
});

function RunPanel({ state }: { state: DashboardState }) {
  const m = state.manifest;
  return (
    <section className="dash-run" data-testid="dashboard-run">
      <h3>Run</h3>
      {m ? (
        <dl>
          <dt>run</dt><dd>{m.runId} <code>{state.wireRunId}</code></dd>
          <dt>base model</dt><dd>{m.baseModel.id} <code>{m.baseModel.sha256.slice(0, 12)}…</code></dd>
          <dt>strategy</dt><dd data-testid="dashboard-strategy">{m.strategy.name} {Object.keys(m.strategy.params).length > 0 && <code>{JSON.stringify(m.strategy.params)}</code>}</dd>
          <dt>local steps H</dt><dd>{m.localSteps}</dd>
          <dt>LoRA</dt><dd>r = {m.lora.r}, α = {m.lora.alpha}, {m.lora.targetModules.join(', ')}</dd>
          <dt>codec</dt><dd>{m.codec}</dd>
          <dt>data</dt><dd><code>{JSON.stringify(m.data)}</code></dd>
          <dt>schedule</dt><dd><code>{JSON.stringify(m.schedule)}</code></dd>
          <dt>differential privacy</dt>
          <dd data-testid="dashboard-privacy">
            {m.privacy
              ? `ε ≤ ${formatEpsilon(m.privacy.targetEpsilon)} at δ = ${formatDelta(m.privacy.delta)} per volunteer's files, clip ${m.privacy.clipNorm}, sampling rate ${m.privacy.samplingRate}, at most ${m.privacy.maxPublishes} releases`
              : 'off'}
          </dd>
        </dl>
      ) : (
        <p>Manifest not known yet.</p>
      )}
    </section>
  );
}

export function Dashboard({ controller }: { controller: PeerController }) {
  const observer = dashboardObserver(controller);
  useEffect(() => observer.start(), [observer]);
  const state = useSyncExternalStore(observer.subscribe, observer.snapshot);
  // Recomputed only when the log grew (the observer also notifies for lag, connections and counters, up to 2/s):
  // the log only ever appends, so its length says whether anything derived from it changed. Everything below
  // that is memoised on `d` keeps its identity otherwise, and the charts and the graph are not touched.
  const records = observer.records();
  const createdAtMs = useMemo(() => Date.now(), []);
  const d = useMemo(() => derive(records, createdAtMs), [state.recordCount]);
  const present = d.peers.filter((p) => p.present);
  const graphPeers: GraphPeer[] = useMemo(
    () => d.peers.map((p) => ({ peerId: p.peerId, label: shortId(p.peerId), color: p.color, steps: p.latest.step, present: p.present })),
    [d],
  );
  const observerView = useMemo(
    () => (state.observerPeerId ? { peerId: state.observerPeerId, connections: state.connections.filter((c) => !c.relay).map((c) => c.peerId) } : null),
    [state.observerPeerId, state.connections],
  );
  const relays = useMemo(
    () => state.relays.map((addr) => relayPeerId(addr)).map((peerId) => ({ peerId, connected: state.connections.some((c) => c.peerId === peerId) })),
    [state.relays, state.connections],
  );
  const edges = useMemo(() => d.edges, [d]);
  // The ε column appears when the run uses differential privacy (from its manifest, or from what peers report).
  const showEpsilon = state.manifest?.privacy !== undefined || d.peers.some((p) => p.latest.epsilonSpent !== undefined);

  return (
    <div className="dashboard" data-testid="dashboard" data-phase={state.phase}>
      <div className="dash-top">
        <p className="dash-status" data-testid="dashboard-status">
          {state.phase === 'starting' && 'Connecting to the run…'}
          {state.phase === 'watching' && (
            <>
              Listening to <code>{state.wireRunId}</code> {state.via === 'own-node' ? 'as a watcher (this tab does not train)' : state.via === 'synthetic' ? 'from synthetic peers (load harness, no network)' : 'through this tab’s peer'}:{' '}
              <strong data-testid="dashboard-peer-count">{present.length}</strong> peers present ({d.peers.length} seen),{' '}
              <span data-testid="dashboard-report-count">{state.feed.accepted}</span> reports accepted,{' '}
              <span data-testid="dashboard-rejected-count">{state.feed.rejected}</span> rejected, page lag{' '}
              <span data-testid="dashboard-lag">{state.lagMs}</span> ms.
            </>
          )}
          {state.phase === 'error' && <span className="error">{state.error}</span>}
        </p>
        <div className="dash-export">
          <button data-testid="export-json" disabled={state.phase !== 'watching'} onClick={() => download(`run-log-${state.wireRunId}.json`, observer.exportJson(), 'application/json')}>
            Run log (JSON)
          </button>
          <button data-testid="export-csv" disabled={state.phase !== 'watching'} onClick={() => download(`run-log-${state.wireRunId}.csv`, observer.exportCsv(), 'text/csv')}>
            Run log (CSV)
          </button>
        </div>
      </div>

      <div className="dash-grid">
        <TopologyGraph peers={graphPeers} edges={edges} observer={observerView} relays={relays} />
        <section className="dash-peers">
          <h3>Peers</h3>
          <table data-testid="dashboard-peers">
            <thead>
              <tr><th>peer</th><th>step</th><th>train</th><th>held-out</th><th>merges</th><th>neighbours</th><th>sent</th><th>received</th><th>ann./fetched</th><th>tok/s</th><th>backend</th>{showEpsilon && <th title="privacy spent by each volunteer's own files (δ in the run panel)">ε</th>}<th>health</th></tr>
            </thead>
            <tbody>
              {d.peers.map((p) => (
                <PeerTableRow key={p.peerId} peerId={p.peerId} color={p.color} present={p.present} latest={p.latest} showEpsilon={showEpsilon} />
              ))}
            </tbody>
            <tfoot>
              <tr>
                <td>total</td><td /><td /><td /><td>{d.merges} seen</td><td>{d.edges.length} links (incl. this dashboard)</td>
                <td data-testid="dashboard-bytes-sent">{formatBytes(d.traffic.bytesSent)}</td>
                <td data-testid="dashboard-bytes-received">{formatBytes(d.traffic.bytesReceived)}</td>
                <td>{d.traffic.versionsAnnounced}/{d.traffic.versionsFetched}</td><td /><td />{showEpsilon && <td />}
              </tr>
            </tfoot>
          </table>
        </section>
      </div>

      <div className="dash-charts">
        <SeriesChart title="Training loss (per peer, swarm mean, merges)" yLabel="nats/byte" series={d.train} testId="chart-train-loss" />
        <SeriesChart title="Held-out loss (own genre)" yLabel="nats/byte" series={d.heldOut} testId="chart-heldout-loss" />
        <SeriesChart title="Consensus distance (mean ‖ΔWself − ΔWneighbour‖)" yLabel="Frobenius" series={d.consensus} testId="chart-consensus" emptyNote="peers report it after their first merge with a neighbour's adapter" />
        <SeriesChart title="Bytes sent (adapters served)" yLabel="bytes" series={d.bytes} testId="chart-bytes" />
      </div>

      <div className="dash-grid">
        <section className="dash-rejections">
          <h3>Rejected messages</h3>
          <p>
            Telemetry refused by this dashboard: <strong data-testid="dashboard-rejections-total">{d.rejections.total}</strong>
          </p>
          <table data-testid="dashboard-rejections">
            <thead><tr><th>reason</th><th>here</th><th>reported by peers</th></tr></thead>
            <tbody>
              {[...new Set([...Object.keys(d.rejections.byReason), ...Object.keys(d.peerReportedRejections)])].sort().map((reason) => (
                <tr key={reason} data-reason={reason}>
                  <td>{reason}</td>
                  <td data-testid={`rejections-here-${reason}`}>{d.rejections.byReason[reason as keyof typeof d.rejections.byReason] ?? 0}</td>
                  <td>{d.peerReportedRejections[reason] ?? 0}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <ul className="dash-recent">
            {state.recentRejections.slice(-6).reverse().map((r, i) => (
              <li key={`${r.atMs}-${i}`}>{new Date(r.atMs).toLocaleTimeString()} {shortId(r.peerId)}: {r.reason} ({r.detail.slice(0, 90)})</li>
            ))}
          </ul>
        </section>
        <section className="dash-membership">
          <h3>Peers joined and left</h3>
          <ul data-testid="dashboard-membership">
            {d.membership.slice(-12).reverse().map((e, i) => (
              <li key={`${e.atMs}-${i}`}>
                {new Date(e.atMs).toLocaleTimeString()} {shortId(e.peerId)} {e.type}{e.detail && ` (${e.detail})`}
              </li>
            ))}
          </ul>
        </section>
        <RunPanel state={state} />
      </div>
    </div>
  );
}
