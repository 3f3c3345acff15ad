import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { randomUUID } from 'node:crypto';
import type { Job } from 'bullmq';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, afterEach, describe, expect, inject, it } from 'vitest';
import { decodeRecord, type TtsJobInput } from '@chorus/shared';
// The suite's Redis (inject('redisUrl')): its type is declared with the global setup that provides it.
import type {} from '../../../../test/helpers/global-setup.ts';
import type { EncoderPool } from '../encoders/encoder-pool.ts';
import type { WorkerMetrics } from '../metrics.ts';
import { FirstAudioGate, MAX_FIRST_AUDIO_MS, MIN_AHEAD_S, REFILL_MAX_DELAY_MS } from './first-audio-gate.ts';
import { JobPriority } from './job-priority.ts';
import { createSynthesizeProcessor } from './synthesize.ts';

/** The process's scheduler state from /proc: 'T' = stopped, 'S'/'R' = running or sleeping. */
const state = (pid: number) => readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0];
const stopped = (pid: number) => state(pid) === 'T';

/** Waits (up to 10 s: a loaded machine delivers signals late) until the process is stopped, or running. */
async function becomes(pid: number, wantStopped: boolean): Promise<boolean> {
  for (const t0 = performance.now(); performance.now() - t0 < 10_000; await sleep(10)) {
    if (stopped(pid) === wantStopped) return true;
  }
  return false;
}

const children: ChildProcess[] = [];
/** A real child process adopted by a job's priority, as the engine and encoder are. */
function jobWithProcess(): { priority: JobPriority; pid: number } {
  const child = spawn('sleep', ['60'], { stdio: 'ignore' });
  children.push(child);
  const priority = new JobPriority();
  priority.adopt(child.pid);
  return { priority, pid: child.pid! };
}
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

describe('FirstAudioGate (real processes, SIGSTOP/SIGCONT)', () => {
  it('stops a stream well ahead while a job waits for first audio, and continues it once that job has audio', async () => {
    const gate = new FirstAudioGate();
    const streaming = jobWithProcess();
    const leave = gate.streaming(streaming.priority, () => MIN_AHEAD_S + 10);
    await sleep(50);
    expect(stopped(streaming.pid)).toBe(false); // nobody waits: it runs

    const newcomer = jobWithProcess();
    const firstAudio = gate.waitForFirstAudio(newcomer.priority);
    expect(await becomes(streaming.pid, true)).toBe(true);
    expect(stopped(newcomer.pid)).toBe(false); // the waiting job itself is never stopped
    expect(gate.pausedCount).toBe(1);

    firstAudio();
    expect(await becomes(streaming.pid, false)).toBe(true);
    leave();
    gate.close();
  });

  it('keeps streams stopped for the grace after a first record, without stopping the job whose record it is', async () => {
    const gate = new FirstAudioGate();
    const streaming = jobWithProcess();
    gate.streaming(streaming.priority, () => MIN_AHEAD_S + 10);
    const newcomer = jobWithProcess();
    const firstAudio = gate.waitForFirstAudio(newcomer.priority);
    expect(await becomes(streaming.pid, true)).toBe(true);
    // Its first record is out: it streams from now on, far ahead, but is still first in line for the grace.
    const graceMs = 2_000; // FIRST_RECORD_GRACE_MS is 15; a long one keeps the check below clear of a busy machine
    firstAudio(graceMs);
    gate.streaming(newcomer.priority, () => MIN_AHEAD_S + 10);
    const t0 = performance.now();
    await sleep(200);
    if (performance.now() - t0 < graceMs - 500) {
      expect(stopped(streaming.pid)).toBe(true);
      expect(stopped(newcomer.pid)).toBe(false);
    }
    expect(await becomes(streaming.pid, false)).toBe(true);
    expect(stopped(newcomer.pid)).toBe(false);
    gate.close();
  });

  it('never stops a stream whose listener is short of audio, and continues one whose lead runs out', async () => {
    const gate = new FirstAudioGate();
    const short = jobWithProcess();
    const ending = jobWithProcess();
    let lead = MIN_AHEAD_S + 1;
    gate.streaming(short.priority, () => MIN_AHEAD_S / 2);
    gate.streaming(ending.priority, () => lead);
    gate.waitForFirstAudio(jobWithProcess().priority);
    expect(await becomes(ending.pid, true)).toBe(true);
    expect(stopped(short.pid)).toBe(false);
    lead = MIN_AHEAD_S - 0.5; // its listener played on: the gate looks again on its own
    expect(await becomes(ending.pid, false)).toBe(true);
    expect(stopped(short.pid)).toBe(false);
    gate.close();
  });

  it('stops a batch item (no listener) and a process adopted while stopped; a job that ends is continued', async () => {
    const gate = new FirstAudioGate();
    const batch = jobWithProcess();
    const leave = gate.streaming(batch.priority, () => Infinity);
    gate.waitForFirstAudio(jobWithProcess().priority);
    expect(await becomes(batch.pid, true)).toBe(true);
    const late = spawn('sleep', ['60'], { stdio: 'ignore' });
    children.push(late);
    batch.priority.adopt(late.pid);
    expect(await becomes(late.pid!, true)).toBe(true);
    leave(); // the job ends (e.g. cancelled): its processes must not stay stopped
    expect(await becomes(batch.pid, false)).toBe(true);
    expect(await becomes(late.pid!, false)).toBe(true);
    gate.close();
  });

  it('holds nothing for a job that waits longer than its limit (an engine that never starts)', async () => {
    expect(MAX_FIRST_AUDIO_MS).toBeLessThanOrEqual(5_000);
    const gate = new FirstAudioGate({ maxFirstAudioMs: 500 });
    const streaming = jobWithProcess();
    gate.streaming(streaming.priority, () => Infinity);
    gate.waitForFirstAudio(jobWithProcess().priority);
    expect(await becomes(streaming.pid, true)).toBe(true);
    expect(await becomes(streaming.pid, false)).toBe(true); // on its own, once the 500 ms are up
    gate.close();
  });

  it('close() continues every stopped job (worker shutdown)', async () => {
    const gate = new FirstAudioGate();
    const streaming = jobWithProcess();
    gate.streaming(streaming.priority, () => Infinity);
    gate.waitForFirstAudio(jobWithProcess().priority);
    expect(await becomes(streaming.pid, true)).toBe(true);
    gate.close();
    expect(await becomes(streaming.pid, false)).toBe(true);
  });

  it('holds a pool refill (a fork) while a job waits for first audio, and runs it once none waits or after its limit', async () => {
    const gate = new FirstAudioGate();
    let ran = 0;
    gate.whenIdle(() => ran++);
    await sleep(5);
    expect(ran).toBe(1); // nobody waits: next turn

    const done = gate.waitForFirstAudio(new JobPriority());
    gate.whenIdle(() => ran++);
    await sleep(5);
    expect(ran).toBe(1); // held
    done();
    await sleep(5);
    expect(ran).toBe(2);

    gate.waitForFirstAudio(new JobPriority()); // never gets audio
    const t0 = performance.now();
    const late = new Promise<number>((resolve) => gate.whenIdle(() => resolve(performance.now() - t0)));
    expect(await late).toBeGreaterThanOrEqual(REFILL_MAX_DELAY_MS - 5);
    gate.close();
  });

  it('counts a realtime job as waiting from its first step: streams are stopped while it reads its stream position', async () => {
    const redis = new Redis(inject('redisUrl'));
    afterAll(() => redis.quit());
    const gate = new FirstAudioGate();
    const streaming = jobWithProcess();
    gate.streaming(streaming.priority, () => MIN_AHEAD_S + 10);
    // The job's cancel-flag read, answered when the test says: the job is held at its Redis reads, before any engine.
    let answerCancelled = (_: boolean) => {};
    const synthesize = createSynthesizeProcessor({
      redis, engines: new Map(), streamTtlS: 60, logger: pino({ level: 'silent' }), gate,
      isCancelled: () => new Promise<boolean>((resolve) => (answerCancelled = resolve)),
      // Not reached: the job ends at the engine lookup (no engine is served here).
      encoders: {} as EncoderPool, metrics: {} as WorkerMetrics,
    });
    const streamKey = `test:first-audio-gate:${randomUUID()}`;
    const data: TtsJobInput = {
      v: 1, requestId: 'req-gate', streamKey, engine: 'espeak', model: 'tts-1', text: 'Hello there.',
      speaker: { id: 'espeak:en', name: 'en', engine: 'espeak', voice: 'en', language: 'en' },
      format: 'mp3', speed: 1, enqueuedAt: Date.now(),
    };
    const job = { id: 'job-gate', data, processedOn: Date.now(), timestamp: Date.now(), attemptsStarted: 1, attemptsMade: 0, opts: {} } as unknown as Job;
    const run = synthesize(job);
    run.catch(() => {});
    expect(await becomes(streaming.pid, true)).toBe(true);
    answerCancelled(false);
    await expect(run).rejects.toThrow('engine espeak not served here');
    expect(await becomes(streaming.pid, false)).toBe(true); // the job left the gate when it ended
    const records = (await redis.xrangeBuffer(streamKey, '-', '+')).map(([, fields]) => decodeRecord(fields));
    expect(records).toMatchObject([{ type: 'error', code: 'model_unavailable' }]);
    await redis.del(streamKey);
    gate.close();
  });
});
