import type { Redis } from 'ioredis';
import type { FastifyBaseLogger } from 'fastify';

/** How long one WAIT may hold the producer connection. */
const WAIT_MS = 250;
/** After a WAIT that no replica answered, skip WAITs this long (one slow WAIT per window, not one per request). */
const DEGRADED_MS = 5000;

/**
 * Replication is asynchronous: under Sentinel, a job the master acknowledged is lost if the master dies before a
 * replica has it. After enqueueing, `WAIT 1` makes the job reach one replica before the request goes on, so a
 * failover loses no accepted job. WAIT blocks the connection it runs on (the producer) until the replica's ack,
 * normally one round trip; while no replica answers we stop waiting for a while rather than slow every request.
 */
export class ReplicaAck {
  readonly #redis: Redis;
  readonly #log: FastifyBaseLogger;
  #degradedUntil = 0;

  constructor(redis: Redis, log: FastifyBaseLogger) {
    this.#redis = redis;
    this.#log = log;
  }

  async confirm(): Promise<void> {
    if (Date.now() < this.#degradedUntil) return;
    try {
      const acked = (await this.#redis.call('WAIT', 1, WAIT_MS)) as number;
      if (acked >= 1) return;
      this.#log.warn({ waitMs: WAIT_MS }, 'no replica acknowledged a job; a failover now could lose recent jobs');
    } catch (err) {
      // The job is queued either way; failing the request now would orphan it.
      this.#log.warn({ err: (err as Error).message }, 'replica acknowledgement failed');
    }
    this.#degradedUntil = Date.now() + DEGRADED_MS;
  }
}
