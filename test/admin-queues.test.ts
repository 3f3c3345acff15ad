import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import OpenAI from 'openai';
import { sign } from '@fastify/cookie';
import { publishHeartbeat, removeWorker } from '@chorus/shared';
import { startRedisServer } from './helpers/redis-server.ts';
import { startStack, type Stack } from './helpers/stack.ts';

/*
 * /admin/* (routes/admin.ts): bull-board over every Chorus queue, only with ADMIN_API_KEY, only for the admin key
 * (Bearer or the signed session cookie /admin/login sets). Real API, real Redis, a real worker.
 */

const ADMIN = 'sk-admin-queues';
const USER = 'sk-user-queues';
const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

interface Envelope {
  error: { message: string; type: string; param: string | null; code: string | null };
}
interface BoardQueue {
  name: string;
  description: string;
  jobs: { id: string; name: string; data: { text?: string } }[];
}

/** Status and envelope of a refusal; fails the test when the body is not our JSON envelope. */
async function refusal(res: Response) {
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  const body = (await res.json()) as Envelope;
  expect(Object.keys(body)).toEqual(['error']);
  expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'param', 'type']);
  return { status: res.status, code: body.error.code, type: body.error.type, message: body.error.message };
}

/** Paths that cover bull-board's page, its API and its static assets. */
const GUARDED = [
  '/admin/queues',
  '/admin/queues/queue/tts-espeak',
  '/admin/queues/api/queues',
  '/admin/queues/api/redis/stats',
  '/admin/queues/static/favicon-32x32.png',
];

describe('/admin without ADMIN_API_KEY', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ redisUrl: inject('redisUrl'), workers: 0, apiEnv: { API_KEYS: USER } });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('does not exist: the 404 envelope for the dashboard, its API, its assets and the login', async () => {
    for (const path of [...GUARDED, '/admin', '/admin/login']) {
      for (const headers of [{}, bearer(USER)]) {
        const r = await refusal(await fetch(`${stack.baseUrl}${path}`, { headers }));
        expect(r, path).toMatchObject({ status: 404, code: 'not_found', type: 'invalid_request_error' });
      }
    }
    const login = await fetch(`${stack.baseUrl}/admin/login`, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'key=x',
    });
    expect((await refusal(login)).status).toBe(404);
  });
});

describe('/admin/queues with ADMIN_API_KEY (and API_KEYS)', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({
      redisUrl: inject('redisUrl'),
      // One trusted hop: a request with X-Forwarded-Proto: https is what a TLS-terminating proxy forwards.
      apiEnv: { API_KEYS: USER, ADMIN_API_KEY: ADMIN, TRUST_PROXY: '1' },
    });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  const get = (path: string, headers: Record<string, string> = {}) => fetch(`${stack.baseUrl}${path}`, { headers, redirect: 'manual' });
  const login = (key: string, headers: Record<string, string> = {}) =>
    fetch(`${stack.baseUrl}/admin/login`, {
      method: 'POST', redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
      body: new URLSearchParams({ key }).toString(),
    });
  const queues = async (headers: Record<string, string>, query = '') => {
    const res = await get(`/admin/queues/api/queues${query}`, headers);
    expect(res.status).toBe(200);
    return ((await res.json()) as { queues: BoardQueue[] }).queues;
  };

  it('refuses without a key (401), with a wrong key (401) and with a user key (403), all as the envelope', async () => {
    for (const path of GUARDED) {
      expect(await refusal(await get(path)), path).toMatchObject({ status: 401, code: 'invalid_api_key' });
      expect((await refusal(await get(path))).message).toMatch(/\/admin\/login/);
      expect(await refusal(await get(path, bearer('sk-nope'))), path).toMatchObject({ status: 401, code: 'invalid_api_key' });
      expect(await refusal(await get(path, bearer(USER))), path).toMatchObject({
        status: 403, code: 'permission_denied', type: 'invalid_request_error',
      });
    }
    // bull-board's actions too: a user key cannot pause a queue.
    const pause = await fetch(`${stack.baseUrl}/admin/queues/api/queues/tts-espeak/pause`, { method: 'PUT', headers: bearer(USER) });
    expect((await refusal(pause)).status).toBe(403);
    expect(await stack.app.speech.queue('espeak').isPaused()).toBe(false);
  });

  it('opens with the admin key as Bearer: the page (with its CSP), its assets and its API', async () => {
    const page = await get('/admin/queues', bearer(ADMIN));
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    const csp = page.headers.get('content-security-policy')!;
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self';");
    expect(csp).not.toMatch(/script-src[^;]*unsafe/);
    expect(csp).toContain("frame-ancestors 'none'");
    const html = await page.text();
    expect(html).toContain('<base href="/admin/queues/"');
    expect(html).not.toContain('fonts.googleapis.com'); // no third-party request from the dashboard
    const asset = await get('/admin/queues/static/favicon-32x32.png', bearer(ADMIN));
    expect(asset.status).toBe(200);
    expect(asset.headers.get('content-type')).toBe('image/png');
    const scripts = [...html.matchAll(/src="(static\/js\/[^"]+)"/g)].map((m) => m[1]!);
    expect(scripts.length).toBeGreaterThan(0);
    for (const src of scripts) expect((await get(`/admin/queues/${src}`, bearer(ADMIN))).status, src).toBe(200);
  });

  it('lists every queue Chorus uses: both lanes of each engine, the batch control and lifecycle queues', async () => {
    const names = (await queues(bearer(ADMIN))).map((q) => q.name);
    for (const engine of stack.app.models.engines) {
      expect(names).toContain(`tts-${engine}`);
      expect(names).toContain(`tts-${engine}-batch`);
    }
    expect(names).toContain('batch-control');
    expect(names).toContain('batch-lifecycle');
    expect(names).toContain('tts-espeak');
  });

  it('adds the queues of an engine a live worker announces when the list is asked for', async () => {
    expect((await queues(bearer(ADMIN))).map((q) => q.name)).not.toContain('tts-flite');
    await publishHeartbeat(stack.redis, stack.keys, {
      id: 'w-flite-test', engines: ['flite'], concurrency: 1, host: 'test', pid: 1, startedAt: Date.now(), accepting: true,
    }, 60_000);
    await stack.app.directory.refresh();
    const names = (await queues(bearer(ADMIN))).map((q) => q.name);
    expect(names).toContain('tts-flite');
    expect(names).toContain('tts-flite-batch');
    await removeWorker(stack.redis, stack.keys, 'w-flite-test');
  });

  it('shows a job made through /v1/audio/speech (official SDK, user key)', async () => {
    const client = new OpenAI({ baseURL: `${stack.baseUrl}/v1`, apiKey: USER, maxRetries: 0 });
    const input = 'A job for the queue dashboard.';
    const { data, response } = await client.audio.speech
      .create({ model: 'tts-1', voice: 'alloy', input, response_format: 'mp3' })
      .withResponse();
    expect((await data.arrayBuffer()).byteLength).toBeGreaterThan(0);
    const jobId = response.headers.get('x-job-id')!;
    expect(jobId).toBeTruthy();
    // The audio ends before the worker marks its job completed: look until it is listed there.
    const deadline = Date.now() + 20_000;
    let job: BoardQueue['jobs'][number] | undefined;
    while (!job && Date.now() < deadline) {
      const listed = await queues(bearer(ADMIN), '?activeQueue=tts-espeak&status=completed&page=1&jobsPerPage=50');
      job = listed.find((q) => q.name === 'tts-espeak')!.jobs.find((j) => j.id === jobId);
      if (!job) await new Promise((r) => setTimeout(r, 100));
    }
    expect(job).toMatchObject({ id: jobId, name: 'synthesize', data: { text: input } });
  });

  it('signs in through the form: a session cookie (HttpOnly, SameSite=Strict, path /admin) opens the dashboard', async () => {
    const form = await get('/admin/login');
    expect(form.status).toBe(200);
    expect(form.headers.get('content-security-policy')).toMatch(/^default-src 'none'; style-src 'sha256-/);
    expect(await form.text()).toMatch(/<form method="post" action="\/admin\/login">/);

    const wrong = await login('sk-nope');
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('set-cookie')).toBeNull();
    const user = await login(USER);
    expect(user.status).toBe(403);
    expect(user.headers.get('set-cookie')).toBeNull();

    const ok = await login(ADMIN);
    expect(ok.status).toBe(303);
    expect(ok.headers.get('location')).toBe('/admin/queues');
    const setCookie = ok.headers.get('set-cookie')!;
    expect(setCookie).toMatch(/^chorus_admin=/);
    expect(setCookie).toMatch(/; HttpOnly/);
    expect(setCookie).toMatch(/; SameSite=Strict/);
    expect(setCookie).toMatch(/; Path=\/admin(;|$)/);
    expect(setCookie).not.toMatch(/; Secure/); // plain http here
    expect(setCookie).not.toContain(ADMIN); // the cookie is a signed session end, not the key
    const cookie = { cookie: setCookie.split(';')[0]! };

    expect((await get('/admin/queues', cookie)).status).toBe(200);
    expect((await get('/admin/queues/static/favicon-32x32.png', cookie)).status).toBe(200);
    expect((await queues(cookie)).map((q) => q.name)).toContain('tts-espeak');
    // The cookie is no key: user routes do not take it (nor would the browser send it there: path /admin).
    expect((await fetch(`${stack.baseUrl}/v1/files`, { headers: cookie })).status).toBe(401);

    const out = await fetch(`${stack.baseUrl}/admin/logout`, { method: 'POST', headers: cookie, redirect: 'manual' });
    expect(out.status).toBe(303);
    expect(out.headers.get('set-cookie')).toMatch(/^chorus_admin=;.*Expires=Thu, 01 Jan 1970/);
  });

  it('marks the cookie Secure behind a TLS proxy (X-Forwarded-Proto: https from a trusted hop)', async () => {
    const ok = await login(ADMIN, { 'x-forwarded-proto': 'https' });
    expect(ok.status).toBe(303);
    expect(ok.headers.get('set-cookie')).toMatch(/; Secure/);
  });

  it('refuses a cookie that is tampered with, expired, or signed with another secret', async () => {
    const secret = stack.app.identity.adminCookieSecret()!;
    const cookieOf = (value: string) => ({ cookie: `chorus_admin=${encodeURIComponent(value)}` });
    const live = sign(String(Date.now() + 60_000), secret);
    expect((await get('/admin/queues/api/queues', cookieOf(live))).status).toBe(200);

    const [end, mac] = [live.slice(0, live.lastIndexOf('.')), live.slice(live.lastIndexOf('.') + 1)];
    const cases = {
      tampered: `${Number(end) + 3600_000}.${mac}`,
      expired: sign(String(Date.now() - 1000), secret),
      otherSecret: sign(String(Date.now() + 60_000), Buffer.alloc(32, 7)),
      unsigned: String(Date.now() + 60_000),
    };
    for (const [name, value] of Object.entries(cases)) {
      const r = await refusal(await get('/admin/queues/api/queues', cookieOf(value)));
      expect(r, name).toMatchObject({ status: 401, code: 'invalid_api_key' });
      expect(r.message, name).toMatch(/sign in again/);
    }
  });

  it('the admin key stays refused on user routes while the dashboard is on', async () => {
    const admin = new OpenAI({ baseURL: `${stack.baseUrl}/v1`, apiKey: ADMIN, maxRetries: 0 });
    const err = await admin.audio.speech.create({ model: 'tts-1', voice: 'alloy', input: 'x' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((err as InstanceType<typeof OpenAI.AuthenticationError>).message).toMatch(/admin key \(ADMIN_API_KEY\)/);
    // ...and /metrics takes it (METRICS_AUTH=key, the default: a user key or the admin key).
    expect((await get('/metrics', bearer(ADMIN))).status).toBe(200);
  });
});

describe('/admin/queues and RATE_LIMIT_PER_MIN', () => {
  it('the dashboard neither spends nor is stopped by the budget of its address', async () => {
    const stack = await startStack({
      redisUrl: inject('redisUrl'), workers: 0, apiEnv: { ADMIN_API_KEY: ADMIN, RATE_LIMIT_PER_MIN: '2' },
    });
    try {
      for (let i = 0; i < 5; i++) {
        const res = await fetch(`${stack.baseUrl}/admin/queues/api/queues`, { headers: bearer(ADMIN) });
        expect(res.status, `poll ${i}`).toBe(200);
      }
      // The address still has its whole budget for user routes (open here: no API_KEYS).
      const statuses: number[] = [];
      for (let i = 0; i < 3; i++) statuses.push((await fetch(`${stack.baseUrl}/v1/models`)).status);
      expect(statuses).toEqual([200, 200, 429]);
    } finally {
      await stack.stop();
    }
  });

  it('a signed-in session polls freely; guesses at the admin key spend the budget and are stopped', async () => {
    const stack = await startStack({
      redisUrl: inject('redisUrl'), workers: 0, apiEnv: { ADMIN_API_KEY: ADMIN, RATE_LIMIT_PER_MIN: '3' },
    });
    try {
      const signIn = (key: string) => fetch(`${stack.baseUrl}/admin/login`, {
        method: 'POST', redirect: 'manual',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ key }).toString(),
      });
      const ok = await signIn(ADMIN); // spends 1 of 3: it is not yet the admin's
      expect(ok.status).toBe(303);
      const cookie = { cookie: ok.headers.get('set-cookie')!.split(';')[0]! };
      for (let i = 0; i < 5; i++) {
        expect((await fetch(`${stack.baseUrl}/admin/queues/api/queues`, { headers: cookie })).status, `poll ${i}`).toBe(200);
      }
      // Wrong keys, by form and by Bearer, and a forged cookie: counted, then refused with 429 before any check.
      const guesses = [
        (await signIn('sk-guess-1')).status,
        (await fetch(`${stack.baseUrl}/admin/queues/api/queues`, { headers: bearer('sk-guess-2') })).status,
        (await fetch(`${stack.baseUrl}/admin/queues/api/queues`, { headers: { cookie: 'chorus_admin=9999999999999.forged' } })).status,
        (await signIn(ADMIN)).status,
      ];
      expect(guesses).toEqual([401, 401, 429, 429]);
      // The real session still works, whatever the address's budget.
      expect((await fetch(`${stack.baseUrl}/admin/queues/api/queues`, { headers: cookie })).status).toBe(200);
    } finally {
      await stack.stop();
    }
  });
});

describe('/admin/queues with Redis down', () => {
  it("bull-board's API answers the 503 envelope at once (BullMQ would wait for the connection)", async () => {
    const redis = await startRedisServer();
    const stack = await startStack({ redisUrl: redis.url, workers: 0, apiEnv: { ADMIN_API_KEY: ADMIN } });
    try {
      expect((await fetch(`${stack.baseUrl}/admin/queues/api/queues`, { headers: bearer(ADMIN) })).status).toBe(200);
      await redis.kill();
      for (const path of ['/admin/queues/api/queues', '/admin/queues/api/redis/stats']) {
        const res = await fetch(`${stack.baseUrl}${path}`, { headers: bearer(ADMIN), signal: AbortSignal.timeout(30_000) });
        expect(res.status, path).toBe(503);
        expect(res.headers.get('retry-after'), path).toBe('1');
        expect(await refusal(res), path).toMatchObject({ status: 503, code: 'backend_unavailable', type: 'server_error' });
      }
      // The guard needs no Redis: still 401 without the key.
      expect((await fetch(`${stack.baseUrl}/admin/queues/api/queues`)).status).toBe(401);

      // Redis back: the dashboard's API answers again (no API restart).
      await redis.restart();
      const deadline = Date.now() + 30_000;
      let status = 0;
      while (status !== 200 && Date.now() < deadline) {
        status = (await fetch(`${stack.baseUrl}/admin/queues/api/queues`, { headers: bearer(ADMIN) })).status;
        if (status !== 200) await new Promise((r) => setTimeout(r, 100));
      }
      expect(status).toBe(200);
    } finally {
      // Stop the stack against a live Redis (its clean-up waits for Redis; closing while BullMQ still reconnects hangs).
      if (!redis.running) await redis.restart();
      await stack.stop();
      await redis.stop();
    }
  });
});
