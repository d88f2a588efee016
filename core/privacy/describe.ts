/** Words for the volunteer page and the dashboard: what differential privacy has cost a volunteer's own files. */
import type { PrivacyStatus } from './budget.ts';

/** ε with two significant digits below 10 ("2.1", "0.35") and whole numbers above ("12"). */
export function formatEpsilon(epsilon: number): string {
  if (!Number.isFinite(epsilon)) return '∞';
  if (epsilon >= 10) return Math.round(epsilon).toString();
  if (epsilon === 0) return '0';
  return Number(epsilon.toPrecision(2)).toString();
}

/** δ as the page writes it: "1e-5", "2.5e-7", "0.01". */
export function formatDelta(delta: number): string {
  if (delta >= 0.001) return Number(delta.toPrecision(2)).toString();
  const [mantissa, exponent] = delta.toExponential(1).split('e');
  return `${mantissa.replace(/\.0$/, '')}e${Number(exponent)}`;
}

/**
 * One line for the volunteer, e.g. "your files: ε = 2.1 of 8 at δ = 1e-5". null (no DP in this run) says that
 * plainly rather than showing nothing.
 */
export function describePrivacySpent(status: Pick<PrivacyStatus, 'epsilonSpent' | 'targetEpsilon' | 'delta' | 'exhausted'> | null): string {
  if (status === null) return 'your files: this run does not use differential privacy';
  const line = `your files: ε = ${formatEpsilon(status.epsilonSpent)} of ${formatEpsilon(status.targetEpsilon)} at δ = ${formatDelta(status.delta)}`;
  return status.exhausted ? `${line} (budget spent: your updates are no longer shared)` : line;
}
