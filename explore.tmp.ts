import { loadApiConfig } from '@chorus/shared';
import { buildApp } from './apps/api/src/app.ts';
import { launchChromium } from './test/helpers/browser.ts';
const app = await buildApp(loadApiConfig({ REDIS_URL: 'redis://127.0.0.1:6379', REDIS_PREFIX: 'tsmokeadm', ADMIN_API_KEY: 'sk-adm', API_KEYS: 'sk-u', HOST: '127.0.0.1', PORT: '0' }), { logger: false });
await app.listen({ host: '127.0.0.1', port: 0 });
const port = (app.server.address() as any).port;
const q = app.speech.queue('espeak');
const job = await q.add('synthesize', { text: 'hello' }, { jobId: 'jexplore1' });
await job.moveToFailed(new Error('boom'), '0', false).catch(() => {});
const policies = process.argv.slice(2);
const browser = await launchChromium();
for (const csp of policies) {
  const page = await browser.newPage();
  const v: string[] = [];
  page.on('console', (m) => { if (m.text().startsWith('CSP')) v.push(m.text()); else if (m.type() === 'error') v.push('ERR ' + m.text().slice(0, 200)); });
  page.on('pageerror', (e) => v.push('pageerror ' + e.message));
  await page.route('**/admin/queues**', async (route) => {
    const res = await route.fetch();
    await route.fulfill({ response: res, headers: { ...res.headers(), 'content-security-policy': csp } });
  });
  await page.addInitScript(() => document.addEventListener('securitypolicyviolation', (e) => console.log('CSP', e.violatedDirective, e.blockedURI, e.sample)));
  await page.setExtraHTTPHeaders({ authorization: 'Bearer sk-adm' });
  await page.goto(`http://127.0.0.1:${port}/admin/queues`);
  await page.getByText('tts-espeak-batch').first().waitFor();
  await page.goto(`http://127.0.0.1:${port}/admin/queues/queue/tts-espeak?status=failed`);
  await page.waitForTimeout(2500);
  await page.goto(`http://127.0.0.1:${port}/admin/queues/queue/tts-espeak/jexplore1`);
  await page.waitForTimeout(2000);
  for (const tab of ['Options', 'Logs', 'Progress', 'Data']) { await page.getByText(tab, { exact: true }).first().click({ timeout: 3000 }).catch(() => console.log('notab', tab)); await page.waitForTimeout(500); }
  const buttons = page.locator('button');
  console.log('buttons', await buttons.count());
  for (const t of await page.locator('button').all()) console.log('btn', (await t.evaluate((e) => e.outerHTML)).replace(/<svg.*<\/svg>/s, '<svg/>').slice(0, 200));
  for (const cls of ['button-GXX8BV', 'button-vbAEsE']) {
    const n = await page.locator(`button.${cls}`).count();
    for (let i = 0; i < n; i++) {
      await page.locator(`button.${cls}`).nth(i).click({ timeout: 3000 }).catch((e) => console.log('noclick', cls, i));
      await page.waitForTimeout(1500);
      if (process.env.SHOT) await page.screenshot({ path: `/tmp/admin-${cls}-${i}.png` });
      await page.keyboard.press('Escape');
      await page.waitForTimeout(300);
    }
  }
  console.log('POLICY', csp, '\n  ', [...new Set(v)].join('\n   '));
  await page.close();
}
await browser.close();
await q.obliterate({ force: true });
await app.close();
