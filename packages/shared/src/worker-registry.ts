import type { RedisClient } from './redis.ts';
import { z } from 'zod';
import type { RedisKeys } from './keys.ts';

/**
 * Worker heartbeats. Each worker refreshes its entry every HEARTBEAT_INTERVAL_MS with a TTL of three intervals;
 * the API reads the live set to list models and to refuse (503) a model no live worker serves.
 */
export const WorkerInfo = z.object({
  id: z.string(),
  engines: z.array(z.string()),
  /** Realtime slots per engine (WORKER_CONCURRENCY); 0 on a batch-only worker, which realtime routing skips. */
  concurrency: z.number().int(),
  /** Batch slots per engine (WORKER_BATCH_CONCURRENCY; optional: older workers omit it). */
  batchConcurrency: z.number().int().optional(),
  host: z.string(),
  pid: z.number().int(),
  startedAt: z.number(),
  /** Accepting jobs; false while draining for shutdown. */
  accepting: z.boolean().default(true),
  /** What each model engine loaded (optional: older workers and espeak-only workers omit it). */
  models: z
    .array(z.object({ engine: z.string(), device: z.enum(['cpu', 'cuda']), voices: z.array(z.string()) }))
    .optional(),
  /**
   * The ids of this process's BullMQ workers: each job lock it holds carries `<id>:<n>` as its token. A survivor
   * that sees this worker's Redis connection gone releases exactly those locks (apps/worker/src/failover).
   */
  lockOwners: z.array(z.string()).optional(),
});
export type WorkerInfo = z.infer<typeof WorkerInfo>;

/**
 * The CLIENT SETNAME of a worker process's connections. A process that dies (SIGKILL, OOM kill, crash) loses its
 * connections at once, so their absence from CLIENT LIST says it is gone long before its heartbeat or its job
 * locks expire.
 */
export function workerConnectionName(prefix: string, workerId: string): string {
  return `chorus-worker:${prefix}:${workerId}`;
}

export async function publishHeartbeat(redis: RedisClient, keys: RedisKeys, info: WorkerInfo, ttlMs: number) {
  const now = Date.now();
  await redis
    .multi()
    .set(keys.worker(info.id), JSON.stringify(info), 'PX', ttlMs)
    .zadd(keys.workers(), now + ttlMs, info.id)
    .zremrangebyscore(keys.workers(), '-inf', now)
    .exec();
}

export async function removeWorker(redis: RedisClient, keys: RedisKeys, workerId: string) {
  await redis.multi().del(keys.worker(workerId)).zrem(keys.workers(), workerId).exec();
}

export async function liveWorkers(redis: RedisClient, keys: RedisKeys): Promise<WorkerInfo[]> {
  const ids = await redis.zrangebyscore(keys.workers(), Date.now(), '+inf');
  if (ids.length === 0) return [];
  const raw = await redis.mget(ids.map((id) => keys.worker(id)));
  const out: WorkerInfo[] = [];
  for (const value of raw) {
    if (!value) continue;
    const parsed = WorkerInfo.safeParse(JSON.parse(value));
    if (parsed.success) out.push(parsed.data);
  }
  return out;
}
