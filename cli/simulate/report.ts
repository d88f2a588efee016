// Self-contained HTML reports (inline SVG charts, inline CSS, no script, no network) and the markdown table of a
// comparison, all built from run logs and their summaries.
import { perPeerSeries, type RunLogData } from '../../core/swarm/run-log.ts';
import { SIM_EVENTS, type HeldOutDetail, type RunSummary, type TabPeerDetail } from './metrics.ts';
import { escapeXml, lineChart, PALETTE, type ChartMarker, type ChartSeries } from './svg.ts';

const CSS = `body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:12px 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}.charts{display:flex;flex-wrap:wrap;gap:12px}
code{background:#f4f4f4;padding:1px 4px}.note{color:#555;font-size:13px}`;

export function fmt(v: number | null | undefined, digits = 4): string {
  return v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(digits);
}

export function fmtBytes(v: number): string {
  if (v >= 1e9) return `${(v / 1e9).toFixed(2)} GB`;
  if (v >= 1e6) return `${(v / 1e6).toFixed(2)} MB`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(1)} kB`;
  return `${Math.round(v)} B`;
}

function page(title: string, body: string): string {
  return `<!doctype html><html><head><meta charset="utf-8"><title>${escapeXml(title)}</title><style>${CSS}</style></head><body>${body}</body></html>\n`;
}

function faultMarkers(s: RunSummary): ChartMarker[] {
  return s.faults.map((f) => ({ x: f.atS, label: f.name }));
}

/** The HTML report of one run: settings, numbers, per-tab held-out curves, training loss and traffic over time. */
export function runReportHtml(data: RunLogData, s: RunSummary): string {
  const start = data.records.find((r) => r.type === 'event' && r.name === SIM_EVENTS.start)?.atMs ?? data.records[0]?.atMs ?? data.createdAtMs;
  const slotOf = new Map<string, TabPeerDetail>();
  for (const r of data.records) if (r.type === 'event' && r.name === SIM_EVENTS.tabPeer && r.peerId) slotOf.set(r.peerId, JSON.parse(r.detail) as TabPeerDetail);
  // A simulated tab keeps its name over restarts (new peer ids); a live peer is only its id.
  const lineOf = (peer: string): { name: string; byzantine: boolean } => {
    const tab = slotOf.get(peer);
    return tab ? { name: `tab ${tab.slot}`, byzantine: s.byzantineSlots.includes(tab.slot) } : { name: `peer …${peer.slice(-6)}`, byzantine: false };
  };
  const byName = (a: string, b: string) => a.localeCompare(b, 'en', { numeric: true });
  const held = data.records.filter((r) => r.type === 'event' && r.name === SIM_EVENTS.heldOut).map((r) => JSON.parse((r as { detail: string }).detail) as HeldOutDetail);
  const slots = [...new Set(held.map((h) => h.slot))].sort((a, b) => a - b);
  const heldSeries: ChartSeries[] = slots.map((slot, i) => {
    const bySteps = new Map<number, number>();
    for (const h of held) if (h.slot === slot) bySteps.set(h.step, h.allGenres);
    const byz = s.byzantineSlots.includes(slot);
    return { name: `tab ${slot}${byz ? ' (Byzantine)' : ''}`, points: [...bySteps].sort((a, b) => a[0] - b[0]), color: PALETTE[i % PALETTE.length], dashed: byz, width: 1 };
  });
  heldSeries.push({ name: 'mean (honest tabs)', points: s.curve.map((p) => [p.step, p.meanLoss]), color: '#000', width: 3 });

  const timeSeries = (metric: 'trainLoss' | 'bytesSent' | 'heldOutLoss') => {
    const series: ChartSeries[] = [];
    const byLine = new Map<string, Array<[number, number]>>();
    const byzantine = new Set<string>();
    for (const r of data.records) if (r.type === 'report' && lineOf(r.report.peerId).byzantine) byzantine.add(lineOf(r.report.peerId).name);
    if (metric === 'bytesSent') {
      // A reopened tab is a new peer whose counters start at zero: plot each tab's total over its incarnations.
      const latestByPeer = new Map<string, number>();
      for (const r of data.records) {
        if (r.type !== 'report') continue;
        const line = lineOf(r.report.peerId).name;
        latestByPeer.set(r.report.peerId, r.report.bytesSent);
        let total = 0;
        for (const [peer, v] of latestByPeer) if (lineOf(peer).name === line) total += v;
        const list = byLine.get(line) ?? [];
        list.push([(r.report.timeMs - start) / 1000, total]);
        byLine.set(line, list);
      }
    } else {
      for (const [peer, ser] of perPeerSeries(data.records, metric)) {
        const line = lineOf(peer).name;
        const list = byLine.get(line) ?? [];
        ser.t.forEach((t, k) => {
          const v = ser.v[k];
          if (v !== null) list.push([(t - start) / 1000, v]);
        });
        byLine.set(line, list);
      }
    }
    [...byLine.keys()].sort(byName).forEach((line, i) => {
      const pts = byLine.get(line)!.sort((a, b) => a[0] - b[0]);
      series.push({ name: line, points: pts, color: PALETTE[i % PALETTE.length], width: 1, dashed: byzantine.has(line) });
    });
    return series;
  };

  const heldChart = s.evaluated
    ? lineChart({ title: 'Held-out loss over all genres', xLabel: 'local step', yLabel: 'nats/byte', series: heldSeries })
    : lineChart({
        title: "Held-out loss on each peer's own data (telemetry)",
        xLabel: 'seconds',
        yLabel: 'nats/byte',
        series: [...timeSeries('heldOutLoss'), { name: 'mean', points: s.ownGenre.curve.map((p) => [p.timeS, p.meanLoss]), color: '#000', width: 3 }],
        markers: faultMarkers(s),
      });
  const rows: Array<[string, string]> = [
    ['source', data.source === 'live' ? 'live run (a dashboard export)' : 'simulation'],
    ['strategy', `${s.strategy} ${s.params}`],
    ['baseline', s.baseline],
    ['partition', s.partition],
    ['tabs', `${s.tabs}${s.byzantineSlots.length > 0 ? ` (Byzantine: ${s.byzantineSlots.join(', ')})` : ''}`],
    ['steps per tab × batch', `${s.stepsPerTab} × ${s.batchSize}`],
    ['wall time', `${s.wallS.toFixed(0)} s`],
    ['held-out loss, all genres (nats/byte): base → final', s.evaluated ? `${fmt(s.baseLoss)} → ${fmt(s.finalLoss)}` : 'not in this log'],
    ['held-out loss, own genre (telemetry): base → final', `${fmt(s.ownGenre.baseLoss)} → ${fmt(s.ownGenre.finalLoss)}`],
    ['spread over tabs (min / max / std)', s.spread ? `${fmt(s.spread.min)} / ${fmt(s.spread.max)} / ${fmt(s.spread.std)}` : '–'],
    ['target loss → time / samples to reach it', `${fmt(s.target)} → ${!s.evaluated ? 'not in this log' : s.timeToTargetS === null ? 'not reached' : `${s.timeToTargetS.toFixed(0)} s / ${s.samplesToTarget} samples`}`],
    ['bytes moved per peer (sent + received)', fmtBytes(s.bytesPerPeer)],
    ['merges (all tabs)', String(s.merges)],
    ...(s.missing.length > 0 ? [['not in this log', s.missing.join('; ')] as [string, string]] : []),
  ];
  const faults = s.faults.length === 0 ? '<p>No faults injected.</p>' : `<table><tr><th>time</th><th>fault</th><th>detail</th></tr>${s.faults.map((f) => `<tr><td>${f.atS.toFixed(0)} s</td><td>${escapeXml(f.name)}</td><td>${escapeXml(f.detail)}</td></tr>`).join('')}</table>`;
  const perTab = Object.entries(s.finalBySlot).map(([slot, f]) => `<tr><td>tab ${slot}</td><td>${f.step}</td><td>${fmt(f.own)}</td><td>${fmt(f.allGenres)}</td></tr>`).join('');
  const kind = data.source === 'live' ? 'Live run' : 'Simulation';
  const body = [
    `<h1>${kind}: ${escapeXml(s.label)}</h1>`,
    `<p class="note">Run <code>${escapeXml(data.wireRunId)}</code>, ${new Date(data.createdAtMs).toISOString()}. Held-out losses are nats per byte on the run's genres; the run log (<code>run-log.json</code>) holds every record behind these numbers.</p>`,
    `<table>${rows.map(([k, v]) => `<tr><th>${escapeXml(k)}</th><td>${escapeXml(v)}</td></tr>`).join('')}</table>`,
    `<div class="charts">`,
    heldChart,
    lineChart({ title: 'Training loss', xLabel: 'seconds', yLabel: 'nats/byte', series: timeSeries('trainLoss'), markers: faultMarkers(s) }),
    lineChart({ title: 'Bytes sent (each tab, over its restarts)', xLabel: 'seconds', yLabel: 'bytes', series: timeSeries('bytesSent'), markers: faultMarkers(s) }),
    `</div>`,
    s.evaluated ? `<h2>Final held-out loss per tab</h2><table><tr><th>tab</th><th>step</th><th>own genre</th><th>all genres</th></tr>${perTab}</table>` : '',
    `<h2>Faults</h2>${faults}`,
  ].join('\n');
  return page(`${kind} ${s.label}`, body);
}

export interface ComparisonRow {
  label: string;
  summary: RunSummary;
}

const TABLE_HEAD = ['run', 'final held-out (all genres)', 'vs local-only', 'spread (max−min)', 'time to target', 'samples to target', 'bytes/peer', 'merges', 'wall'];
const OWN_GENRE_HEAD = 'final held-out (own genre, telemetry)';
const NOT_IN_LOG = 'not in log';

/**
 * A comparison that holds a run without all-genre evaluations (a live run) adds the one held-out measure every log
 * has; a comparison of simulations alone keeps the table it always had.
 */
function needsTelemetryColumn(rows: ComparisonRow[]): boolean {
  return rows.some((r) => !r.summary.evaluated);
}

function tableHead(rows: ComparisonRow[]): string[] {
  return needsTelemetryColumn(rows) ? [TABLE_HEAD[0], TABLE_HEAD[1], OWN_GENRE_HEAD, ...TABLE_HEAD.slice(2)] : TABLE_HEAD;
}

function tableCells(r: ComparisonRow, local: RunSummary | undefined, telemetry: boolean): string[] {
  const s = r.summary;
  const vsLocal = local?.finalLoss && s.finalLoss !== null ? `${(((s.finalLoss - local.finalLoss) / local.finalLoss) * 100).toFixed(1)}%` : '–';
  const cells = [
    r.label,
    s.evaluated ? fmt(s.finalLoss) : NOT_IN_LOG,
    s.baseline === 'local' ? '0%' : vsLocal,
    s.spread ? fmt(s.spread.max - s.spread.min, 3) : '–',
    !s.evaluated ? NOT_IN_LOG : s.timeToTargetS === null ? 'not reached' : `${s.timeToTargetS.toFixed(0)} s`,
    s.samplesToTarget === null ? '–' : String(s.samplesToTarget),
    fmtBytes(s.bytesPerPeer),
    String(s.merges),
    `${s.wallS.toFixed(0)} s`,
  ];
  if (telemetry) cells.splice(2, 0, fmt(s.ownGenre.finalLoss));
  return cells;
}

/** What the table cannot show for some runs, and the measure that compares every run. */
function comparisonNotes(rows: ComparisonRow[]): string[] {
  const notes: string[] = [];
  if (needsTelemetryColumn(rows)) {
    notes.push(
      "Own genre (telemetry): mean over peers of the last held-out loss each reported on its own data, the only held-out measure a live run's log holds; with a genre partition it is not the all-genre loss, so compare live runs with simulations in that column.",
    );
  }
  for (const r of rows) if (r.summary.missing.length > 0) notes.push(`${r.label} (${r.summary.source}): not in its log: ${r.summary.missing.join('; ')}.`);
  return notes;
}

/** The comparison table in markdown (for the README). */
export function comparisonMarkdown(rows: ComparisonRow[], target: number | null): string {
  const local = rows.find((r) => r.summary.baseline === 'local')?.summary;
  const head = tableHead(rows);
  const telemetry = needsTelemetryColumn(rows);
  const lines = [
    `| ${head.join(' | ')} |`,
    `|${head.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`,
    ...rows.map((r) => `| ${tableCells(r, local, telemetry).join(' | ')} |`),
  ];
  const base = rows.find((r) => r.summary.baseLoss !== null)?.summary.baseLoss ?? null;
  const notes = comparisonNotes(rows);
  return `${lines.join('\n')}\n\nHeld-out loss: nats/byte, mean over honest tabs of each tab's loss on every genre's held-out text (base model: ${fmt(base)}). Target: ${fmt(target)}.\n${notes.map((n) => `\n- ${n}`).join('')}${notes.length > 0 ? '\n' : ''}`;
}

/** Overlaid mean held-out curves: the simulator's all-genre evaluations, or (own-genre) the peers' telemetry. */
export function comparisonCurves(rows: ComparisonRow[], x: 'samples' | 'timeS', measure: 'all-genres' | 'own-genre' = 'all-genres'): string {
  const what = measure === 'all-genres' ? 'Mean held-out loss (all genres)' : 'Mean held-out loss (own genre, telemetry)';
  return lineChart({
    title: `${what} vs ${x === 'samples' ? 'samples seen by the swarm' : 'wall time'}`,
    xLabel: x === 'samples' ? 'training samples (all tabs)' : 'seconds',
    yLabel: 'nats/byte',
    series: rows.map((r, i) => ({
      name: r.label,
      points: (measure === 'all-genres' ? r.summary.curve : r.summary.ownGenre.curve).map((p) => [p[x], p.meanLoss] as [number, number]),
      color: PALETTE[i % PALETTE.length],
      dashed: r.summary.baseline !== 'none',
      width: 2,
    })),
    width: 860,
    height: 420,
  });
}

export function comparisonHtml(title: string, rows: ComparisonRow[], target: number | null, command: string): string {
  const local = rows.find((r) => r.summary.baseline === 'local')?.summary;
  const telemetry = needsTelemetryColumn(rows);
  const table = `<table><tr>${tableHead(rows).map((h) => `<th>${escapeXml(h)}</th>`).join('')}</tr>${rows
    .map((r) => `<tr>${tableCells(r, local, telemetry).map((c, i) => `<td>${i === 0 ? `<a href="runs/${encodeURIComponent(r.label)}/report.html">${escapeXml(c)}</a>` : escapeXml(c)}</td>`).join('')}</tr>`)
    .join('')}</table>`;
  const notes = comparisonNotes(rows);
  const body = [
    `<h1>${escapeXml(title)}</h1>`,
    `<p class="note">Produced by <code>${escapeXml(command)}</code>. Held-out loss: nats/byte, mean over honest tabs of each tab's loss on every genre's held-out text; target ${fmt(target)}. Dashed curves are baselines.</p>`,
    table,
    notes.length > 0 ? `<ul class="note">${notes.map((n) => `<li>${escapeXml(n)}</li>`).join('')}</ul>` : '',
    `<div class="charts">${comparisonCurves(rows, 'samples')}${comparisonCurves(rows, 'timeS')}</div>`,
    telemetry ? `<div class="charts">${comparisonCurves(rows, 'samples', 'own-genre')}${comparisonCurves(rows, 'timeS', 'own-genre')}</div>` : '',
  ].join('\n');
  return page(title, body);
}
