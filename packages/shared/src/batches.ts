import type { RedisClient } from './redis.ts';
import type { Queue } from 'bullmq';
import type { RedisKeys } from './keys.ts';

/*
 * Batches (SPEC §2 Batch). A batch is a Redis hash (RedisKeys.batch); each item is a BullMQ job on its engine's
 * batch lane and records its outcome once in the batch's outcome hash. When the last outcome is in, a `finalize`
 * job on the control queue (processed by the workers) writes the output and error files: durable, and run once
 * per batch because its BullMQ job id is the batch id.
 */

export type BatchStatus =
  | 'validating' | 'failed' | 'in_progress' | 'finalizing' | 'completed' | 'expired' | 'cancelling' | 'cancelled';

/** Statuses a batch never leaves. */
export const BATCH_DONE: ReadonlySet<BatchStatus> = new Set(['failed', 'completed', 'expired', 'cancelled']);

/** The control queue the workers process (not an engine queue: engine ids never contain `batch-control`'s shape). */
export const BATCH_CONTROL_QUEUE = 'batch-control';
export const FINALIZE_JOB = 'finalize';

/**
 * The lifecycle queue the API replicas process: `validate` reads the input file and queues the items (a batch is
 * `validating` until then), `expire` ends a batch at the end of its completion window. Both need the API's voice
 * routing and engine queues; as BullMQ jobs they survive the death of the API that was running them.
 */
export const BATCH_LIFECYCLE_QUEUE = 'batch-lifecycle';
export const VALIDATE_JOB = 'validate';
export const EXPIRE_JOB = 'expire';

/** OpenAI's message for a request its batch's completion window ended before. */
export const BATCH_EXPIRED_MESSAGE = 'This request could not be executed before the completion window expired.';

/**
 * `completion_window` in seconds: OpenAI's `24h`, and (a Chorus extension) any whole number of seconds, minutes or
 * hours from 1 s to 7 days (`90s`, `30m`, `2h`). Undefined for anything else.
 */
export function completionWindowSeconds(window: string): number | undefined {
  const m = /^([1-9][0-9]{0,6})([smh])$/.exec(window);
  if (!m) return undefined;
  const s = Number(m[1]) * { s: 1, m: 60, h: 3600 }[m[2] as 's' | 'm' | 'h'];
  return s <= 7 * 86_400 ? s : undefined;
}

/** One item's result, as the finalizer turns it into an output or error line. */
export type ItemOutcome =
  | {
      status: 'completed'; request_id: string; file_id: string; content_type: string; bytes: number; duration_s: number;
      /** Input line, so the archive and output keep the input order. */
      line: number;
    }
  | { status: 'failed'; request_id: string; line: number; code: string; message: string; param: string | null }
  | { status: 'cancelled'; request_id: string; line: number }
  /** Still waiting when the completion window ended: an error line `batch_expired`, counted as failed (as OpenAI). */
  | { status: 'expired'; request_id: string; line: number };

/** Counter field of the batch hash each outcome status increments. */
const COUNTER = { completed: 'completed', failed: 'failed', cancelled: 'cancelled', expired: 'failed' } as const;

/*
 * Records an outcome once: HSETNX on the outcome hash guards the counter, so a retried or duplicated completion is
 * not counted twice. Returns {recorded (0/1), remaining outcomes}; -1 remaining when the batch is gone (expired).
 */
const RECORD = `
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, -1} end
local recorded = redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])
if recorded == 1 then
  redis.call('HINCRBY', KEYS[1], ARGV[3], 1)
  local ttl = redis.call('TTL', KEYS[1])
  if ttl > 0 then redis.call('EXPIRE', KEYS[2], ttl) end
end
return {recorded, tonumber(redis.call('HGET', KEYS[1], 'total')) - redis.call('HLEN', KEYS[2])}
`;

export async function recordOutcome(
  redis: RedisClient, keys: RedisKeys, batchId: string, customId: string, outcome: ItemOutcome,
): Promise<{ recorded: boolean; remaining: number }> {
  const [recorded, remaining] = (await redis.eval(
    RECORD, 2, keys.batch(batchId), keys.batchOutcomes(batchId), customId, JSON.stringify(outcome), COUNTER[outcome.status],
  )) as [number, number];
  return { recorded: recorded === 1, remaining };
}

/** Outcomes still missing (-1: no such batch). */
export async function remainingOutcomes(redis: RedisClient, keys: RedisKeys, batchId: string): Promise<number> {
  const [total, n] = await Promise.all([redis.hget(keys.batch(batchId), 'total'), redis.hlen(keys.batchOutcomes(batchId))]);
  return total === null ? -1 : Number(total) - n;
}

/** Idempotent: the job id is the batch id, so a second add while the first exists is a no-op. */
export async function enqueueFinalize(queue: Queue, batchId: string): Promise<void> {
  await queue.add(FINALIZE_JOB, { batchId }, {
    jobId: `finalize-${batchId}`, attempts: 5, backoff: { type: 'exponential', delay: 500 },
    removeOnComplete: { age: 24 * 3600 }, removeOnFail: { age: 7 * 24 * 3600 },
  });
}

/* Sets the batch's status (and more fields) only while it is one of `from`: a cancel and a finalizer cannot both win. */
const TRANSITION = `
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 0 end
local n = tonumber(ARGV[1])
for i = 2, n + 1 do
  if ARGV[i] == status then
    for j = n + 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[j], ARGV[j + 1]) end
    return 1
  end
end
return 0
`;

export async function transitionBatch(
  redis: RedisClient, keys: RedisKeys, batchId: string, from: readonly BatchStatus[], fields: Record<string, string | number>,
): Promise<boolean> {
  const flat = Object.entries(fields).flatMap(([k, v]) => [k, String(v)]);
  return (await redis.eval(TRANSITION, 1, keys.batch(batchId), from.length, ...from, ...flat)) === 1;
}
