import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Redis } from 'ioredis';
import { newBatchId, recordOutcome, RedisKeys, transitionBatch, type ItemOutcome } from '@chorus/shared';

/*
 * The two Redis scripts batches rely on, against real Redis: an outcome is counted once however often it is
 * recorded (retried or duplicated completions, racing writers), and a status changes only from the states given.
 */

let redis: Redis;
let keys: RedisKeys;
beforeAll(() => {
  redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
  keys = new RedisKeys(`t${randomUUID().replace(/-/g, '').slice(0, 12)}`);
});
afterAll(async () => {
  const found = await redis.keys(`${keys.prefix}:*`);
  if (found.length) await redis.del(...found);
  redis.disconnect();
});

const done = (line: number): ItemOutcome => ({
  status: 'completed', request_id: 'req_x', line, file_id: 'file-0', content_type: 'audio/mpeg', bytes: 1, duration_s: 1,
});

describe('batch outcome scripts', () => {
  it('records each custom_id once: 20 racing duplicates of 3 items count 3, and the last reports 0 remaining', async () => {
    const id = newBatchId();
    await redis.hset(keys.batch(id), { id, status: 'in_progress', total: 3, completed: 0, failed: 0, cancelled: 0 });
    await redis.expire(keys.batch(id), 600);
    const results = await Promise.all(
      Array.from({ length: 60 }, (_, i) => recordOutcome(redis, keys, id, `c${i % 3}`, done(i % 3 + 1))),
    );
    expect(results.filter((r) => r.recorded)).toHaveLength(3);
    expect(await redis.hget(keys.batch(id), 'completed')).toBe('3');
    expect(Math.min(...results.map((r) => r.remaining))).toBe(0);
    // A later failure report for an item that completed changes nothing.
    const late = await recordOutcome(redis, keys, id, 'c1', { status: 'failed', request_id: 'req_x', line: 2, code: 'engine_error', message: 'x', param: null });
    expect(late).toEqual({ recorded: false, remaining: 0 });
    expect(await redis.hmget(keys.batch(id), 'completed', 'failed')).toEqual(['3', '0']);
    expect(await redis.ttl(keys.batchOutcomes(id))).toBeGreaterThan(0);
  });

  it('an outcome for a batch that is gone records nothing', async () => {
    expect(await recordOutcome(redis, keys, newBatchId(), 'c0', done(1))).toEqual({ recorded: false, remaining: -1 });
  });

  it('a transition happens only from the given states', async () => {
    const id = newBatchId();
    await redis.hset(keys.batch(id), { id, status: 'completed' });
    expect(await transitionBatch(redis, keys, id, ['validating', 'in_progress'], { status: 'cancelling', cancelling_at: 1 })).toBe(false);
    expect(await redis.hget(keys.batch(id), 'status')).toBe('completed');
    await redis.hset(keys.batch(id), 'status', 'in_progress');
    expect(await transitionBatch(redis, keys, id, ['validating', 'in_progress'], { status: 'cancelling', cancelling_at: 1 })).toBe(true);
    expect(await redis.hmget(keys.batch(id), 'status', 'cancelling_at')).toEqual(['cancelling', '1']);
  });
});
