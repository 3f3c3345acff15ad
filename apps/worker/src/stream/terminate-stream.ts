import type { RedisClient } from '@chorus/shared';
import type { Job } from 'bullmq';
import { ERRORS } from '@chorus/shared';
import { readStreamPosition, StreamWriter } from './stream-writer.ts';

/** BullMQ's own reasons for failing a job without running the processor (maxStartedAttempts, maxStalledCount). */
const CRASH_LIMIT = /started more than allowable limit|stalled more than allowable limit/;

/**
 * Writes a terminal `error` record on a failed job's stream unless it already has one. The processor writes its
 * own before failing; this covers failures it never saw: a job that kept crashing workers and that BullMQ fails
 * on its next pickup, or a payload too broken to parse. Without it the client would wait for a record that
 * never comes.
 */
export async function terminateStream(redis: RedisClient, job: Job, err: Error, ttlS: number): Promise<boolean> {
  const key = (job.data as { streamKey?: unknown } | undefined)?.streamKey;
  if (typeof key !== 'string' || key.length === 0) return false;
  const position = await readStreamPosition(redis, key);
  if (position.finished) return false;
  const crashed = CRASH_LIMIT.test(err.message);
  const message = crashed
    ? `Synthesis stopped: this request kept crashing workers (${Math.max(1, job.attemptsStarted - 1)} times).`
    : 'Synthesis failed.';
  await new StreamWriter(redis, key, ttlS, position).fail(ERRORS.TTS_ERR_ENGINE_FAILED.code, message);
  return true;
}
