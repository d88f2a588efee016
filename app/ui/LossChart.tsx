// Training and held-out loss over local steps, drawn by uPlot (updated in place, never re-created per point).
import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import type { HeldOutPoint, LossPoint, MergeRecord } from '../../core/swarm/engine-protocol.ts';

interface Props {
  loss: LossPoint[];
  heldOut: HeldOutPoint[];
  merges: MergeRecord[];
  height?: number;
}

function chartData(loss: LossPoint[], heldOut: HeldOutPoint[]): uPlot.AlignedData {
  const trainSteps = loss.map((p) => p.step);
  const heldSteps = heldOut.map((p) => p.step);
  const gaps = (n: number) => new Array<number | null>(n).fill(null);
  if (loss.length === 0 && heldOut.length === 0) return [[], [], [], []];
  if (loss.length === 0) return [heldSteps, gaps(heldSteps.length), heldOut.map((p) => p.own), heldOut.map((p) => p.allGenres)];
  if (heldOut.length === 0) return [trainSteps, loss.map((p) => p.loss), gaps(trainSteps.length), gaps(trainSteps.length)];
  return uPlot.join([
    [trainSteps, loss.map((p) => p.loss)],
    [heldSteps, heldOut.map((p) => p.own), heldOut.map((p) => p.allGenres)],
  ]);
}

export function LossChart({ loss, heldOut, merges, height = 260 }: Props) {
  const host = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const mergeSteps = useRef<number[]>([]);
  mergeSteps.current = merges.map((m) => m.step);

  useEffect(() => {
    if (!host.current) return;
    const opts: uPlot.Options = {
      width: host.current.clientWidth || 600,
      height,
      scales: { x: { time: false } },
      axes: [{ label: 'local step' }, { label: 'loss (nats/byte)' }],
      series: [
        { label: 'step' },
        { label: 'training loss', stroke: '#8aa4c8', width: 1 },
        { label: 'held-out (own genre)', stroke: '#d9480f', width: 2, spanGaps: true, points: { show: true, size: 5 } },
        { label: 'held-out (all run genres)', stroke: '#2b8a3e', width: 2, spanGaps: true, dash: [6, 3], points: { show: true, size: 5 } },
      ],
      hooks: {
        // Merges as thin vertical marks on the step axis.
        draw: [
          (u) => {
            const ctx = u.ctx;
            ctx.save();
            ctx.strokeStyle = 'rgba(120, 60, 200, 0.35)';
            ctx.lineWidth = 1;
            for (const step of mergeSteps.current) {
              const x = u.valToPos(step, 'x', true);
              if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
              ctx.beginPath();
              ctx.moveTo(x, u.bbox.top);
              ctx.lineTo(x, u.bbox.top + u.bbox.height);
              ctx.stroke();
            }
            ctx.restore();
          },
        ],
      },
    };
    plot.current = new uPlot(opts, chartData([], []), host.current);
    const resize = new ResizeObserver(() => {
      if (host.current && plot.current) plot.current.setSize({ width: host.current.clientWidth, height });
    });
    resize.observe(host.current);
    return () => {
      resize.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, [height]);

  useEffect(() => {
    plot.current?.setData(chartData(loss, heldOut));
  }, [loss, heldOut, merges]);

  return <div ref={host} className="chart" data-testid="loss-chart" />;
}
