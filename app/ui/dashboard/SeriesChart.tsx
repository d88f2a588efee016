// A live uPlot chart of several series over run time, updated in place (never re-created per update) and
// exportable as PNG. Series may be lines (per peer, swarm mean) or points only (events such as merges).
import { memo, useEffect, useRef } from 'react';
import uPlot from 'uplot';

export interface ChartSeries {
  label: string;
  color: string;
  /** x (seconds since the run log started) and y; null y = a gap. */
  x: number[];
  y: Array<number | null>;
  kind?: 'line' | 'mean' | 'events';
}

interface Props {
  title: string;
  yLabel: string;
  series: ChartSeries[];
  testId: string;
  height?: number;
  /** Said while there is nothing to draw (why the chart is empty). */
  emptyNote?: string;
}

function aligned(series: ChartSeries[]): uPlot.AlignedData {
  if (series.length === 0) return [[]];
  const tables = series.map((s) => [s.x, s.y] as uPlot.AlignedData);
  return uPlot.join(tables as uPlot.AlignedData[]);
}

function seriesOptions(s: ChartSeries): uPlot.Series {
  if (s.kind === 'events') return { label: s.label, stroke: s.color, fill: s.color, paths: () => null, points: { show: true, size: 9, fill: s.color } };
  if (s.kind === 'mean') return { label: s.label, stroke: s.color, width: 3, spanGaps: true, dash: [8, 4] };
  return { label: s.label, stroke: s.color, width: 1.5, spanGaps: true, points: { show: true, size: 4 } };
}

/** Saves the chart's canvas (axes and lines; the legend lives in the DOM) as a PNG file. */
export function downloadCanvasPng(canvas: HTMLCanvasElement, name: string): void {
  canvas.toBlob((blob) => {
    if (!blob) return;
    const url = URL.createObjectURL(blob);
    const a = document.createElement('a');
    a.href = url;
    a.download = name;
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }, 'image/png');
}

/** Memoised: the dashboard re-renders for every status change, a chart only needs to when its series changed. */
export const SeriesChart = memo(function SeriesChart({ title, yLabel, series, testId, height = 240, emptyNote }: Props) {
  const host = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  // uPlot's series list is fixed at creation: a new set of labels rebuilds the chart, new points only update it.
  const signature = series.map((s) => `${s.label}|${s.color}|${s.kind ?? 'line'}`).join(';');

  useEffect(() => {
    if (!host.current) return;
    const opts: uPlot.Options = {
      width: host.current.clientWidth || 500,
      height,
      scales: { x: { time: false } },
      axes: [{ label: 'run time (s)' }, { label: yLabel }],
      legend: { show: true, live: false },
      series: [{ label: 't' }, ...series.map(seriesOptions)],
    };
    plot.current = new uPlot(opts, aligned(series), host.current);
    const resize = new ResizeObserver(() => {
      if (host.current && plot.current) plot.current.setSize({ width: host.current.clientWidth, height });
    });
    resize.observe(host.current);
    return () => {
      resize.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [signature, height, yLabel]);

  useEffect(() => {
    plot.current?.setData(aligned(series));
  }, [series]);

  const points = series.filter((s) => s.kind !== 'mean' && s.kind !== 'events').reduce((n, s) => n + s.y.filter((v) => v !== null).length, 0);
  return (
    <section className="dash-chart">
      <header>
        <h3>{title}</h3>
        <button className="small" onClick={() => plot.current && downloadCanvasPng(plot.current.ctx.canvas, `${testId}.png`)} data-testid={`${testId}-png`}>
          PNG
        </button>
      </header>
      {series.length === 0 && <p className="dash-empty">No data yet{emptyNote ? `: ${emptyNote}` : ''}.</p>}
      <div ref={host} className="chart" data-testid={testId} data-points={points} data-series={series.length} />
    </section>
  );
});
