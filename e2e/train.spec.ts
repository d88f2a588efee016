import { expect, test, type Page } from '@playwright/test';

// Same seed, same data, same model: WebGPU and WASM must train to the same losses. float32 reductions run in a
// different order on each backend (tiled GPU matmuls vs XNNPACK), so the losses differ by rounding only: about 1e-6
// relative per op, which stays far below 1e-3 over a few Adam steps. A real bug (a wrong kernel or gradient) moves the
// loss by 1e-2 or more after one update.
const TOLERANCE = 1e-3;
const RUN = { steps: 3, batchSize: 2, seqLen: 64, seed: 7, rank: 4, model: 'default', genre: 'mystery', warmupSteps: 0 } as const;

/**
 * A dev server that meets a dependency for the first time re-optimises and reloads the page, which destroys the
 * evaluation in flight; that is the server settling, not the code under test, so the run is retried once.
 */
async function runInFreshPage(page: Page, url: string) {
  for (let attempt = 1; ; attempt++) {
    await page.goto(url);
    try {
      return await page.evaluate(async (run) => window.trainHarness.run(run), RUN);
    } catch (error) {
      if (attempt >= 2 || !/Execution context was destroyed/.test((error as Error).message)) throw error;
    }
  }
}

test('LoRA training on WebGPU and on WASM agrees from the same seed', async ({ browser }) => {
  const results = [];
  for (const backend of ['webgpu', 'wasm']) {
    const page = await browser.newPage();
    page.on('pageerror', (e) => console.log(`[${backend}] page error: ${e.message}`));
    const result = await runInFreshPage(page, `/harness/train.html?backend=${backend}`);
    console.log(`${backend}: ${result.backend.reason}; losses ${result.losses.map((l) => l.toFixed(6)).join(', ')}`);
    expect(result.backend.backend).toBe(backend);
    results.push(result);
    await page.close();
  }
  const [gpu, wasm] = results;
  expect(gpu.losses).toHaveLength(RUN.steps);
  for (let i = 0; i < RUN.steps; i++) {
    expect(Math.abs(gpu.losses[i] - wasm.losses[i])).toBeLessThan(TOLERANCE);
  }
  // The steps did train: the loss moved between the first and the last step on both backends.
  expect(Math.abs(gpu.losses[RUN.steps - 1] - gpu.losses[0])).toBeGreaterThan(10 * TOLERANCE);
});

// tfjs-backend-wasm 4.22 caps its pool at half of navigator.hardwareConcurrency (tensorflow/tfjs#8513), one thread on
// a 2-core machine; app/lib/backend.ts lifts that cap. The pool size is read back from the backend itself.
test('the WASM thread pool has every core, or the count asked for', async ({ browser }) => {
  const page = await browser.newPage();
  for (const [query, wanted] of [['', 'cores'], ['&threads=3', 3]] as const) {
    await page.goto(`/harness/train.html?backend=wasm${query}`);
    const { choice, cores, overridden } = await page.evaluate(async () => ({
      choice: await window.trainHarness.ready,
      cores: navigator.hardwareConcurrency,
      overridden: Object.getOwnPropertyDescriptor(navigator, 'hardwareConcurrency') !== undefined,
    }));
    console.log(`?backend=wasm${query}: ${choice.reason}; navigator.hardwareConcurrency ${cores}`);
    const expected = wanted === 'cores' ? Math.min(cores, 8) : wanted;
    expect(choice.threadsWanted).toBe(expected);
    expect(choice.threads).toBe(expected);
    // The page's own navigator.hardwareConcurrency is back once the backend is up.
    expect(overridden).toBe(false);
  }
  await page.close();
});
