import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack, timedSpeech } from './helpers/stack.ts';
import { startRedisServer, type RedisServer } from './helpers/redis-server.ts';
import { waitFor } from './helpers/processes.ts';
import { startTcpProxy } from './helpers/tcp-proxy.ts';
import { loadApiConfig } from '@chorus/shared';
import { buildApp } from '../apps/api/src/app.ts';

/*
 * Issue 4, "Redis faults": Redis (AOF on, appendfsync always) is killed under traffic and restarted on the same
 * port. While it is down the API answers 503 backend_unavailable at once; the jobs queued before the crash
 * survive it and complete; API and worker reconnect by themselves (neither is restarted).
 */

const SHORT = 'Redis went away and came back.';
const QUEUED = 'This request waited in the queue while Redis restarted, and still finished.';
const LONG = Array.from({ length: 30 }, (_, i) => `Sentence ${i + 1} keeps the only worker busy for a while.`).join(' ');
/** packages/shared/src/redis.ts: the API producer's `commandTimeout`. */
const PRODUCER_COMMAND_TIMEOUT_MS = 3000;

let redis: RedisServer;
let stack: Stack;

beforeAll(async () => {
  redis = await startRedisServer({ appendonly: true });
  stack = await startStack({
    redisUrl: redis.url,
    workerEnv: { WORKER_CONCURRENCY: '1' },
    apiEnv: { QUEUE_TIMEOUT_S: '60' },
  });
});
afterAll(async () => {
  // Stop the stack against a live Redis (its clean-up waits for Redis), even when the test failed mid-outage.
  if (redis && !redis.running) await redis.restart();
  await stack?.stop();
  await redis?.stop();
});

const speech = (input: string, extra: Record<string, unknown> = {}) => timedSpeech(stack.baseUrl, input, extra);

describe('Redis restart under traffic (AOF)', () => {
  it('503 backend_unavailable while down, queued jobs survive, api and worker recover on their own', async () => {
    const refShort = await speech(SHORT);
    const refQueued = await speech(QUEUED);
    const refLong = await speech(LONG, { speed: 0.5 });
    expect([refShort.status, refQueued.status, refLong.status]).toEqual([200, 200, 200]);

    // One long job holds the only worker; three more wait behind it.
    const inFlight = [speech(LONG, { speed: 0.5 }), speech(QUEUED), speech(QUEUED), speech(QUEUED)];
    expect(await waitFor(async () => (await stack.queue().getJobCountByTypes('prioritized', 'waiting')) === 3, 30_000))
      .toBeGreaterThanOrEqual(0);

    await redis.kill();
    const down = await Promise.all([speech(SHORT), speech(SHORT), speech(SHORT)]);
    const ready = await fetch(`${stack.baseUrl}/readyz`);
    for (const r of down) {
      expect(r.status).toBe(503);
      expect(JSON.parse(r.body.toString()).error).toMatchObject({ type: 'server_error', code: 'backend_unavailable' });
      expect(r.retryAfter).toBe('1');
      // At once: without fail-fast the producer would queue the command until its 3 s command timeout.
      expect(r.ms).toBeLessThan(PRODUCER_COMMAND_TIMEOUT_MS);
    }
    expect(ready.status).toBe(503);
    // Discovery reads the live-worker directory: also a quick 503, not a hang or a stale answer.
    const models = await fetch(`${stack.baseUrl}/v1/models`);
    expect(models.status).toBe(503);
    expect((await models.json()).error.code).toBe('backend_unavailable');
    console.log(`redis down: 503 backend_unavailable in ${Math.max(...down.map((r) => r.ms)).toFixed(0)} ms at most`);

    await new Promise((r) => setTimeout(r, 1000)); // stay down a moment: clients reconnect-loop meanwhile
    await redis.restart();
    const t0 = performance.now();
    const back = await waitFor(async () => (await speech(SHORT)).status === 200, 20_000, 200);
    console.log(`redis restarted: new requests succeed again after ${(back / 1000).toFixed(1)} s`);
    expect(back).toBeGreaterThanOrEqual(0);

    const [long, ...queued] = await Promise.all(inFlight);
    console.log(`queued before the crash: all finished ${((performance.now() - t0) / 1000).toFixed(1)} s after the restart`);
    expect(long!.status).toBe(200);
    expect(long!.body.equals(refLong.body)).toBe(true);
    for (const q of queued) {
      expect(q.status).toBe(200);
      expect(q.body.equals(refQueued.body)).toBe(true);
    }
    const after = await speech(SHORT);
    expect(after.body.equals(refShort.body)).toBe(true);
  });

  it('a Redis that stops answering (SIGSTOP: the socket stays open) costs a bounded 503, not a hang', async () => {
    redis.process.kill('SIGSTOP');
    try {
      const r = await speech(SHORT);
      console.log(`redis paused: 503 ${JSON.parse(r.body.toString()).error.code} after ${r.ms.toFixed(0)} ms`);
      expect(r.status).toBe(503);
      expect(JSON.parse(r.body.toString()).error.code).toBe('backend_unavailable');
      // Bounded by the producer's 3 s command timeout (plus a loaded machine's slack), not the 60 s queue timeout.
      expect(r.ms).toBeLessThan(PRODUCER_COMMAND_TIMEOUT_MS + 10_000);
    } finally {
      redis.process.kill('SIGCONT');
    }
    expect(await waitFor(async () => (await speech(SHORT)).status === 200, 15_000, 200)).toBeGreaterThanOrEqual(0);
  });

  it('a silently dropped connection (partition, no RST) is detected and replaced once the network heals', async () => {
    // A second API process whose Redis connections go through a proxy the test can cut; the worker is unaffected.
    const proxy = await startTcpProxy(redis.port);
    const api = await buildApp(loadApiConfig({ ...stack.env, REDIS_URL: proxy.url }), { logger: false });
    try {
      await api.ready();
      await api.directory.refresh();
      const post = () => api.inject({
        method: 'POST', url: '/v1/audio/speech', payload: { model: 'tts-1', voice: 'alloy', input: SHORT },
      });
      expect((await post()).statusCode).toBe(200);

      proxy.partition();
      const t0 = performance.now();
      const cut = await post();
      console.log(`partition: ${cut.statusCode} ${cut.json().error.code} after ${(performance.now() - t0).toFixed(0)} ms`);
      expect(cut.statusCode).toBe(503);
      expect(cut.json().error.code).toBe('backend_unavailable');

      await new Promise((r) => setTimeout(r, 6000)); // long enough for reconnects into the black hole to stick
      proxy.heal();
      const t1 = performance.now();
      const back = await waitFor(async () => (await post()).statusCode === 200, 30_000, 250);
      console.log(`partition healed: requests succeed again after ${(back / 1000).toFixed(1)} s`);
      expect(back).toBeGreaterThanOrEqual(0);
      expect(performance.now() - t1).toBeLessThan(20_000);
    } finally {
      await api.close();
      await proxy.close();
    }
  });
});
