import { once } from 'node:events';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { createRedisClient, RedisKeys, type RedisClient } from '@chorus/shared';
import { startRedisCluster, type RedisClusterSet } from './helpers/redis-cluster.ts';
import { waitFor } from './helpers/processes.ts';
import { ProducerQueues } from '../apps/api/src/services/producer-queues.ts';

/*
 * The API's producer connection has no offline queue, and BullMQ takes an ioredis Cluster client at `connect` for a
 * ready one: a Queue made then fails its start (INFO) and stays failed. On a Cluster the API made its batch queues
 * at start-up, so a batch created right after start sometimes got 503 until the API restarted (seen in
 * reliability-cluster.test.ts, 3 runs of 9). ProducerQueues makes a queue again once its start failed.
 */

let cluster: RedisClusterSet;
let producer: RedisClient;

beforeAll(async () => {
  cluster = await startRedisCluster();
  const nodes = cluster.seeds.split(',').map((hp) => ({ host: hp.split(':')[0]!, port: Number(hp.split(':')[1]) }));
  producer = createRedisClient({ url: `redis://${cluster.seeds.split(',')[0]}`, sentinels: undefined, sentinelName: 'mymaster', clusterNodes: nodes, prefix: 'pq' }, 'producer');
  // The moment the race needs: the Cluster client has connected, its ready check has not answered yet.
  await once(producer, 'connect');
}, 120_000);

afterAll(async () => {
  producer?.disconnect();
  await cluster?.stop();
});

describe('ProducerQueues on a Redis Cluster (real cluster, BullMQ)', () => {
  it('a queue whose start failed before the connection was ready is made again: jobs go in once it is', async () => {
    const keys = new RedisKeys(`pq${randomUUID().slice(0, 8)}`);
    const queues = new ProducerQueues(producer, keys);
    const early = queues.get('probe');
    // BullMQ's own Queue made at the same moment, kept as the API kept it before.
    const kept = new Queue('probe-kept', { connection: producer, prefix: keys.bullPrefix() });
    kept.on('error', () => {});
    await expect(early.waitUntilReady()).rejects.toThrow(/isn't ready/);
    await expect(kept.waitUntilReady()).rejects.toThrow(/isn't ready/);

    expect(await waitFor(() => producer.status === 'ready', 30_000)).toBeGreaterThanOrEqual(0);
    // Kept, it never works again...
    await expect(kept.add('x', { n: 1 })).rejects.toThrow(/isn't ready/);
    // ...made again, it does.
    const later = queues.get('probe');
    expect(later).not.toBe(early);
    const job = await later.add('x', { n: 2 });
    expect((await later.getJob(job.id!))?.data).toEqual({ n: 2 });
    expect(queues.get('probe')).toBe(later); // and is kept once it works
    await kept.close();
    await queues.close();
  });
});
