import { liveWorkers, type Lane, type RedisClient, type RedisKeys, type WorkerInfo } from '@chorus/shared';

const REFRESH_MS = 1000;

export interface LiveEngine {
  devices: Set<string>;
  voices: Set<string> | undefined;
}

/**
 * The API's view of live workers, refreshed at most once a second so routing a request costs no Redis round
 * trip. A model whose engine no live worker serves is refused with 503 at once.
 */
export class WorkerDirectory {
  readonly #redis: RedisClient;
  readonly #keys: RedisKeys;
  #workers: WorkerInfo[] = [];
  #fetchedAt = 0;
  #inFlight: Promise<void> | undefined;

  constructor(redis: RedisClient, keys: RedisKeys) {
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

  /**
   * What accepting live workers run, per engine: the devices its models run on and the voices they loaded
   * (`voices` undefined when a worker predates voice reporting, or the engine's voices are configured speakers).
   * `realtime` (requests, discovery) counts only workers with realtime slots: a batch-only worker
   * (WORKER_CONCURRENCY=0) would leave a realtime job waiting for nobody. `batch` counts every worker: batch items
   * wait in their queue for a batch pool that may be scaled to zero until that backlog brings it up.
   */
  async liveEngines(lane: Lane = 'realtime'): Promise<Map<string, LiveEngine>> {
    const out = new Map<string, LiveEngine>();
    for (const w of await this.workers()) {
      if (!w.accepting) continue;
      if (lane === 'realtime' && w.concurrency <= 0) continue;
      for (const engine of w.engines) if (!out.has(engine)) out.set(engine, { devices: new Set(), voices: undefined });
      for (const m of w.models ?? []) {
        const live = out.get(m.engine);
        if (!live) continue;
        live.devices.add(m.device);
        if (m.voices.length > 0) {
          live.voices ??= new Set();
          for (const v of m.voices) live.voices.add(v);
        }
      }
    }
    return out;
  }

  /** Realtime job slots live workers offer for an engine (each worker runs WORKER_CONCURRENCY per engine). */
  async realtimeSlots(engine: string): Promise<number> {
    let slots = 0;
    for (const w of await this.workers()) if (w.accepting && w.engines.includes(engine)) slots += w.concurrency;
    return slots;
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
