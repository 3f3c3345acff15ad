import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startStack, type Stack } from './helpers/stack.ts';
import { waitFor } from './helpers/processes.ts';

/*
 * Issue 4, "worker crash": a worker SIGKILLed mid-stream has its jobs recovered by another worker (BullMQ stall
 * recovery), which regenerates the deterministic audio and skips what was already published: every client's
 * bytes equal a clean run's. A job that keeps crashing workers fails after MAX_STARTED_ATTEMPTS, and its client
 * gets an error rather than a hang.
 */

const FORMATS = ['mp3', 'flac', 'wav', 'aac', 'opus', 'pcm'] as const;
const REQUESTS = 20;

function text(i: number): string {
  const words = ['river', 'lantern', 'orchard', 'signal', 'harbor', 'meadow', 'engine', 'comet'];
  return Array.from({ length: 14 }, (_, s) =>
    `Request ${i} sentence ${s + 1} mentions the ${words[(i + s) % words.length]} and keeps going for a while.`,
  ).join(' ');
}

interface Timed {
  status: number;
  body: Buffer;
  /** Arrival time (performance.now()) of each chunk. */
  at: number[];
}

async function streamRequest(baseUrl: string, i: number, onFirstChunk?: () => void): Promise<Timed> {
  const res = await fetch(`${baseUrl}/v1/audio/speech`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'tts-1', voice: 'alloy', input: text(i), response_format: FORMATS[i % FORMATS.length] }),
  });
  const parts: Buffer[] = [];
  const at: number[] = [];
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    if (parts.length === 0) onFirstChunk?.();
    parts.push(Buffer.from(chunk));
    at.push(performance.now());
  }
  return { status: res.status, body: Buffer.concat(parts), at };
}

describe('worker SIGKILL mid-stream (2 workers, 20 concurrent streams)', () => {
  let stack: Stack;
  beforeAll(async () => {
    // Lock and stall settings are the shipped defaults (LOCK_DURATION_MS 6000, STALLED_INTERVAL_MS 3000). This
    // measures crash recovery, not admission: on a loaded machine the last of 20 long jobs on 4 slots can wait past
    // the default QUEUE_TIMEOUT_S (a 503 in the clean run at load 12), so the queue timeout is out of the way.
    // Two slots per worker (not the per-core default), as the kill condition below counts them.
    stack = await startStack({ redisUrl: inject('redisUrl'), workers: 2, apiEnv: { QUEUE_TIMEOUT_S: '300' }, workerEnv: { WORKER_CONCURRENCY: '2' } });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('every client gets exactly the bytes of a clean run', async () => {
    const clean = await Promise.all(Array.from({ length: REQUESTS }, (_, i) => streamRequest(stack.baseUrl, i)));
    for (const r of clean) expect(r.status).toBe(200);

    let streaming = 0;
    const runs = Array.from({ length: REQUESTS }, (_, i) => streamRequest(stack.baseUrl, i, () => (streaming += 1)));
    // Kill once both workers are streaming: all four slots busy and four clients with bytes (on a loaded machine a
    // job can be active for a while before its first chunk; killing then resumes nothing mid-stream).
    let killAt = 0;
    const victim = stack.workers[0]!;
    const started = Date.now();
    while (!killAt) {
      const active = await stack.queue().getActiveCount();
      if ((active >= 4 && streaming >= 4) || Date.now() - started > 30_000) {
        await new Promise((r) => setTimeout(r, 150)); // into the middle of the first streams
        killAt = performance.now();
        victim.process.kill('SIGKILL');
      } else {
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    const results = await Promise.all(runs);

    for (let i = 0; i < REQUESTS; i++) {
      expect(results[i]!.status, `request ${i}`).toBe(200);
      expect(results[i]!.body.length, `request ${i} length`).toBe(clean[i]!.body.length);
      expect(results[i]!.body.equals(clean[i]!.body), `request ${i} bytes`).toBe(true);
    }
    // Streams that had bytes before the kill and more after it: their jobs were resumed mid-stream.
    const resumedGaps = results
      .filter((r) => r.at.some((t) => t < killAt) && r.at.some((t) => t > killAt))
      .map((r) => r.at.find((t) => t > killAt)! - killAt);
    const survivor = stack.workers[1]!.output();
    expect(survivor).toContain('resuming a stream left by an earlier attempt');
    expect(resumedGaps.length).toBeGreaterThan(0);
    const recoveryS = Math.max(...resumedGaps) / 1000;
    console.log(`worker SIGKILL: ${resumedGaps.length} streams resumed mid-stream; longest pause ${recoveryS.toFixed(2)} s ` +
      `(LOCK_DURATION_MS 6000, STALLED_INTERVAL_MS 3000); all ${REQUESTS} byte-identical to the clean run`);
    // Recovery takes lockDuration .. lockDuration + 2 × stalledInterval, plus a loaded machine's slack.
    expect(recoveryS).toBeLessThan(16);
  });
});

describe('a job that keeps crashing workers', () => {
  let stack: Stack;
  const workerEnv = { LOCK_DURATION_MS: '1500', STALLED_INTERVAL_MS: '500', MAX_STARTED_ATTEMPTS: '2' };
  beforeAll(async () => {
    stack = await startStack({ redisUrl: inject('redisUrl'), workers: 1, workerEnv });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('fails after MAX_STARTED_ATTEMPTS starts and the client gets an error event, not a hang', async () => {
    const input = Array.from({ length: 40 }, (_, i) => `Poison sentence ${i + 1} takes its worker down.`).join(' ');
    const t0 = performance.now();
    const res = await fetch(`${stack.baseUrl}/v1/audio/speech`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tts-1', voice: 'alloy', input, speed: 0.25, stream_format: 'sse' }),
    });
    expect(res.status).toBe(200);
    const jobId = res.headers.get('x-job-id')!;
    const body = res.text();

    // Crash whichever worker holds the job, each time it starts it; a fresh worker takes over.
    for (let start = 1; start <= 2; start++) {
      expect(await waitFor(async () => {
        const job = await stack.queue().getJob(jobId);
        return (await job?.getState()) === 'active' && job!.attemptsStarted === start;
      }, 20_000)).toBeGreaterThanOrEqual(0);
      stack.workers.at(-1)!.process.kill('SIGKILL');
      await stack.addWorker();
    }

    const events = (await body).split('\n\n').filter(Boolean).map((e) => e.replace(/^data: /, ''));
    const elapsedS = (performance.now() - t0) / 1000;
    console.log(`poison job: client got its error after ${elapsedS.toFixed(1)} s`);
    expect(events.at(-1)).toBe('[DONE]');
    const error = JSON.parse(events.at(-2)!);
    expect(error).toMatchObject({ type: 'speech.audio.error', error: { code: 'engine_error', type: 'server_error' } });
    expect(error.error.message).toMatch(/crashing workers/);
    const job = await stack.queue().getJob(jobId);
    expect(await job!.getState()).toBe('failed');
    expect(job!.failedReason).toMatch(/more than allowable limit/);
    expect(elapsedS).toBeLessThan(40);
  });
});
