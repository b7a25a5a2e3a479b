import { existsSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningDemo, startDemo } from './app.js';
import { ordersFor } from './demo-process.fixture.js';

// Debian's Chromium, never a downloaded browser (CI installs the package).
const CHROMIUM = '/usr/bin/chromium';

describe('the page at /, in headless Chromium', () => {
  let demo: RunningDemo;
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(
        `${CHROMIUM} is missing: the page test drives Debian's Chromium. Run: apt-get install chromium`,
      );
    }
    demo = await startDemo({ port: 0 });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    });
    page = await browser.newPage({ viewport: { width: 1200, height: 1400 } });
    page.on('pageerror', (error) => pageErrors.push(error.message));
    page.on('console', (message) => {
      // The 409s and 500s the page provokes are logged by Chromium as failed loads; they are expected.
      if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) {
        pageErrors.push(message.text());
      }
    });
    await page.goto(`${demo.url}/`);
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await demo?.close();
  });

  /** Pick a payload and counts, click the burst button, and read the summary once the run is done. */
  async function fire(payload: string, burst: number, retries: number) {
    await page.check(`input[name=payload][value=${payload}]`);
    await page.fill('#burst', String(burst));
    await page.fill('#retries', String(retries));
    const before = await page.getAttribute('#summary', 'data-key');
    await page.click('#fire');
    await page.waitForFunction(
      (previous) => {
        const summary = document.getElementById('summary')!;
        return summary.dataset['state'] === 'done' && summary.dataset['key'] !== previous;
      },
      before,
      { timeout: 20_000 },
    );
    const data = await page.$eval('#summary', (element) => ({ ...(element as HTMLElement).dataset }));
    const outcomes = await page.$$eval('#rows tr', (rows) =>
      rows.map((row) => row.getAttribute('data-outcome')),
    );
    return { data, outcomes };
  }

  it('shows the stack it talks to', async () => {
    expect(await page.textContent('#stack')).toContain('framework: hono');
    expect(await page.textContent('#stack')).toContain('store: memory');
  });

  it('slow handler: one execution, the rest of the burst 409, the retries replayed', async () => {
    const { data, outcomes } = await fire('slow', 5, 3);
    expect(data).toMatchObject({
      requests: '8',
      orders: '1',
      executed: '1',
      inflight: '4',
      replayed: '3',
      failed: '0',
    });
    expect(outcomes).toEqual([
      ...Array(5)
        .fill(null)
        .map(() => expect.stringMatching(/executed|inflight/)),
      'replayed',
      'replayed',
      'replayed',
    ]);
    expect(outcomes.filter((outcome) => outcome === 'executed')).toHaveLength(1);
    // The page's count is the server's.
    expect((await ordersFor(demo.url, data['key']!)).executions).toBe(1);
    expect(await page.textContent('#verdict')).toContain('Exactly 1 order');
    expect(await page.textContent('#cookie')).toMatch(/last_order=ord_/);
    const dir = await mkdtemp(join(tmpdir(), 'idem-demo-page-'));
    const file = join(dir, 'slow-burst.png');
    await page.screenshot({ path: file, fullPage: true });
    console.log(`screenshot: ${file}`);
  }, 30_000);

  it('failing handler: the 500 is not stored, the next request runs again, one order', async () => {
    const { data } = await fire('error', 1, 3);
    expect(data).toMatchObject({
      requests: '4',
      orders: '1',
      attempts: '2',
      failed: '1',
      executed: '1',
      replayed: '2',
    });
  }, 30_000);

  it('normal order: one execution for a burst and its retries', async () => {
    const { data } = await fire('normal', 6, 2);
    expect(data).toMatchObject({ requests: '8', orders: '1', executed: '1', failed: '0', other: '0' });
    expect(Number(data['replayed']) + Number(data['inflight'])).toBe(7);
    expect(Number(data['replayed'])).toBeGreaterThanOrEqual(2);
    expect(await page.$$eval('#orders tr', (rows) => rows.length)).toBeGreaterThanOrEqual(3);
    expect(pageErrors).toEqual([]);
  }, 30_000);
});
