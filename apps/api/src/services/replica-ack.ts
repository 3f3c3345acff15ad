import { isCluster, type RedisClient } from '@chorus/shared';
import type { FastifyBaseLogger } from 'fastify';

/** How long one WAIT may hold the producer connection. */
const WAIT_MS = 250;
/** After a WAIT that no replica answered, skip WAITs this long (one slow WAIT per window, not one per request). */
const DEGRADED_MS = 5000;

/**
 * Replication is asynchronous: under Sentinel or in a Cluster, a job the master acknowledged is lost if the master dies before a
 * replica has it. After enqueueing, `WAIT 1` makes the job reach one replica before the request goes on, so a
 * failover loses no accepted job. WAIT blocks the connection it runs on (the producer) until the replica's ack,
 * normally one round trip; while no replica answers we stop waiting for a while rather than slow every request.
 */
export class ReplicaAck {
  readonly #redis: RedisClient;
  readonly #log: FastifyBaseLogger;
  #degradedUntil = 0;

  readonly #routeKey: string;

  /**
   * `routeKey`: a key in the queues' slot (RedisKeys.bullPrefix()). On a Cluster, WAIT names no key and would go to
   * any node: pipelined behind a command on that key, it runs on the connection to the primary that took the job.
   */
  constructor(redis: RedisClient, log: FastifyBaseLogger, routeKey: string) {
    this.#redis = redis;
    this.#log = log;
    this.#routeKey = routeKey;
  }

  async #wait(): Promise<number> {
    if (!isCluster(this.#redis)) return (await this.#redis.call('WAIT', 1, WAIT_MS)) as number;
    const replies = await this.#redis.pipeline().exists(this.#routeKey).call('WAIT', 1, WAIT_MS).exec();
    const [err, acked] = replies?.[1] ?? [new Error('no reply to WAIT')];
    if (err) throw err;
    return acked as number;
  }

  async confirm(): Promise<void> {
    if (Date.now() < this.#degradedUntil) return;
    try {
      const acked = await this.#wait();
      if (acked >= 1) return;
      this.#log.warn({ waitMs: WAIT_MS }, 'no replica acknowledged a job; a failover now could lose recent jobs');
    } catch (err) {
      // The job is queued either way; failing the request now would orphan it.
      this.#log.warn({ err: (err as Error).message }, 'replica acknowledgement failed');
    }
    this.#degradedUntil = Date.now() + DEGRADED_MS;
  }
}
