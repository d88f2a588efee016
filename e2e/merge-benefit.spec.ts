// Issue 5's acceptance comparison in real tabs: 4 tabs against the real relay, one fiction genre each, merging
// with the default strategy, against a local-only run of the same steps from the same seeds. Every tab must beat
// the base model on its own genre, and merging must lower each tab's held-out loss averaged over all four genres.
import { test, expect } from '@playwright/test';
import { ACCEPTANCE_DEFAULTS, compareMergedWithLocalOnly } from './peer-acceptance.ts';
import { MODEL_URL } from './run-fixture.ts';

test('merging beats local-only training on the mean all-genre held-out loss', async () => {
  test.setTimeout(600_000);
  const result = await compareMergedWithLocalOnly(
    { ...ACCEPTANCE_DEFAULTS, model: MODEL_URL, out: '.tmp/e2e-merge-benefit' },
    (line) => console.log(`[merge-benefit] ${line}`),
  );
  console.log(result.table);
  expect(result.strategy).toBe('fedavg');
  for (const t of result.tabs) {
    expect(t.merges, `${t.genre} merged`).toBeGreaterThanOrEqual(3);
    expect(t.merged.own, `${t.genre}: adapter beats the base on its own genre`).toBeLessThan(t.base.own);
    expect(t.merged.allGenres, `${t.genre}: merged beats local-only over all genres`).toBeLessThan(t.localOnly.allGenres);
  }
  expect(result.mergedMean).toBeLessThan(result.localOnlyMean);
});
