import type { RedisClient } from '@chorus/shared';
import type { Worker } from 'bullmq';

/*
 * Releases a dead worker's job locks in one queue, so that BullMQ's own stalled check moves those jobs back to
 * wait at once. BullMQ 6's moveStalledJobsToWait (commands/moveStalledJobsToWait-9.lua) moves a job that is in
 * the `stalled` set and has no `<job>:lock` key: it counts the stall (`stc`, failing the job past maxStalledCount),
 * RPUSHes it to the head of wait and emits `stalled`. Left alone, the dead worker's lock lives up to
 * lockDuration, and a job needs one check to be marked and the next to be moved. So this script deletes only
 * the locks whose token the dead worker issued (`<its BullMQ worker id>:<n>`), marks those jobs stalled, and
 * clears `stalled-check` (BullMQ's rate limit on checks) so the check run right after is not skipped. A job
 * another worker took meanwhile has another token and is left alone.
 *
 *   KEYS[1] active (list)  KEYS[2] stalled (set)  KEYS[3] stalled-check
 *   ARGV[1] the queue's key prefix (`<prefix>:<queue>:`)  ARGV[2..] lock token prefixes (`<worker id>:`)
 *   Returns the released job ids, each followed by its stall counter before the move.
 */
const RELEASE_LOCKS = `
local released = {}
for _, jobId in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local lockKey = ARGV[1] .. jobId .. ':lock'
  local token = redis.call('GET', lockKey)
  if token then
    for i = 2, #ARGV do
      if string.sub(token, 1, #ARGV[i]) == ARGV[i] then
        redis.call('DEL', lockKey)
        redis.call('SADD', KEYS[2], jobId)
        released[#released + 1] = jobId
        released[#released + 1] = tonumber(redis.call('HGET', ARGV[1] .. jobId, 'stc') or '0')
        break
      end
    end
  end
end
if #released > 0 then redis.call('DEL', KEYS[3]) end
return released
`;

export async function releaseLocks(
  redis: RedisClient, worker: Worker, lockOwners: readonly string[],
): Promise<{ id: string; stalls: number }[]> {
  if (lockOwners.length === 0) return [];
  const flat = (await redis.eval(
    RELEASE_LOCKS, 3, worker.toKey('active'), worker.toKey('stalled'), worker.toKey('stalled-check'),
    worker.toKey(''), ...lockOwners.map((id) => `${id}:`),
  )) as (string | number)[];
  const out: { id: string; stalls: number }[] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) out.push({ id: String(flat[i]), stalls: Number(flat[i + 1]) });
  return out;
}

/**
 * Releases the dead worker's locks in `worker`'s queue and runs BullMQ's stalled check now. Resolves once BullMQ
 * has moved the jobs back to wait (their stall counter went up) or `timeoutMs` passed: `released` are the job ids,
 * `moved` whether all of them were seen moved.
 */
export async function handBack(
  redis: RedisClient, worker: Worker, lockOwners: readonly string[], timeoutMs = 10_000,
): Promise<{ released: string[]; moved: boolean }> {
  const released = await releaseLocks(redis, worker, lockOwners);
  if (released.length === 0) return { released: [], moved: true };
  // The public way to run a check now (it restarts the worker's checker loop, first check at once). Another
  // worker's regular check may move them first; either way each stall counter goes up by one.
  await worker.startStalledCheckTimer();
  const deadline = Date.now() + timeoutMs;
  let moved = false;
  while (!moved && Date.now() < deadline) {
    const now = await Promise.all(released.map(async (r) => Number((await redis.hget(worker.toKey(r.id), 'stc')) ?? 0)));
    moved = now.every((n, i) => n > released[i]!.stalls);
    if (!moved) await new Promise((r) => setTimeout(r, 10));
  }
  return { released: released.map((r) => r.id), moved };
}
