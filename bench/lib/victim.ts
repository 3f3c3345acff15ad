import type { Redis } from 'ioredis';
import { liveWorkers, type RedisKeys } from '@chorus/shared';

/**
 * The jobs a worker process holds right now: the active jobs in `queues` whose BullMQ lock token was issued by one
 * of its BullMQ workers (WorkerInfo.lockOwners, `<id>:<n>`). Call it with the process stopped (SIGSTOP) to get
 * exactly the jobs a kill takes down: a stopped process keeps its connections and locks but takes nothing new.
 */
export async function jobsHeldBy(redis: Redis, keys: RedisKeys, pid: number, queues: readonly string[]): Promise<string[]> {
  const info = (await liveWorkers(redis, keys)).find((w) => w.pid === pid);
  if (!info?.lockOwners) throw new Error(`no heartbeat with lock owners for worker pid ${pid}`);
  const owners = info.lockOwners.map((id) => `${id}:`);
  const held: string[] = [];
  for (const queue of queues) {
    const base = `${keys.bullPrefix()}:${queue}`;
    const active = await redis.lrange(`${base}:active`, 0, -1);
    if (active.length === 0) continue;
    const tokens = await redis.mget(active.map((id) => `${base}:${id}:lock`));
    active.forEach((id, i) => {
      const token = tokens[i];
      if (token && owners.some((o) => token.startsWith(o))) held.push(id);
    });
  }
  return held;
}
