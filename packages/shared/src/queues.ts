import type { JobsOptions } from 'bullmq';
import { TtsJob } from './schemas/job.ts';

/*
 * Queue and job names. Renaming a value orphans the jobs already queued under the old name: add, don't rename.
 * Two queues per engine: `tts-<engine>` for realtime requests and `tts-<engine>-batch` for batch items, so a
 * worker pulls only what it can synthesize, the API can refuse a model that no live worker serves, and a batch
 * backlog never holds the worker slots realtime requests need (each lane has its own concurrency).
 */
export const QUEUE_PREFIX = 'tts-';

/** Which of an engine's two queues a job goes to; the job payload's `priority` names it. */
export type Lane = 'realtime' | 'batch';
export const LANES: readonly Lane[] = ['realtime', 'batch'];

export function speechQueueName(engine: string, lane: Lane = 'realtime'): string {
  if (!/^[a-z0-9-]+$/.test(engine)) throw new Error(`bad engine id ${engine}`);
  return lane === 'realtime' ? `${QUEUE_PREFIX}${engine}` : `${QUEUE_PREFIX}${engine}-batch`;
}

export const JOB_NAMES = {
  synthesize: 'synthesize',
} as const;
export type JobName = (typeof JOB_NAMES)[keyof typeof JOB_NAMES];

/** BullMQ priorities (lower runs first), kept within each lane. */
export const PRIORITY = { realtime: 1, batch: 100 } as const;

/** Each job name's payload schema and queue options; the API enqueues from it, the worker checks it at start. */
export const JOB_CATALOG = {
  [JOB_NAMES.synthesize]: {
    schema: TtsJob,
    options: {
      // Transient engine failures (a crashed engine process, a failed inference call, a dead encoder, a Redis
      // error) are retried and resume the stream at its byte offset; the last attempt reports on the stream.
      // Permanent ones (bad input, cancel, audio limit) fail at once. Crashed workers are covered by stall
      // recovery, which does not consume attempts.
      attempts: 3,
      backoff: { type: 'exponential', delay: 250 },
      removeOnComplete: { age: 3600, count: 10_000 },
      removeOnFail: { age: 24 * 3600, count: 10_000 },
    } satisfies JobsOptions,
  },
} as const;
