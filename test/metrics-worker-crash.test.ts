import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startStack, type Stack, type WorkerProcess } from './helpers/stack.ts';
import { freePort } from './helpers/redis-server.ts';
import { scrape, total } from './helpers/prom-text.ts';

/*
 * `chorus_jobs_total{status="retried"|"stalled"}`: a worker SIGKILLed mid-job loses its lock; the surviving worker's
 * stall check finds the job (stalled) and restarts it (retried), then completes it. Each is counted once, by the
 * survivor, which is the only place that can see it.
 */

let stack: Stack;
const workers: { proc: WorkerProcess; url: string }[] = [];

beforeAll(async () => {
  stack = await startStack({ redisUrl: inject('redisUrl'), workers: 0 });
  for (let i = 0; i < 2; i++) {
    const port = await freePort();
    const proc = await stack.addWorker({
      METRICS_PORT: String(port), METRICS_HOST: '127.0.0.1', WORKER_CONCURRENCY: '1',
      // Short lock so recovery takes ~2 s rather than the default ~6-9 s.
      LOCK_DURATION_MS: '1500', STALLED_INTERVAL_MS: '500',
    });
    workers.push({ proc, url: `http://127.0.0.1:${port}/metrics` });
  }
  await stack.waitForWorkers(2);
});
afterAll(async () => {
  await stack?.stop();
});

async function until<T>(probe: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined as T);
    if ((v !== undefined && ok(v)) || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('worker crash accounting', () => {
  it('the survivor counts the job as stalled, then retried, then completed', async () => {
    // Long and slow (speed 0.25 through atempo, mp3): seconds of work, so the kill lands mid-job.
    const res = await fetch(`${stack.baseUrl}/v1/audio/speech`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tts-1', voice: 'alloy', input: 'Crash in the middle of this sentence. '.repeat(40), speed: 0.25 }),
    });
    expect(res.status).toBe(200);
    const body = (async () => {
      let n = 0;
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) n += chunk.length;
      return n;
    })();

    const busy = await Promise.all(workers.map(async (w) => total(await scrape(w.url), 'chorus_worker_busy')));
    const victim = busy.indexOf(1);
    expect(victim).toBeGreaterThanOrEqual(0);
    const survivor = workers[1 - victim]!;
    await workers[victim]!.proc.stop('SIGKILL');

    const m = await until(() => scrape(survivor.url), (x) => total(x, 'chorus_jobs_total', { status: 'completed' }) === 1, 30_000);
    expect(total(m, 'chorus_jobs_total', { status: 'completed', engine: 'espeak' })).toBe(1);
    expect(total(m, 'chorus_jobs_total', { status: 'retried', engine: 'espeak' })).toBe(1);
    expect(total(m, 'chorus_jobs_total', { status: 'stalled', engine: 'espeak' })).toBe(1);
    expect(total(m, 'chorus_jobs_total', { status: 'failed' })).toBe(0);
    // The restart's queue wait would include the crashed attempt: it is not observed.
    expect(total(m, 'chorus_queue_wait_seconds_count')).toBe(0);
    expect(await body).toBeGreaterThan(0);
  });
});
