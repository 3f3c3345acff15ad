import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { loadApiConfig } from '@chorus/shared';
import { buildApp } from '../apps/api/src/app.ts';
import { startStack, type Stack } from './helpers/stack.ts';

/*
 * Issue 4, load shedding: MAX_QUEUE_DEPTH → 429 queue_full, RATE_LIMIT_PER_MIN → 429 rate_limit_exceeded (shared
 * by replicas through Redis), QUEUE_TIMEOUT_S → 503 queue_timeout. One worker running one job at a time; extra
 * API instances with other settings share its Redis prefix, like replicas of one deployment.
 */

const MEDIUM = 'The quick brown fox jumps over the lazy dog, then runs into the forest and sleeps until morning. '.repeat(4);
const LONG = Array.from({ length: 40 }, (_, i) => `Sentence ${i + 1} keeps the only worker busy for a while.`).join(' ');
const MAX_DEPTH = 3;

let stack: Stack;
const extraApps: FastifyInstance[] = [];

beforeAll(async () => {
  stack = await startStack({
    redisUrl: inject('redisUrl'),
    workerEnv: { WORKER_CONCURRENCY: '1' },
    apiEnv: { MAX_QUEUE_DEPTH: String(MAX_DEPTH) },
  });
});
afterAll(async () => {
  await Promise.all(extraApps.map((a) => a.close()));
  await stack?.stop();
});

/** Another API process on the same Redis prefix, with its own settings. */
async function replica(env: Record<string, string>): Promise<FastifyInstance> {
  const app = await buildApp(loadApiConfig({ ...stack.env, ...env }), { logger: false });
  await app.ready();
  await app.directory.refresh();
  extraApps.push(app);
  return app;
}

function speech(input: string, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}) {
  return fetch(`${stack.baseUrl}/v1/audio/speech`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model: 'tts-1', voice: 'alloy', input, response_format: 'mp3', ...extra }),
  });
}

function expectEnvelope(body: unknown, type: string, code: string) {
  expect(body).toEqual({ error: { message: expect.any(String), type, param: null, code } });
}

describe('load shedding', () => {
  it('a burst above MAX_QUEUE_DEPTH gets fast 429 queue_full while the accepted requests complete', async () => {
    const burst = await Promise.all(
      Array.from({ length: 24 }, async () => {
        const t0 = performance.now();
        const res = await speech(MEDIUM);
        const headersMs = performance.now() - t0;
        const body = Buffer.from(await res.arrayBuffer());
        return { res, headersMs, body, doneMs: performance.now() - t0 };
      }),
    );
    const accepted = burst.filter((r) => r.res.status === 200);
    const shed = burst.filter((r) => r.res.status === 429);
    console.log(`burst of 24, MAX_QUEUE_DEPTH ${MAX_DEPTH}: ${accepted.length} accepted, ${shed.length} shed; ` +
      `slowest 429 after ${Math.max(...shed.map((r) => r.headersMs)).toFixed(0)} ms`);
    expect(accepted.length + shed.length).toBe(24);
    expect(shed.length).toBeGreaterThan(0);
    // One running plus at most MAX_DEPTH waiting at any moment; the burst lasts a few job times at most.
    expect(accepted.length).toBeGreaterThanOrEqual(1);
    // Fast: refused at admission, not after waiting for a slot. Measured against the accepted jobs of the same
    // burst (they run one after another), so a loaded machine slows both sides alike.
    const lastAcceptedDoneMs = Math.max(...accepted.map((r) => r.doneMs));
    for (const r of shed) {
      expect(r.headersMs).toBeLessThan(lastAcceptedDoneMs);
      expect(r.res.headers.get('retry-after')).toBe('1');
      expect(r.res.headers.get('retry-after-ms')).toBe('1000');
      expectEnvelope(JSON.parse(r.body.toString()), 'rate_limit_error', 'queue_full');
    }
    const reference = accepted[0]!.body;
    expect(reference.length).toBeGreaterThan(10_000);
    for (const r of accepted) expect(r.body.equals(reference)).toBe(true);
    expect(await stack.queue().getJobCountByTypes('prioritized', 'waiting', 'active')).toBe(0);
  });

  it('a job nobody starts within QUEUE_TIMEOUT_S → 503 queue_timeout, and it is removed from the queue', async () => {
    const impatient = await replica({ QUEUE_TIMEOUT_S: '1' });
    const blocker = speech(LONG, { speed: 0.25 });
    await expect.poll(() => stack.queue().getActiveCount(), { timeout: 5000 }).toBe(1);
    const t0 = performance.now();
    const res = await impatient.inject({
      method: 'POST', url: '/v1/audio/speech', payload: { model: 'tts-1', voice: 'alloy', input: 'Too late.' },
    });
    const ms = performance.now() - t0;
    expect(res.statusCode).toBe(503);
    expect(res.headers['retry-after']).toBeDefined();
    expectEnvelope(res.json(), 'server_error', 'queue_timeout');
    expect(ms).toBeGreaterThan(900);
    expect(ms).toBeLessThan(4000);
    expect(await stack.queue().getJobCountByTypes('prioritized', 'waiting')).toBe(0);
    expect((await blocker).status).toBe(200); // the running job was not touched
  });

  it('RATE_LIMIT_PER_MIN per key, counted in Redis across replicas → 429 rate_limit_exceeded', async () => {
    const env = { RATE_LIMIT_PER_MIN: '3', API_KEYS: 'key-a,key-b' };
    const [one, two] = [await replica(env), await replica(env)];
    const get = (app: FastifyInstance, key: string, url = '/v1/models') =>
      app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${key}` } });

    for (const app of [one, two, one]) expect((await get(app, 'key-a')).statusCode).toBe(200);
    const limited = await get(two, 'key-a'); // the fourth in this minute, on the other replica
    expect(limited.statusCode).toBe(429);
    expectEnvelope(limited.json(), 'rate_limit_error', 'rate_limit_exceeded');
    const retryAfter = Number(limited.headers['retry-after']);
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(Number(limited.headers['retry-after-ms'])).toBeGreaterThan(0);
    expect(limited.headers['x-request-id']).toMatch(/^req_[0-9a-f]{32}$/);

    expect((await get(one, 'key-b')).statusCode).toBe(200); // another key has its own budget
    expect((await get(one, 'key-a', '/healthz')).statusCode).toBe(200); // probes are never limited
    // /v1/models is public (PUBLIC_DISCOVERY); speech needs a key, and auth runs before the limiter.
    const wrong = await one.inject({ method: 'POST', url: '/v1/audio/speech', headers: { authorization: 'Bearer nope' } });
    expect(wrong.statusCode).toBe(401);
  });
});
