import { Queue } from 'bullmq';
import type { RedisClient, RedisKeys } from '@chorus/shared';

/**
 * The API's BullMQ Queues, one per name, on the producer connection, made on first use and made again when their
 * start failed. A Queue's start sends INFO (BullMQ's version check); the producer has no offline queue, so that
 * fails at once while the connection is not ready, and BullMQ keeps the Queue failed for good: every later add
 * rejected. A Cluster client counts as ready for BullMQ before it is (its `connect` status), so a Queue made at
 * start-up on a Cluster sometimes never worked (a batch created right after start got 503 until restart).
 */
export class ProducerQueues {
  readonly #redis: RedisClient;
  readonly #keys: RedisKeys;
  readonly #queues = new Map<string, Queue>();

  constructor(redis: RedisClient, keys: RedisKeys) {
    this.#redis = redis;
    this.#keys = keys;
  }

  get(name: string): Queue {
    let queue = this.#queues.get(name);
    if (queue) return queue;
    const made = new Queue(name, { connection: this.#redis, prefix: this.#keys.bullPrefix() });
    made.on('error', () => {}); // connection errors surface on the request that hits them
    made.waitUntilReady().catch(() => {
      // This one stays failed (the request that used it got a 503); the next caller gets a new one.
      if (this.#queues.get(name) === made) this.#queues.delete(name);
      made.close().catch(() => {});
    });
    this.#queues.set(name, (queue = made));
    return queue;
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.#queues.values()].map((q) => q.close()));
  }
}
