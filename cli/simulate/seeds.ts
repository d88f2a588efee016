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

/** Share of the local → centralised gap an arm closes: (L_local − L_arm) / (L_local − L_central); null without a gap. */
export function gapClosed(local: number, arm: number, central: number): number | null {
  const gap = local - central;
  return gap > 0 ? (local - arm) / gap : null;
}

/** Mean, sample sd and the 95% t interval of the mean (NaN bounds for fewer than two values). */
export function meanInterval(values: number[]): { mean: number; sd: number; ci95: [number, number]; n: number } {
  if (values.length === 0) return { mean: Number.NaN, sd: Number.NaN, ci95: [Number.NaN, Number.NaN], n: 0 };
  const m = mean(values);
  const sd = sampleSd(values);
  const half = values.length > 1 ? tQuantile975(values.length - 1) * (sd / Math.sqrt(values.length)) : Number.NaN;
  return { mean: m, sd, ci95: [m - half, m + half], n: values.length };
}

type Interval = ReturnType<typeof meanInterval>;

/** What the study reports per arm, over its seeds. */
export interface ArmSummary {
  arm: string;
  baseline: RunSummary['baseline'];
  seeds: number[];
  /** Final held-out loss on all genres, and on each peer's own genre mixture. */
  allGenres: Interval;
  ownGenre: Interval;
  /** (L_local − L_arm)/(L_local − L_central) of the arms' mean losses, and per seed (paired). */
  gapClosedOfMeans: number | null;
  gapClosedPaired: Interval & { bySeed: Record<number, number> };
  /** Paired per-seed difference of the all-genre loss against the reference arm (arm − reference). */
  vsReference: (Interval & { arm: string }) | null;
  /** Seeds that reached the target, and the mean samples and virtual seconds they took. */
  reachedTarget: number;
  samplesToTarget: number | null;
  timeToTargetS: number | null;
  bytesPerPeer: number;
  /** Bytes per peer divided by the merges (synchronisations) each peer made. */
  bytesPerPeerPerMerge: number | null;
}

/**
 * Per-arm summary of a seeded comparison. The local and centralised arms are found by their baseline kind; the
 * paired gap uses the seeds all three share. `reference` names the arm the paired loss differences are taken
 * against (default: the swarm arm run with the default strategy, else the first arm).
 */
export function armSummaries(rows: SeededSummary[], reference?: string): ArmSummary[] {
  const arms = [...new Set(rows.map((r) => r.arm))];
  const of = (arm: string) => rows.filter((r) => r.arm === arm && r.summary.finalLoss !== null);
  const byKind = (kind: RunSummary['baseline']) => arms.find((a) => of(a)[0]?.summary.baseline === kind);
  const finalsBySeed = (arm: string | undefined) => new Map(arm ? of(arm).map((r) => [r.seed, r.summary.finalLoss!]) : []);
  const local = finalsBySeed(byKind('local'));
  const central = finalsBySeed(byKind('central'));
  const ref = reference ?? arms.find((a) => of(a)[0]?.summary.baseline === 'none') ?? arms[0];
  const refFinals = finalsBySeed(ref);
  const localMean = local.size ? mean([...local.values()]) : Number.NaN;
  const centralMean = central.size ? mean([...central.values()]) : Number.NaN;
  return arms.map((arm) => {
    const list = of(arm);
    const finals = list.map((r) => r.summary.finalLoss!);
    const own = list.map((r) => r.summary.finalOwnLoss).filter((v): v is number => v !== null);
    const bySeed: Record<number, number> = {};
    for (const r of list) {
      const g = local.has(r.seed) && central.has(r.seed) ? gapClosed(local.get(r.seed)!, r.summary.finalLoss!, central.get(r.seed)!) : null;
      if (g !== null) bySeed[r.seed] = g;
    }
    const reached = list.filter((r) => r.summary.samplesToTarget !== null);
    const meanOr = (values: number[]) => (values.length ? mean(values) : null);
    const bytes = meanOr(list.map((r) => r.summary.bytesPerPeer)) ?? 0;
    const mergesPerPeer = meanOr(list.map((r) => r.summary.merges / Math.max(1, r.summary.tabs))) ?? 0;
    const diffs = list.filter((r) => refFinals.has(r.seed)).map((r) => r.summary.finalLoss! - refFinals.get(r.seed)!);
    return {
      arm,
      baseline: list[0]?.summary.baseline ?? 'none',
      seeds: list.map((r) => r.seed).sort((a, b) => a - b),
      allGenres: meanInterval(finals),
      ownGenre: meanInterval(own),
      gapClosedOfMeans: finals.length && Number.isFinite(localMean) && Number.isFinite(centralMean) ? gapClosed(localMean, mean(finals), centralMean) : null,
      gapClosedPaired: { ...meanInterval(Object.values(bySeed)), bySeed },
      vsReference: arm === ref || diffs.length === 0 ? null : { ...meanInterval(diffs), arm: ref },
      reachedTarget: reached.length,
      samplesToTarget: meanOr(reached.map((r) => r.summary.samplesToTarget!)),
      timeToTargetS: meanOr(reached.map((r) => r.summary.timeToTargetS!)),
      bytesPerPeer: bytes,
      bytesPerPeerPerMerge: mergesPerPeer > 0 ? bytes / mergesPerPeer : null,
    };
  });
}

export function armSummaryMarkdown(summaries: ArmSummary[], target: number | null): string {
  const f = (x: number | null | undefined, digits = 4) => (x === null || x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(digits));
  const pm = (i: Interval, digits = 4) => (i.n === 0 ? '–' : `${f(i.mean, digits)} ± ${f(i.sd, digits)}`);
  const ci = (i: Interval, digits = 3) => (i.n > 1 ? `[${f(i.ci95[0], digits)}, ${f(i.ci95[1], digits)}]` : '–');
  const kb = (b: number | null) => (b === null ? '–' : b >= 1e6 ? `${(b / 1e6).toFixed(2)} MB` : `${(b / 1e3).toFixed(1)} kB`);
  const ref = summaries.find((s) => s.vsReference)?.vsReference?.arm ?? '–';
  const lines = [
    `| arm | seeds | held-out, all genres (mean ± sd) | own genre (mean ± sd) | gap closed (of means) | gap closed, paired per seed (mean ± sd) | 95% interval | vs ${ref}: paired Δ loss | 95% interval | reached target | samples to target | time to target (virtual s) | bytes/peer | bytes/peer/merge |`,
    '|---|---|---|---|---:|---|---|---|---|---:|---:|---:|---:|---:|',
  ];
  for (const s of summaries) {
    const g = s.gapClosedPaired;
    const v = s.vsReference;
    lines.push(
      `| ${s.arm} | ${s.seeds.join(',')} | ${pm(s.allGenres)} | ${pm(s.ownGenre)} | ${f(s.gapClosedOfMeans, 2)} | ${pm(g, 2)} | ${ci(g, 2)} | ${v ? `${v.mean >= 0 ? '+' : ''}${pm(v)}` : '(reference)'} | ${v ? ci(v, 4) : '–'} | ${s.reachedTarget}/${s.seeds.length} | ${f(s.samplesToTarget, 0)} | ${f(s.timeToTargetS, 0)} | ${kb(s.bytesPerPeer)} | ${kb(s.bytesPerPeerPerMerge)} |`,
    );
  }
  return `${lines.join('\n')}\n\nLosses in nats/byte. Gap closed = (L_local − L_arm)/(L_local − L_central): 0 = no better than training alone, 1 = as good as pooling the data. Target: ${f(target)} (time and samples to reach it; samples count every peer's).\n`;
}
