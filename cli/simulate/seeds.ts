// Repeated seeds: every arm of a comparison runs with the same seeds (the same LoRA init, batches and network per
// seed), so arms are compared per seed (paired) rather than by their means alone. A gap whose 95% interval contains
// zero is reported as no difference.
import type { RunSummary } from './metrics.ts';

export interface SeededSummary {
  arm: string;
  seed: number;
  summary: RunSummary;
}

export interface ArmStats {
  arm: string;
  seeds: number[];
  finals: number[];
  mean: number;
  sd: number;
  /** Paired differences (this arm − the first arm) per common seed; absent for the first arm. */
  paired: { seeds: number[]; diffs: number[]; mean: number; sd: number; ci95: [number, number] } | null;
}

/** Two-sided 97.5% quantiles of Student's t for 1..30 degrees of freedom (then the normal 1.96). */
const T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131, 2.12, 2.11, 2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048, 2.045, 2.042];

export function tQuantile975(df: number): number {
  return df < 1 ? Number.NaN : df <= 30 ? T975[df - 1] : 1.96;
}

function mean(values: number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

/** Sample standard deviation (n − 1); 0 for a single value. */
export function sampleSd(values: number[]): number {
  if (values.length < 2) return 0;
  const m = mean(values);
  return Math.sqrt(values.reduce((a, v) => a + (v - m) ** 2, 0) / (values.length - 1));
}

/** Mean ± sd of each arm's final held-out loss, and its paired per-seed differences against the first arm. */
export function armStatistics(rows: SeededSummary[]): ArmStats[] {
  const arms = [...new Set(rows.map((r) => r.arm))];
  const finalOf = (arm: string) => new Map(rows.filter((r) => r.arm === arm && r.summary.finalLoss !== null).map((r) => [r.seed, r.summary.finalLoss!]));
  const reference = finalOf(arms[0]);
  return arms.map((arm, i) => {
    const finals = finalOf(arm);
    const values = [...finals.values()];
    let paired: ArmStats['paired'] = null;
    if (i > 0) {
      const seeds = [...finals.keys()].filter((s) => reference.has(s)).sort((a, b) => a - b);
      const diffs = seeds.map((s) => finals.get(s)! - reference.get(s)!);
      if (diffs.length > 0) {
        const m = mean(diffs);
        const sd = sampleSd(diffs);
        const half = diffs.length > 1 ? tQuantile975(diffs.length - 1) * (sd / Math.sqrt(diffs.length)) : Number.NaN;
        paired = { seeds, diffs, mean: m, sd, ci95: [m - half, m + half] };
      }
    }
    return { arm, seeds: [...finals.keys()].sort((a, b) => a - b), finals: values, mean: values.length ? mean(values) : Number.NaN, sd: sampleSd(values), paired };
  });
}

export function seedsMarkdown(stats: ArmStats[]): string {
  const f = (x: number) => (Number.isFinite(x) ? x.toFixed(4) : '–');
  const lines = [
    `| arm | seeds | final held-out loss (all genres), mean ± sd | vs ${stats[0]?.arm ?? '–'}: paired mean ± sd | 95% interval | verdict |`,
    '|---|---|---|---|---|---|',
  ];
  for (const s of stats) {
    const p = s.paired;
    let verdict = '';
    if (p && p.diffs.length > 1) verdict = p.ci95[1] < 0 ? 'lower (better)' : p.ci95[0] > 0 ? 'higher (worse)' : 'no difference';
    else if (p) verdict = 'one seed: not resolved';
    lines.push(
      `| ${s.arm} | ${s.seeds.join(',')} | ${f(s.mean)} ± ${f(s.sd)} | ${p ? `${p.mean >= 0 ? '+' : ''}${f(p.mean)} ± ${f(p.sd)}` : '(reference)'} | ${p && p.diffs.length > 1 ? `[${f(p.ci95[0])}, ${f(p.ci95[1])}]` : '–'} | ${verdict} |`,
    );
  }
  return `${lines.join('\n')}\n`;
}
