import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { decodeRecord } from '@chorus/shared/stream-protocol';
import { startStack, type Stack } from './helpers/stack.ts';
import { descendantsNamed, waitFor } from './helpers/processes.ts';

/*
 * Issue 4, "disconnect cancels": a client that goes away frees its worker within 1 s. A waiting job is removed;
 * an active one is aborted, its espeak-ng and ffmpeg processes killed. Asserted on the process table.
 */

// ~4,000 characters at speed 0.25: espeak-ng at its slowest plus an atempo ffmpeg stage and an mp3 encoder,
// several seconds of work, so the job is certainly still running when the client leaves.
const LONG = Array.from({ length: 40 }, (_, i) => `Sentence number ${i + 1} keeps this worker busy for a while longer.`).join(' ');
const CANCEL_BOUND_MS = 1000;

let stack: Stack;
let workerPid: number;

beforeAll(async () => {
  // One job at a time, so a second request is certainly waiting in the queue.
  stack = await startStack({ redisUrl: inject('redisUrl'), workerEnv: { WORKER_CONCURRENCY: '1', ENCODER_POOL_SIZE: '1' } });
  workerPid = stack.workers[0]!.process.pid!;
});
afterAll(async () => {
  await stack?.stop();
});

const ffmpegPids = () => new Set(descendantsNamed(workerPid, 'ffmpeg').map((p) => p.pid));
const espeaks = () => descendantsNamed(workerPid, 'espeak-ng');

function startRequest(input: string) {
  const controller = new AbortController();
  const response = fetch(`${stack.baseUrl}/v1/audio/speech`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'tts-1', voice: 'alloy', input, response_format: 'mp3', speed: 0.25 }),
    signal: controller.signal,
  });
  response.catch(() => {});
  return { controller, response };
}

/** The terminal record on a job's stream, if any. */
async function terminalCode(jobId: string): Promise<string | undefined> {
  const job = await stack.queue().getJob(jobId);
  const key = (job?.data as { streamKey?: string } | undefined)?.streamKey;
  if (!key) return undefined;
  const [last] = await stack.redis.xrevrangeBuffer(key, '+', '-', 'COUNT', 1);
  if (!last) return undefined;
  const record = decodeRecord(last[1]);
  return record.type === 'error' ? record.code : record.type;
}

describe('client disconnect', () => {
  it('removes a waiting job and aborts an active one within 1 s, leaving no engine or encoder process', async () => {
    // Steady state: the warm encoder pool (one idle ffmpeg per container) and no espeak-ng. (fluent-ffmpeg's
    // start-up capability probes are short-lived ffmpeg processes too: wait until the set holds still.)
    let idlePool = ffmpegPids();
    expect(await waitFor(async () => {
      await new Promise((r) => setTimeout(r, 500));
      const now = ffmpegPids();
      const stable = now.size === 4 && [...now].every((pid) => idlePool.has(pid));
      idlePool = now;
      return stable;
    }, 15_000)).toBeGreaterThanOrEqual(0);
    expect(espeaks()).toHaveLength(0);

    // A: active, streaming.
    const a = startRequest(LONG);
    const resA = await a.response;
    expect(resA.status).toBe(200);
    const jobA = resA.headers.get('x-job-id')!;
    const reader = resA.body!.getReader();
    expect((await reader.read()).value?.length).toBeGreaterThan(0);
    // Busy now: an atempo ffmpeg and the pool's refill besides the encoder taken from the pool.
    expect(ffmpegPids().size).toBeGreaterThan(idlePool.size);

    // B: waits behind A.
    const b = startRequest(LONG);
    let jobB: string | undefined;
    expect(await waitFor(async () => {
      const waiting = await stack.queue().getJobs(['prioritized', 'waiting']);
      jobB = waiting[0]?.id;
      return jobB !== undefined;
    }, 5000)).toBeGreaterThanOrEqual(0);

    b.controller.abort();
    const removedMs = await waitFor(async () => (await stack.queue().getJob(jobB!)) === undefined, 3000);
    expect(removedMs).toBeGreaterThanOrEqual(0);
    expect(removedMs).toBeLessThan(CANCEL_BOUND_MS);
    expect(await stack.queue().getJobState(jobA)).toBe('active'); // B's cancel did not touch A

    a.controller.abort();
    const t0 = performance.now();
    const cancelledMs = await waitFor(async () => (await terminalCode(jobA)) === 'cancelled', 3000);
    // Back to the idle pool: same number of ffmpeg processes, and the pooled encoder A used is gone.
    const freedMs = await waitFor(() => {
      const now = ffmpegPids();
      const survivors = [...idlePool].filter((pid) => now.has(pid));
      return espeaks().length === 0 && now.size === idlePool.size && survivors.length === idlePool.size - 1;
    }, 3000);
    const totalMs = performance.now() - t0;
    console.log(`cancel: waiting job removed in ${removedMs.toFixed(0)} ms; active job cancelled in ` +
      `${cancelledMs.toFixed(0)} ms, processes freed in ${freedMs.toFixed(0)} ms`);
    expect(cancelledMs).toBeGreaterThanOrEqual(0);
    expect(freedMs).toBeGreaterThanOrEqual(0);
    expect(totalMs).toBeLessThan(CANCEL_BOUND_MS);
    expect(await stack.queue().getJobState(jobA)).toBe('failed');

    // The worker is free again: a new request is served at once.
    const res = await stack.client.audio.speech.create({ model: 'tts-1', voice: 'alloy', input: 'Still here.' });
    expect(Buffer.from(await res.arrayBuffer()).length).toBeGreaterThan(1000);
  });
});
