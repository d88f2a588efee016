// Tabs of a simulation: real headless Chromium processes, one browser context per process per run (so a run's
// checkpoints in IndexedDB are its own, and a killed tab reopened in the same context resumes from them).
import { chromium, type Browser, type BrowserContext, type Page } from '@playwright/test';
import { CHROMIUM_ARGS, findChromium, NO_CHROMIUM_MESSAGE } from '../../e2e/chromium.ts';
import type { PeerProbe } from '../../app/lib/probe.ts';

export class NoChromiumError extends Error {
  static override readonly name = 'NoChromiumError';
  override readonly name = NoChromiumError.name;
}

export class BrowserFleet {
  private constructor(readonly browsers: Browser[]) {}

  static async launch(count: number): Promise<BrowserFleet> {
    const executablePath = await findChromium();
    if (!executablePath) throw new NoChromiumError(NO_CHROMIUM_MESSAGE);
    const browsers: Browser[] = [];
    for (let i = 0; i < count; i++) browsers.push(await chromium.launch({ executablePath, args: CHROMIUM_ARGS }));
    return new BrowserFleet(browsers);
  }

  /** One fresh context per browser for a run; tab i lives in context i mod count. */
  async contexts(count: number): Promise<BrowserContext[]> {
    if (count > this.browsers.length) throw new Error(`asked for ${count} browser processes, ${this.browsers.length} launched`);
    return Promise.all(this.browsers.slice(0, count).map((b) => b.newContext()));
  }

  async close(): Promise<void> {
    await Promise.all(this.browsers.map((b) => b.close().catch(() => undefined)));
  }
}

/** One simulated volunteer: a slot, its URL, and the page currently open for it (null while killed). */
export class SimTab {
  page: Page | null = null;
  /** How many times this tab has been opened (1 on the first open). */
  incarnation = 0;
  lastProbe: PeerProbe | null = null;
  /** Peer ids of this tab's incarnations (a reopened tab gets a new libp2p identity). */
  readonly peerIds: string[] = [];
  readonly consoleErrors: string[] = [];

  constructor(
    readonly slot: number,
    readonly url: string,
    readonly context: BrowserContext,
    readonly byzantine: boolean,
  ) {}

  get alive(): boolean {
    return this.page !== null;
  }

  async open(url = this.url): Promise<void> {
    const page = await this.context.newPage();
    page.on('pageerror', (e) => this.consoleErrors.push(e.message));
    this.incarnation++;
    this.lastProbe = null;
    this.page = page;
    await page.goto(url);
  }

  /** Closes the page without unload handlers: the worker and the p2p node die with it, as when a tab is killed. */
  async kill(): Promise<void> {
    const page = this.page;
    this.page = null;
    await page?.close({ runBeforeUnload: false }).catch(() => undefined);
  }

  /** The peer's state, or null when the page is gone, still loading its script, or too busy to answer in time. */
  async probe(timeoutMs = 10_000): Promise<PeerProbe | null> {
    const page = this.page;
    if (!page) return null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const probe = await Promise.race([
        page.evaluate(() => (window.swarmPeer ? window.swarmPeer.status() : null)),
        new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), timeoutMs))),
      ]);
      if (probe) this.lastProbe = probe;
      return probe;
    } catch {
      return null;
    } finally {
      clearTimeout(timer);
    }
  }
}
