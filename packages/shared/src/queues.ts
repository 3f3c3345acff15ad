import type { JobsOptions } from 'bullmq';
import { TtsJob } from './schemas/job.ts';

/*
 * Queue and job names. Renaming a value orphans the jobs already queued under the old name: add, don't rename.
 * One queue per engine (`tts-<engine>`), so a worker pulls only what it can synthesize and the API can refuse a
 * model that no live worker serves.
 */
export const QUEUE_PREFIX = 'tts-';

export function speechQueueName(engine: string): string {
  if (!/^[a-z0-9-]+$/.test(engine)) throw new Error(`bad engine id ${engine}`);
  return `${QUEUE_PREFIX}${engine}`;
}

export const JOB_NAMES = {
  synthesize: 'synthesize',
} as const;
export type JobName = (typeof JOB_NAMES)[keyof typeof JOB_NAMES];

/** BullMQ priorities: lower runs first; batch items wait behind every realtime job. */
export const PRIORITY = { realtime: 1, batch: 100 } as const;

/** Each job name's payload schema and queue options; the API enqueues from it, the worker checks it at start. */
export const JOB_CATALOG = {
  [JOB_NAMES.synthesize]: {
    schema: TtsJob,
    options: {
      // Engine failures are reported on the stream and not retried (the client is already listening); crashed
      // workers are covered by stall recovery, which does not consume attempts.
      attempts: 1,
      removeOnComplete: { age: 3600, count: 10_000 },
      removeOnFail: { age: 24 * 3600, count: 10_000 },
    } satisfies JobsOptions,
  },
} as const;
