import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { decodeRecord, speechQueueName, TtsJob, type RestartPoint, type StreamRecord } from '@chorus/shared';
import { startStack, type Stack, type WorkerProcess } from './helpers/stack.ts';
import { waitFor } from './helpers/processes.ts';
import { jobsHeldBy } from '../bench/lib/victim.ts';

/*
 * Issue 12, "a worker's death costs a listener under 2 seconds": an mp3 stream is encoded in pieces cut in
 * pauses (apps/worker/src/encoders/piecewise-encoder.ts), and its records carry the latest restart point. A worker
 * that takes over a killed worker's stream re-encodes from there, not from the start of the file: re-encoding what
 * the stream had already sent was most of the silence a listener heard. Real workers, real espeak-ng and lame,
 * the official openai SDK as the client.
 */

const INPUT = Array.from(
  { length: 36 },
  (_, i) => `Sentence ${i + 1} of a long reading: the harbor lights come on one by one as the boats return.`,
).join(' ');

async function lastRecord(redis: Redis, key: string): Promise<StreamRecord | undefined> {
  const [entry] = await redis.xrevrangeBuffer(key, '+', '-', 'COUNT', 1);
  return entry ? decodeRecord(entry[1]) : undefined;
}

describe('a worker killed past a restart point of an mp3 stream', () => {
  let stack: Stack;
  beforeAll(async () => {
    // One slot each: the request's job is the only one its worker holds.
    stack = await startStack({ redisUrl: inject('redisUrl'), workers: 2, workerEnv: { WORKER_CONCURRENCY: '1' } });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('the survivor re-encodes from the last restart point, and the listener gets the same bytes', async () => {
    const redis = stack.redis as Redis;
    const response = await stack.client.audio.speech.create({ model: 'tts-1', voice: 'alloy', input: INPUT, response_format: 'mp3' });
    const jobId = response.headers.get('x-job-id')!;
    const body = response.arrayBuffer();
    const job = (await stack.queue().getJob(jobId))!;
    const streamKey = TtsJob.parse(job.data).streamKey!;

    // Stop the worker holding the job once its stream carries a restart point (the first piece is out).
    let restart: RestartPoint | undefined;
    const restartOnStream = async () => {
      const record = await lastRecord(redis, streamKey);
      restart = record?.type === 'audio' ? record.restart : undefined;
      return restart !== undefined;
    };
    expect(await waitFor(restartOnStream, 60_000, 5)).toBeGreaterThanOrEqual(0);
    const queue = speechQueueName('espeak');
    let victim: WorkerProcess | undefined;
    for (const w of stack.workers) {
      if ((await jobsHeldBy(redis, stack.keys, w.process.pid!, [queue])).includes(jobId)) victim = w;
    }
    expect(victim).toBeDefined();
    victim!.process.kill('SIGSTOP');
    const atKill = await lastRecord(redis, streamKey);
    // Mid-stream: the job had not finished when its worker stopped.
    expect(atKill?.type).toBe('audio');
    victim!.process.kill('SIGKILL');
    expect(restart!.bytes).toBeGreaterThan(0);

    const audio = Buffer.from(await body);
    const reference = Buffer.from(await (await stack.client.audio.speech.create({
      model: 'tts-1', voice: 'alloy', input: INPUT, response_format: 'mp3',
    })).arrayBuffer());
    expect(audio.length).toBe(reference.length);
    expect(audio.equals(reference)).toBe(true);
    expect((await stack.queue().getJob(jobId))!.attemptsStarted).toBe(2);

    // The survivor's resume: from a restart point at or after the one seen before the stop, not from byte 0.
    const survivor = stack.workers.find((w) => w !== victim)!;
    const resumed = survivor.output().split('\n').filter((l) => l.includes('resuming a stream')).map((l) => JSON.parse(l));
    expect(resumed).toHaveLength(1);
    expect(resumed[0].jobId).toBe(jobId);
    expect(resumed[0].restartBytes).toBeGreaterThanOrEqual(restart!.bytes);
    expect(resumed[0].restartBytes).toBeLessThanOrEqual(resumed[0].bytes);
  }, 120_000);
});
