// `swarm report`: compares run logs from anywhere (a dashboard's export of a live run, a simulation's
// runs/<label>/run-log.json) with the summaries and report pages `swarm simulate` writes, so a live and a simulated
// run are judged by one piece of code.
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { RUN_LOG_CSV_COLUMNS, RUN_LOG_FORMAT, runLogFromJson, runLogToJson, RunLogFormatError, type RunLogData } from '../core/swarm/run-log.ts';
import { isPlainObject } from '../core/wire/json.ts';
import { defaultTarget, summarizeRun, type RunSummary } from './simulate/metrics.ts';
import { comparisonCurves, comparisonHtml, comparisonMarkdown, runReportHtml, type ComparisonRow } from './simulate/report.ts';

export const HELP = `usage: swarm report <run-log.json>... [--labels a,b,...] [--target-loss x] [--out dir]
       (npm run report -- <run-log.json>... [options])

Reads run logs (the dashboard's "Export JSON" of a live run, or a simulation's runs/<label>/run-log.json),
summarises each as \`swarm simulate\` does and writes a comparison: comparison.md (the table, also printed),
report.html (self-contained, overlaid held-out curves), summary.json, curves-*.svg and, per run, runs/<label>/
with its report.html and a copy of its run-log.json. A live run's log has only the peers' telemetry, so its row
shows the held-out loss each peer reported on its own data and says what else its log does not hold.

  --labels a,b,...     one label per run log, in order (default: the simulation's label, else the folder of a
                       run-log.json, else the file name)
  --target-loss <x>    held-out loss (all genres) for "time to target" (default: the local-only run's final loss,
                       else the worst final loss)
  --out <dir>          report folder (default reports/compare-<time>)
  --help               this text

Bad input (a missing file, not JSON, another format version, not a run log) ends with one line naming the file and
exit code 2, before anything is written.`;

/** Input the command cannot use; the message names the file or option and the problem. */
export class ReportInputError extends Error {
  static override readonly name = 'ReportInputError';
  override readonly name = ReportInputError.name;
}

/** The report folder could not be written (exit 1: the input was fine). */
export class ReportOutputError extends Error {
  static override readonly name = 'ReportOutputError';
  override readonly name = ReportOutputError.name;
}

export interface ReportArgs {
  files: string[];
  labels: string[] | null;
  targetLoss: number | null;
  outDir: string;
}

export function parseReportArgs(argv: string[], nowMs = Date.now()): ReportArgs | 'help' {
  const files: string[] = [];
  let labels: string[] | null = null;
  let targetLoss: number | null = null;
  let outDir: string | null = null;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') return 'help';
    if (!arg.startsWith('--')) {
      files.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const flag = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
    if (!['labels', 'target-loss', 'out'].includes(flag)) throw new ReportInputError(`unknown option --${flag} (swarm report --help lists the options)`);
    let value: string;
    if (eq >= 0) value = arg.slice(eq + 1);
    else {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) throw new ReportInputError(`--${flag} needs a value`);
      value = next;
      i++;
    }
    switch (flag) {
      case 'labels':
        labels = value.split(',').map((l) => l.trim());
        if (labels.some((l) => l === '')) throw new ReportInputError(`--labels '${value}' has an empty label`);
        break;
      case 'target-loss':
        targetLoss = Number(value);
        if (value.trim() === '' || !Number.isFinite(targetLoss) || targetLoss <= 0) throw new ReportInputError(`--target-loss '${value}' is not a positive number`);
        break;
      case 'out':
        outDir = value;
        break;
    }
  }
  if (files.length === 0) throw new ReportInputError('no run log given (swarm report --help)');
  if (labels && labels.length !== files.length) throw new ReportInputError(`--labels has ${labels.length} label(s) for ${files.length} run log(s)`);
  const stamp = new Date(nowMs).toISOString().replace(/[:.]/g, '-').slice(0, 19);
  return { files, labels, targetLoss, outDir: outDir ?? `reports/compare-${stamp}` };
}

/** Reads and checks one run log; every way it can be unusable becomes a ReportInputError naming the file. */
export function readRunLog(file: string): RunLogData {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new ReportInputError(`${file}: ${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a folder, not a run log' : `cannot be read (${code ?? String(error)})`}`);
  }
  // The first columns only: exports of earlier builds have fewer columns at the end.
  if (text.startsWith(`${RUN_LOG_CSV_COLUMNS.slice(0, 4).join(',')},`)) {
    throw new ReportInputError(`${file}: is the dashboard's CSV export; give its JSON export (only that holds the manifest and the events)`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new ReportInputError(`${file}: is not JSON (${error instanceof Error ? error.message : String(error)})`);
  }
  // Any other JSON (a summary.json, a manifest) would otherwise fail on its first unknown field, which hides the point.
  if (!isPlainObject(parsed) || parsed.format !== RUN_LOG_FORMAT) throw new ReportInputError(`${file}: is not a run log (no "format": "${RUN_LOG_FORMAT}")`);
  try {
    return runLogFromJson(text);
  } catch (error) {
    if (error instanceof RunLogFormatError) throw new ReportInputError(`${file}: ${error.message}`);
    throw error;
  }
}

/** A label usable as a folder name and in the links of the comparison page (the same rule simulate uses). */
function folderName(label: string): string {
  return label.replace(/[^A-Za-z0-9._=-]+/g, '_');
}

function defaultLabel(file: string, data: RunLogData): string {
  const simLabel = data.meta['sim.label'];
  if (typeof simLabel === 'string' && simLabel !== '') return simLabel;
  // A simulation's report folder keeps each log as runs/<label>/run-log.json.
  if (basename(file) === 'run-log.json') return basename(dirname(file));
  // The dashboard names its export run-log-<wire run id>.json.
  return basename(file).replace(/\.json$/i, '').replace(/^run-log-(?=.)/, '');
}

function uniqueLabels(labels: string[]): string[] {
  const seen = new Map<string, number>();
  return labels.map((raw) => {
    const label = folderName(raw);
    const n = (seen.get(label) ?? 0) + 1;
    seen.set(label, n);
    return n === 1 ? label : `${label}-${n}`;
  });
}

export interface ReportOutcome {
  summaries: RunSummary[];
  target: number | null;
  markdown: string;
  outDir: string;
}

/** Summarises the logs and writes the report folder; every input is read and checked before anything is written. */
export async function buildReport(args: ReportArgs, commandLine: string): Promise<ReportOutcome> {
  const logs = args.files.map((file) => readRunLog(file));
  const labels = uniqueLabels(args.labels ?? logs.map((data, i) => defaultLabel(args.files[i], data)));
  // Two passes, as simulate does: the default target is only known once every run's final loss is.
  const target = args.targetLoss ?? defaultTarget(logs.map((data) => summarizeRun(data)));
  const summaries = logs.map((data, i) => ({ ...summarizeRun(data, target), label: labels[i] }));
  const rows: ComparisonRow[] = summaries.map((summary) => ({ label: summary.label, summary }));
  const markdown = comparisonMarkdown(rows, target);
  const sources = new Set(summaries.map((s) => s.source));
  const title = `Comparison of ${rows.length} run${rows.length === 1 ? '' : 's'} (${[...sources].sort().join(' and ')})`;

  const out = args.outDir;
  const files = new Map<string, string>();
  logs.forEach((data, i) => {
    files.set(join('runs', labels[i], 'run-log.json'), runLogToJson(data));
    files.set(join('runs', labels[i], 'report.html'), runReportHtml(data, summaries[i]));
  });
  files.set('comparison.md', markdown);
  files.set('report.html', comparisonHtml(title, rows, target, commandLine));
  files.set('curves-samples.svg', `${comparisonCurves(rows, 'samples')}\n`);
  files.set('curves-time.svg', `${comparisonCurves(rows, 'timeS')}\n`);
  const runs = summaries.map((s, i) => ({ file: args.files[i], ...s }));
  files.set('summary.json', `${JSON.stringify({ command: commandLine, target, runs }, null, 2)}\n`);
  for (const [path, text] of files) {
    try {
      await mkdir(dirname(join(out, path)), { recursive: true });
      await writeFile(join(out, path), text);
    } catch (error) {
      throw new ReportOutputError(`cannot write ${join(out, path)}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
    }
  }
  return { summaries, target, markdown, outDir: out };
}

export async function main(argv: string[]): Promise<number> {
  try {
    const args = parseReportArgs(argv);
    if (args === 'help') {
      console.log(HELP);
      return 0;
    }
    const outcome = await buildReport(args, `swarm report ${argv.join(' ')}`);
    console.log(outcome.markdown);
    console.log(`report: ${outcome.outDir}/report.html`);
    return 0;
  } catch (error) {
    if (error instanceof ReportInputError) {
      console.error(`swarm report: ${error.message}`);
      return 2;
    }
    if (error instanceof ReportOutputError) {
      console.error(`swarm report: ${error.message}`);
      return 1;
    }
    throw error;
  }
}
