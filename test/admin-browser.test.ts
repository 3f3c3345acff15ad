import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { startStack, type Stack } from './helpers/stack.ts';
import { launchBrowser } from './helpers/browser.ts';

/*
 * The queue dashboard in a real browser (Debian's Chromium, headless): sign in through the form, the cookie carries
 * the session, bull-board's UI renders Chorus's queues and a job, and nothing it does breaks the page's
 * Content-Security-Policy (any violation, blocked request or page error fails the test).
 */

const ADMIN = 'sk-admin-browser';

describe('the queue dashboard in Chromium', () => {
  let stack: Stack;
  let browser: Browser;
  beforeAll(async () => {
    stack = await startStack({ redisUrl: inject('redisUrl'), apiEnv: { API_KEYS: 'sk-user-browser', ADMIN_API_KEY: ADMIN } });
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.close();
    await stack?.stop();
  });

  /** A page that records CSP violations, console errors, page errors and requests to other origins. */
  async function watchedPage(): Promise<{ page: Page; problems: string[] }> {
    const page = await browser.newPage();
    const problems: string[] = [];
    const origin = new URL(stack.baseUrl).origin;
    await page.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', (e) => {
        console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`);
      });
    });
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    page.on('request', (r) => {
      if (!r.url().startsWith(origin) && !r.url().startsWith('data:')) problems.push(`third-party request: ${r.url()}`);
    });
    page.on('requestfailed', (r) => problems.push(`failed: ${r.url()} ${r.failure()?.errorText}`));
    return { page, problems };
  }

  it('signs in, renders the queues and a job, with no CSP violation', async () => {
    const made = await stack.client.audio.speech.create({
      model: 'tts-1', voice: 'alloy', input: 'Seen in the browser.', response_format: 'mp3',
    }).withResponse();
    await made.data.arrayBuffer();
    const jobId = made.response.headers.get('x-job-id')!;

    const { page, problems } = await watchedPage();
    try {
      // Without a session the dashboard is the JSON 401 pointing at the sign-in page.
      const before = await page.goto(`${stack.baseUrl}/admin/queues`);
      expect(before!.status()).toBe(401);
      expect(await page.textContent('body')).toContain('/admin/login');
      problems.length = 0; // the 401 itself is logged as a console error

      await page.goto(`${stack.baseUrl}/admin/login`);
      await page.fill('#key', 'sk-user-browser');
      await Promise.all([page.waitForURL('**/admin/login'), page.click('button[type=submit]')]);
      expect(await page.textContent('[role=alert]')).toContain('admin key');
      problems.length = 0; // the 403 of the refused sign-in

      await page.fill('#key', ADMIN);
      await Promise.all([page.waitForURL('**/admin/queues'), page.click('button[type=submit]')]);
      const cookie = (await page.context().cookies()).find((c) => c.name === 'chorus_admin')!;
      expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: '/admin' });

      // The overview: bull-board's UI, fetched and rendered under the CSP, lists our queues.
      for (const name of ['tts-espeak', 'tts-espeak-batch', 'batch-control', 'batch-lifecycle']) {
        await page.getByText(name, { exact: true }).first().waitFor({ timeout: 30_000 });
      }
      // A queue's completed jobs, then the job itself with its data.
      await page.goto(`${stack.baseUrl}/admin/queues/queue/tts-espeak?status=completed`);
      await page.getByText(jobId).first().waitFor({ timeout: 30_000 });
      await page.goto(`${stack.baseUrl}/admin/queues/queue/tts-espeak/${jobId}`);
      await page.getByText('Seen in the browser.').first().waitFor({ timeout: 30_000 });
      for (const tab of ['Options', 'Logs', 'Data']) await page.getByRole('tab', { name: tab }).click();
      await page.getByText('Seen in the browser.').first().waitFor();
      const sheets = await page.evaluate(() => [...document.querySelectorAll('link[rel=stylesheet]')].map((l) => (l as HTMLLinkElement).href));
      expect(sheets.length).toBeGreaterThan(0);
      for (const href of sheets) expect(href.startsWith(stack.baseUrl), href).toBe(true);
      expect(problems).toEqual([]);
    } finally {
      await page.close();
    }
  });
});
