import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import OpenAI from 'openai';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { loadApiConfig, newJobId } from '@chorus/shared';
import { buildApp } from '../apps/api/src/app.ts';
import { postJson, startStack, type Stack } from './helpers/stack.ts';
import { decodedDuration } from './helpers/audio.ts';

/*
 * Who a key is (services/client-identity.ts): jobs are read back only by the key that made them, unknown keys get
 * no rate-limit budget, ADMIN_API_KEY is no user key (alone it leaves user routes open, and it is refused on
 * them), /metrics follows METRICS_AUTH, budgets are named by a keyed hash. /admin/* is in admin-queues.test.ts.
 */

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

async function sseEvents(res: Response): Promise<EventSourceMessage[]> {
  const events: EventSourceMessage[] = [];
  const parser = createParser({ onEvent: (e) => events.push(e) });
  parser.feed(await res.text());
  return events;
}

/** Status and error envelope, with the job id taken out so "someone else's job" and "no job" can be compared. */
async function notFoundShape(res: Response, jobId: string) {
  const body = (await res.json()) as { error?: Record<string, unknown> };
  if (!body.error) return { status: res.status, body };
  return { status: res.status, error: { ...body.error, message: String(body.error.message).replaceAll(jobId, '<id>') } };
}

describe('job ownership (API_KEYS=sk-a,sk-b, ADMIN_API_KEY=sk-admin)', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ redisUrl: inject('redisUrl'), apiEnv: { API_KEYS: 'sk-a,sk-b', ADMIN_API_KEY: 'sk-admin' } });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  const job = (jobId: string, key?: string, events = false) =>
    fetch(`${stack.baseUrl}/api/jobs/${jobId}${events ? '/events' : ''}`, { headers: key ? bearer(key) : {} });

  it('a legacy job is readable by its key only; another key gets the 404 of an unknown job, the admin key a 401', async () => {
    const made = await postJson(stack, '/api/generate_tts', { text: 'Only my key may hear this.', format: 'mp3' }, bearer('sk-a'));
    expect(made.status).toBe(200);
    const file = Buffer.from(await made.arrayBuffer());
    const jobId = made.headers.get('x-job-id')!;
    const unknown = newJobId();

    for (const events of [false, true]) {
      const other = await notFoundShape(await job(jobId, 'sk-b', events), jobId);
      expect(other.status).toBe(404);
      expect(other).toEqual(await notFoundShape(await job(unknown, 'sk-b', events), unknown));
    }
    expect((await job(jobId, undefined)).status).toBe(401);
    for (const events of [false, true]) {
      const admin = await job(jobId, 'sk-admin', events);
      expect(admin.status).toBe(401);
      expect(((await admin.json()) as { error: { message: string } }).error.message).toMatch(/admin key/);
    }

    for (const key of ['sk-a']) {
      const status = await job(jobId, key);
      expect(status.status, key).toBe(200);
      expect(await status.json()).toMatchObject({ job_id: jobId, status: 'completed' });
      const replay = await job(jobId, key, true);
      expect(replay.status, key).toBe(200);
      const audio = Buffer.concat(
        (await sseEvents(replay))
          .map((e) => JSON.parse(e.data) as { type: string; audio?: string })
          .filter((e) => e.type === 'audio')
          .map((e) => Buffer.from(e.audio!, 'base64')),
      );
      expect(audio.equals(file), key).toBe(true); // the whole audio, byte for byte
      expect(await decodedDuration(audio, 'mp3')).toBeGreaterThan(0.5);
    }
  });

  it('a job made through the OpenAI route (SDK) is hidden from another key too', async () => {
    const a = new OpenAI({ baseURL: `${stack.baseUrl}/v1`, apiKey: 'sk-a', maxRetries: 0 });
    const { data, response } = await a.audio.speech
      .create({ model: 'tts-1', voice: 'alloy', input: 'Mine as well.', response_format: 'wav' })
      .withResponse();
    expect(await decodedDuration(Buffer.from(await data.arrayBuffer()))).toBeGreaterThan(0.3);
    const jobId = response.headers.get('x-job-id')!;
    expect((await job(jobId, 'sk-b')).status).toBe(404);
    expect((await job(jobId, 'sk-b', true)).status).toBe(404);
    expect((await job(jobId, 'sk-a')).status).toBe(200);
  });

  it('the job payload names its owner by a keyed hash, never the key or its plain sha256', async () => {
    const made = await postJson(stack, '/api/generate_tts', { text: 'Owner check.', format: 'pcm' }, bearer('sk-b'));
    await made.arrayBuffer();
    const stored = (await stack.queue().getJob(made.headers.get('x-job-id')!))!.data as { owner?: string };
    expect(stored.owner).toMatch(/^[0-9a-f]{32}$/);
    expect(JSON.stringify(stored)).not.toContain('sk-b');
    expect(createHash('sha256').update('sk-b').digest('hex')).not.toContain(stored.owner!);
  });
});

describe('only ADMIN_API_KEY set', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ redisUrl: inject('redisUrl'), apiEnv: { ADMIN_API_KEY: 'sk-admin-only' } });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('user routes stay open (no key, any other key → audio); the admin key is refused on them with a 401 saying why', async () => {
    const body = { model: 'tts-1', voice: 'alloy', input: 'Admin only.', response_format: 'mp3' };
    const none = await postJson(stack, '/v1/audio/speech', body);
    expect(none.status).toBe(200);
    expect(await decodedDuration(Buffer.from(await none.arrayBuffer()), 'mp3')).toBeGreaterThan(0.3);
    const other = new OpenAI({ baseURL: `${stack.baseUrl}/v1`, apiKey: 'sk-admin-onlx', maxRetries: 0 });
    const audio = Buffer.from(await (await other.audio.speech.create({ model: 'tts-1', voice: 'alloy', input: 'Open.' })).arrayBuffer());
    expect(await decodedDuration(audio, 'mp3')).toBeGreaterThan(0.3);

    const admin = new OpenAI({ baseURL: `${stack.baseUrl}/v1`, apiKey: 'sk-admin-only', maxRetries: 0 });
    const err = await admin.audio.speech.create({ model: 'tts-1', voice: 'alloy', input: 'x' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
    const { error } = err as InstanceType<typeof OpenAI.AuthenticationError>;
    expect(error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_api_key', param: null });
    expect((error as { message: string }).message).toMatch(/admin key \(ADMIN_API_KEY\).*never \/v1\/\* or \/api\/\*/);
    const legacy = await postJson(stack, '/api/generate_tts', { text: 'x', format: 'mp3' }, bearer('sk-admin-only'));
    expect(legacy.status).toBe(401);
    expect(((await legacy.json()) as { error: { code: string } }).error.code).toBe('invalid_api_key');
  });

  it('/metrics (METRICS_AUTH=key, the default) needs the admin key, the only key there is', async () => {
    expect((await fetch(`${stack.baseUrl}/metrics`)).status).toBe(401);
    expect((await fetch(`${stack.baseUrl}/metrics`, { headers: bearer('sk-other') })).status).toBe(401);
    const res = await fetch(`${stack.baseUrl}/metrics`, { headers: bearer('sk-admin-only') });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('chorus_http_requests_total');
  });
});

describe('METRICS_AUTH', () => {
  const cases: [string | undefined, Record<string, number>][] = [
    [undefined, { none: 401, key: 200, admin: 200 }], // default: key
    ['key', { none: 401, key: 200, admin: 200 }],
    ['admin', { none: 401, key: 401, admin: 200 }],
    ['public', { none: 200, key: 200, admin: 200 }],
  ];
  for (const [mode, expected] of cases) {
    it(`METRICS_AUTH=${mode ?? '(unset)'} with keys on: ${JSON.stringify(expected)}`, async () => {
      const stack = await startStack({
        redisUrl: inject('redisUrl'), workers: 0,
        apiEnv: { API_KEYS: 'sk-user', ADMIN_API_KEY: 'sk-admin', ...(mode ? { METRICS_AUTH: mode } : {}) },
      });
      try {
        const got: Record<string, number> = {};
        for (const [who, headers] of [['none', {}], ['key', bearer('sk-user')], ['admin', bearer('sk-admin')]] as const) {
          const res = await fetch(`${stack.baseUrl}/metrics`, { headers });
          got[who] = res.status;
          if (res.status === 200) expect(await res.text()).toContain('chorus_http_requests_total');
        }
        expect(got).toEqual(expected);
      } finally {
        await stack.stop();
      }
    });
  }

  for (const mode of ['key', 'admin']) {
    it(`METRICS_AUTH=${mode} with ADMIN_API_KEY alone: only the admin key`, async () => {
      const stack = await startStack({
        redisUrl: inject('redisUrl'), workers: 0, apiEnv: { ADMIN_API_KEY: 'sk-admin', METRICS_AUTH: mode },
      });
      try {
        expect((await fetch(`${stack.baseUrl}/metrics`)).status).toBe(401);
        expect((await fetch(`${stack.baseUrl}/metrics`, { headers: bearer('sk-user') })).status).toBe(401);
        expect((await fetch(`${stack.baseUrl}/metrics`, { headers: bearer('sk-admin') })).status).toBe(200);
      } finally {
        await stack.stop();
      }
    });
  }

  it('keys off: /metrics stays open whatever METRICS_AUTH says', async () => {
    const stack = await startStack({ redisUrl: inject('redisUrl'), workers: 0, apiEnv: { METRICS_AUTH: 'admin' } });
    try {
      expect((await fetch(`${stack.baseUrl}/metrics`)).status).toBe(200);
    } finally {
      await stack.stop();
    }
  });
});

describe('rate-limit budgets', () => {
  const speech = (stack: Stack, app: Stack['app'], headers: Record<string, string>) =>
    app.inject({
      method: 'POST', url: '/v1/audio/speech', headers: { 'content-type': 'application/json', ...headers },
      payload: { model: 'tts-1', voice: 'alloy', input: 'Hi.' },
    });
  const budgetKeys = (stack: Stack) => stack.redis.keys(`${stack.keys.rateLimitNamespace()}*`);

  it('keys off: random Bearer values share the client address budget and create no Redis keys', async () => {
    const stack = await startStack({ redisUrl: inject('redisUrl'), workers: 0, apiEnv: { RATE_LIMIT_PER_MIN: '3' } });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 4; i++) {
        statuses.push((await speech(stack, stack.app, bearer(`sk-${randomBytes(8).toString('hex')}`))).statusCode);
      }
      expect(statuses.slice(0, 3)).not.toContain(429);
      expect(statuses[3]).toBe(429);
      expect(await budgetKeys(stack)).toEqual([`${stack.keys.rateLimitNamespace()}ip:127.0.0.1`]);
    } finally {
      await stack.stop();
    }
  });

  it('keys on: budgets are named by a keyed hash that every replica shares; wrong keys get none', async () => {
    const apiEnv = { API_KEYS: 'sk-one,sk-two', RATE_LIMIT_PER_MIN: '2' };
    const stack = await startStack({ redisUrl: inject('redisUrl'), workers: 0, apiEnv });
    // A second API replica on the same Redis prefix.
    const replica = await buildApp(loadApiConfig({ ...stack.env, HOST: '127.0.0.1', PORT: '0', ...apiEnv }), { logger: false });
    try {
      expect((await speech(stack, stack.app, bearer('sk-one'))).statusCode).not.toBe(429);
      expect((await speech(stack, replica, bearer('sk-one'))).statusCode).not.toBe(429);
      expect((await speech(stack, replica, bearer('sk-one'))).statusCode).toBe(429);
      expect((await speech(stack, stack.app, bearer('sk-one'))).statusCode).toBe(429);
      expect((await speech(stack, stack.app, bearer('sk-two'))).statusCode).not.toBe(429);
      for (let i = 0; i < 3; i++) expect((await speech(stack, replica, bearer(`sk-${i}`))).statusCode).toBe(401);

      const names = (await budgetKeys(stack)).map((k) => k.slice(stack.keys.rateLimitNamespace().length));
      expect(names).toHaveLength(2);
      for (const key of ['sk-one', 'sk-two']) {
        const plain = createHash('sha256').update(key).digest('hex');
        for (const name of names) {
          expect(name).toMatch(/^k:[0-9a-f]{32}$/);
          expect(plain).not.toContain(name.slice(2));
          expect(name).not.toContain(key);
        }
      }
    } finally {
      await replica.close();
      await stack.stop();
    }
  });
});
