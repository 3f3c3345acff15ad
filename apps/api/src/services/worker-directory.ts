import type { Redis } from 'ioredis';
import { liveWorkers, type RedisKeys, type WorkerInfo } from '@chorus/shared';

const REFRESH_MS = 1000;

/**
 * The API's view of live workers, refreshed at most once a second so routing a request costs no Redis round
 * trip. A model whose engine no live worker serves is refused with 503 at once.
 */
export class WorkerDirectory {
  readonly #redis: Redis;
  readonly #keys: RedisKeys;
  #workers: WorkerInfo[] = [];
  #fetchedAt = 0;
  #inFlight: Promise<void> | undefined;

  constructor(redis: Redis, keys: RedisKeys) {
    this.#redis = redis;
    this.#keys = keys;
  }

  async workers(): Promise<WorkerInfo[]> {
    // While the connection is down, refresh (which fails at once) rather than answer from the cache: discovery
    // must not list models that requests would be refused for.
    if (Date.now() - this.#fetchedAt > REFRESH_MS || this.#redis.status !== 'ready') await this.refresh();
    return this.#workers;
  }

  async servedEngines(): Promise<Set<string>> {
    const set = new Set<string>();
    for (const w of await this.workers()) if (w.accepting) for (const e of w.engines) set.add(e);
    return set;
  }

  refresh(): Promise<void> {
    this.#inFlight ??= liveWorkers(this.#redis, this.#keys)
      .then((workers) => {
        this.#workers = workers;
        this.#fetchedAt = Date.now();
      })
      .finally(() => {
        this.#inFlight = undefined;
      });
    return this.#inFlight;
  }
}
