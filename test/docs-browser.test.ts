import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { startStack, type Stack } from './helpers/stack.ts';
import { launchBrowser, openPage, screenshot } from './helpers/browser.ts';

/*
 * Issue 13: /docs renders the OpenAPI document in a real browser (Debian's Chromium), from our own assets, under
 * its Content-Security-Policy, and its "Try it out" calls the API it documents.
 */
describe('/docs in Chromium', () => {
  let stack: Stack;
  let browser: Browser;
  beforeAll(async () => {
    stack = await startStack({ redisUrl: inject('redisUrl'), workers: 1 });
    browser = await launchBrowser();
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await stack?.stop();
  });

  it('lists both dialects and the batch routes, and "Try it out" gets an answer', async () => {
    const requests: string[] = [];
    const { page, problems, close } = await openPage(browser, `${stack.baseUrl}/docs`);
    page.on('request', (r) => requests.push(r.url()));
    try {
      const paths = page.locator('.opblock-summary-path');
      await paths.first().waitFor({ timeout: 60_000 });
      const listed = await paths.allInnerTexts();
      const clean = listed.map((p) => p.replace(/\u200b/g, '').trim());
      for (const p of ['/v1/audio/speech', '/api/generate_tts', '/v1/batches', '/v1/files', '/v1/models']) {
        expect(clean, p).toContain(p);
      }
      await screenshot(page, 'docs');

      // The models operation, run from the page: the answer shown is the live list.
      const op = page.locator('.opblock-get', { has: page.locator('.opblock-summary-path', { hasText: /^\/v1\/models$/ }) }).first();
      await op.locator('.opblock-summary').click();
      await op.getByRole('button', { name: 'Try it out' }).click();
      await op.getByRole('button', { name: 'Execute' }).click();
      const body = op.locator('.live-responses-table .response-col_description pre').first();
      await body.waitFor({ timeout: 60_000 });
      expect(await body.innerText()).toContain('"tts-1"');

      // Nothing came from anywhere but this server, and the CSP blocked nothing the page needs.
      const origin = new URL(stack.baseUrl).origin;
      expect(requests.filter((u) => !u.startsWith(origin) && !u.startsWith('data:'))).toEqual([]);
      expect(problems).toEqual([]);
    } finally {
      await close();
    }
  }, 180_000);
});
