import { spawn, type ChildProcess } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { liveWorkers, speechQueueName, workerConnectionName } from '@chorus/shared';
import { startStack, type Stack } from './helpers/stack.ts';
import { waitFor } from './helpers/processes.ts';
import { track } from './helpers/child-cleanup.ts';
import { jobsHeldBy } from '../bench/lib/victim.ts';

/*
 * Issue 4, "worker crash", and issue 12, "a worker's death costs a listener under 2 seconds": a worker SIGKILLed
 * mid-stream has its jobs handed back by the surviving worker, which regenerates the deterministic audio and skips
 * what was already published. The survivor sees the dead worker's Redis connections vanish (CLIENT LIST) and
 * releases its locks at once (apps/worker/src/failover), instead of waiting for lock expiry and stalled checks.
 *
 * Measured on the killed worker's OWN streams: the jobs it held when it died (read from their lock tokens while
 * it is stopped), not any stream that happens to have chunks on both sides of the kill time (a survivor's stream
 * would pass that, whatever the failover does).
 */

const FORMATS = ['mp3', 'flac', 'wav', 'aac', 'opus', 'pcm'] as const;
const REQUESTS = 12;
/**
 * Locks far longer than the shipped 6 s, so that recovery by lock expiry cannot pass for the failover: it could
 * resume no stream before 30 s (the lock is renewed every 30 s and lives 60 s).
 */
const LOCK_ENV = { LOCK_DURATION_MS: '60000', STALLED_INTERVAL_MS: '30000' };
/**
 * The longest gap allowed in a killed worker's stream. The target is 2 s on a quiet machine, judged by
 * bench/failover.ts (docs/benchmarks.md). The gap is detection (~0.5 s under load) plus regenerating the audio
 * the stream had already sent, which is CPU work: at load average 11.6 on 2 cores an aac stream took 9.5 s, at
 * load 20 a wav stream 4.5 s. 20 s holds at the loads this shared machine sees and still tells a working failover
 * from lock expiry, which cannot resume a stream before 30 s with these locks (the test of a peer that came back
 * measured 83 s without the fix).
 */
const MAX_GAP_MS = 20_000;

function text(i: number): string {
  const words = ['river', 'lantern', 'orchard', 'signal', 'harbor', 'meadow', 'engine', 'comet'];
  return Array.from({ length: 14 }, (_, s) =>
    `Request ${i} sentence ${s + 1} mentions the ${words[(i + s) % words.length]} and keeps going for a while.`,
  ).join(' ');
}

interface Timed {
  status: number;
  jobId: string | null;
  body: Buffer;
  /** Arrival time (performance.now()) of each chunk. */
  at: number[];
}

/** Starts request `i`; `live` sees its job id and chunk times while it streams. */
function streamRequest(baseUrl: string, i: number, live?: Map<string, Timed>): Promise<Timed> {
  return (async () => {
    const res = await fetch(`${baseUrl}/v1/audio/speech`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tts-1', voice: 'alloy', input: text(i), response_format: FORMATS[i % FORMATS.length] }),
    });
    const parts: Buffer[] = [];
    const timed: Timed = { status: res.status, jobId: res.headers.get('x-job-id'), body: Buffer.alloc(0), at: [] };
    if (timed.jobId) live?.set(timed.jobId, timed);
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      parts.push(Buffer.from(chunk));
      timed.at.push(performance.now());
    }
    timed.body = Buffer.concat(parts);
    return timed;
  })();
}

function maxGap(at: number[]): number {
  let g = 0;
  for (let i = 1; i < at.length; i++) g = Math.max(g, at[i]! - at[i - 1]!);
  return g;
}

/**
 * Two workers with the long locks above, started and stopped around the enclosing describe. This measures crash
 * recovery, not admission: on a loaded machine the last of the long jobs can wait past the default QUEUE_TIMEOUT_S,
 * so the queue timeout is out of the way. Two slots per worker (not the per-core default), so a victim fills all of
 * its slots with the streams a test starts before the kill.
 */
function crashStack(): () => Stack {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({
      redisUrl: inject('redisUrl'), workers: 2, workerEnv: { ...LOCK_ENV, WORKER_CONCURRENCY: '2' }, apiEnv: { QUEUE_TIMEOUT_S: '300' },
    });
  });
  afterAll(async () => {
    await stack?.stop();
  });
  return () => stack;
}

describe('worker SIGKILL mid-stream (2 workers, 12 concurrent streams)', () => {
  const stackOf = crashStack();

  it('each of the killed worker\'s streams completes byte-identical, with no gap over the bound', async () => {
    const stack = stackOf();
    const live = new Map<string, Timed>();
    const runs = Array.from({ length: REQUESTS }, (_, i) => streamRequest(stack.baseUrl, i, live));
    const victim = stack.workers[0]!;
    const pid = victim.process.pid!;
    const queue = speechQueueName('espeak');
    const slots = (await liveWorkers(stack.redis, stack.keys)).find((w) => w.pid === pid)!.concurrency;
    // Kill once the victim holds all its slots and every one of those clients has audio: mid-stream.
    const midStream = (ids: string[]) => ids.length >= slots && ids.every((id) => (live.get(id)?.at.length ?? 0) > 0);
    let held: string[] = [];
    let killAt = 0;
    for (;;) {
      expect(await waitFor(async () => midStream(await jobsHeldBy(stack.redis as Redis, stack.keys, pid, [queue])), 60_000, 10))
        .toBeGreaterThanOrEqual(0);
      // Stopped, it keeps its connections and locks and takes nothing new: the snapshot is exactly what dies.
      victim.process.kill('SIGSTOP');
      killAt = performance.now();
      held = await jobsHeldBy(stack.redis as Redis, stack.keys, pid, [queue]);
      if (midStream(held)) break;
      // It finished a job and took the next between the look and the stop: let it run and look again.
      victim.process.kill('SIGCONT');
    }
    victim.process.kill('SIGKILL');
    const results = await Promise.all(runs);
    for (const r of results) expect(r.status).toBe(200);

    expect(held.length).toBe(slots);
    const outcomes = [];
    for (const jobId of held) {
      const i = results.findIndex((r) => r.jobId === jobId);
      const r = results[i]!;
      // Reference: the same request again, on the survivor, with nothing killed.
      const ref = await streamRequest(stack.baseUrl, i);
      expect(ref.status).toBe(200);
      expect(r.body.length, `request ${i} length`).toBe(ref.body.length);
      expect(r.body.equals(ref.body), `request ${i} bytes`).toBe(true);
      const before = r.at.filter((t) => t < killAt);
      const after = r.at.filter((t) => t >= killAt);
      // It really was cut mid-stream, and a second attempt finished it.
      expect(before.length, `request ${i} chunks before the kill`).toBeGreaterThan(0);
      expect(after.length, `request ${i} chunks after the kill`).toBeGreaterThan(0);
      expect((await stack.queue().getJob(jobId))!.attemptsStarted).toBe(2);
      // The silence the kill caused: the longest gap ending after it (bytes already relayed still arrive just after).
      const pauseMs = maxGap([before.at(-1)!, ...after]);
      outcomes.push({ i, format: FORMATS[i % FORMATS.length], pauseMs, maxGapMs: maxGap(r.at) });
    }
    // No job of the survivor was restarted (a failover that took a live worker for dead would restart them).
    for (const r of results) {
      if (held.includes(r.jobId!)) continue;
      const job = await stack.queue().getJob(r.jobId!);
      expect(job!.attemptsStarted, `survivor job ${r.jobId}`).toBe(1);
    }
    expect(stack.workers[1]!.output()).toContain('resuming a stream left by an earlier attempt');
    console.log(`worker SIGKILL (load ${loadavg()[0]!.toFixed(1)}): the killed worker's ${outcomes.length} streams ` +
      outcomes.map((o) => `#${o.i} ${o.format}: gap after the kill ${o.pauseMs.toFixed(0)} ms, longest gap ${o.maxGapMs.toFixed(0)} ms`).join('; ') +
      ` (lock 60 s: expiry could resume none before 30 s); all byte-identical to a reference run`);
    // On a failure, the survivor's account of the failover says which step was late.
    const failoverLog = stack.workers[1]!.output().split('\n')
      .filter((l) => /handing|handed back|stalled|resuming|peer watch|CLIENT LIST|rescue/.test(l)).join('\n');
    for (const o of outcomes) {
      expect(o.maxGapMs, `request ${o.i} longest gap; survivor's failover log:\n${failoverLog}`).toBeLessThan(MAX_GAP_MS);
    }
  }, 150_000); // room for a broken failover to be seen failing (lock expiry) instead of timing out
});

describe('a worker whose connections dropped and came back, then died', () => {
  const stackOf = crashStack();

  // The survivor declares a peer dead once when all its connections vanish. A peer that reconnects (Redis dropped
  // its clients, a network blip) must be watched again: its real death later is handed back like any other, not
  // left to lock expiry (30 s at least with these locks).
  it('its streams are handed back at once, not after lock expiry', async () => {
    const stack = stackOf();
    const [victim, survivor] = stack.workers as [typeof stack.workers[0], typeof stack.workers[0]];
    const info = (await liveWorkers(stack.redis, stack.keys)).find((w) => w.pid === victim.process.pid)!;
    const name = workerConnectionName(stack.prefix, info.id);
    // Keep closing its connections (it reconnects within milliseconds) until the survivor has declared it dead.
    expect(await waitFor(async () => {
      const ids = [...(await stack.redis.client('LIST') as string).matchAll(/^id=(\d+) .* name=(\S+)/gm)]
        .filter((m) => m[2] === name).map((m) => m[1]!);
      for (const id of ids) await stack.redis.client('KILL', 'ID', id).catch(() => undefined);
      return survivor.output().includes('handing its jobs back');
    }, 30_000, 5)).toBeGreaterThanOrEqual(0);
    expect(await waitFor(() => survivor.output().includes('watching it again'), 30_000, 50)).toBeGreaterThanOrEqual(0);

    const live = new Map<string, Timed>();
    const runs = Array.from({ length: 6 }, (_, i) => streamRequest(stack.baseUrl, i, live));
    const queue = speechQueueName('espeak');
    const pid = victim.process.pid!;
    expect(await waitFor(async () => {
      const held = await jobsHeldBy(stack.redis as Redis, stack.keys, pid, [queue]);
      return held.length > 0 && held.every((id) => (live.get(id)?.at.length ?? 0) > 0);
    }, 60_000, 10)).toBeGreaterThanOrEqual(0);
    victim.process.kill('SIGSTOP');
    const held = await jobsHeldBy(stack.redis as Redis, stack.keys, pid, [queue]);
    victim.process.kill('SIGKILL');
    const results = await Promise.all(runs);
    expect(held.length).toBeGreaterThan(0);
    for (const jobId of held) {
      const r = results.find((x) => x.jobId === jobId)!;
      expect(r.status).toBe(200);
      expect((await stack.queue().getJob(jobId))!.attemptsStarted).toBe(2);
      expect(maxGap(r.at), `job ${jobId} longest gap`).toBeLessThan(MAX_GAP_MS);
    }
  }, 150_000);
});

describe('busy workers are not taken for dead ones', () => {
  let stack: Stack;
  const hogs: ChildProcess[] = [];
  beforeAll(async () => {
    stack = await startStack({ redisUrl: inject('redisUrl'), workers: 2, apiEnv: { QUEUE_TIMEOUT_S: '300' } });
  });
  afterAll(async () => {
    for (const h of hogs) h.kill('SIGKILL');
    await stack?.stop();
  });

  it('with a CPU hog per core beside them, no job is restarted and no failover happens', async () => {
    for (let i = 0; i < cpus().length; i++) {
      hogs.push(track(spawn(process.execPath, ['-e', 'for(;;){}'], { stdio: 'ignore' })));
    }
    const results = await Promise.all(Array.from({ length: REQUESTS }, (_, i) => streamRequest(stack.baseUrl, i)));
    for (const h of hogs) h.kill('SIGKILL');
    for (const r of results) {
      expect(r.status).toBe(200);
      const job = await stack.queue().getJob(r.jobId!);
      expect(job!.attemptsStarted, `job ${r.jobId}`).toBe(1);
      expect(job!.stalledCounter, `job ${r.jobId}`).toBe(0);
    }
    for (const w of stack.workers) expect(w.output()).not.toContain('handing its jobs back');
  }, 240_000); // 12 long streams sharing two cores with two CPU hogs: minutes on a loaded machine, not a failure
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
