import type { RedisClient } from '@chorus/shared';
import type { Queue } from 'bullmq';
import { ChorusError, type RedisKeys } from '@chorus/shared';

/** Starts kept per queue for the rate: enough to smooth one slow job, few enough to follow a change within seconds. */
export const RATE_SAMPLES = 20;
/** Floor of the time the samples span, so one start a moment ago does not read as hundreds per second. */
const MIN_SPAN_MS = 500;
/** How long one read of the start rate serves this replica (bounds the reads a 429 storm makes). */
const RATE_CACHE_MS = 200;
/**
 * Share of QUEUE_TIMEOUT_S a predicted wait may use however large MAX_QUEUE_WAIT_MS is: the prediction is an estimate
 * (20 starts, a machine whose speed drifts), and a request admitted at 29 s of a 30 s timeout would often end in
 * the slow 503 admission is there to avoid.
 */
export const TIMEOUT_SHARE = 0.8;
/** Retry-After of a refusal by MAX_QUEUE_DEPTH. */
const DEPTH_RETRY_S = 1;
/** How long after its last byte a finished job may still count as active in BullMQ (a second look waits this). */
const FINISHING_MS = 50;

/** What admission saw for one request: the numbers its decision and its Retry-After came from. */
export interface Prediction {
  /** Jobs that must start (slots that must turn over) before this one can: running + waiting − slots + 1. */
  ahead: number;
  /** Realtime starts per second across the fleet, from the last RATE_SAMPLES starts; undefined before any. */
  ratePerS: number | undefined;
  /** ahead / rate in ms; 0 while a slot is free, and before anything has started (no rate yet: admitted). */
  waitMs: number;
}

/**
 * Admission of realtime requests by predicted wait. A request is refused at once with 429 `queue_full` when the
 * wait for a worker slot it would have exceeds its budget (MAX_QUEUE_WAIT_MS, at most TIMEOUT_SHARE of
 * QUEUE_TIMEOUT_S), with a Retry-After of that predicted wait; MAX_QUEUE_DEPTH stays as a hard bound on waiting jobs.
 *
 * Prediction, per engine queue (batch items have their own queue and slots, so a batch backlog does not count):
 * - ahead = running + waiting (+ this replica's admissions still between check and enqueue) − live slots + 1.
 *   Counts come from one BullMQ script (LLEN/ZCARD: O(1), no scan); slots are the live workers' realtime
 *   concurrency (heartbeats, cached by WorkerDirectory). ahead ≤ 0: a slot is free, the wait is 0.
 * - rate = realtime jobs started per second across the fleet: each API replica records the time its job's first
 *   record arrived in a short Redis list (LPUSH + LTRIM, RATE_SAMPLES entries), so every replica reads the same
 *   rate. rate = samples / (now − oldest sample): it follows the last RATE_SAMPLES starts, whatever their pace,
 *   and decays on its own while nothing starts (stalled workers read as a slow queue, not a fast one). Times are
 *   the replicas' own clocks: NTP-level skew is nothing against spans of seconds.
 * - wait = ahead / rate (no start recorded yet: no prediction, admitted).
 * Slots are full and the queue is short in the usual case, so the rate is only read (and cached RATE_CACHE_MS)
 * when no slot is free. Replicas do not see each other's in-flight admissions: together they can overshoot the
 * budget by what they admit in the same instant.
 */
export class QueueAdmission {
  readonly #redis: RedisClient;
  readonly #keys: RedisKeys;
  readonly #maxDepth: number;
  readonly #budgetMs: number;
  readonly #slots: (engine: string) => Promise<number>;
  readonly #admitting = new Map<string, number>();
  readonly #rates = new Map<string, { at: number; rate: Promise<number | undefined> }>();

  constructor(opts: {
    redis: RedisClient; keys: RedisKeys;
    /** MAX_QUEUE_DEPTH. */
    maxDepth: number;
    /** MAX_QUEUE_WAIT_MS: the longest predicted wait a request is admitted with... */
    maxWaitMs: number;
    /** ...within this share of QUEUE_TIMEOUT_S (TIMEOUT_SHARE). */
    queueTimeoutS: number;
    /** Live realtime worker slots for an engine. */
    slots: (engine: string) => Promise<number>;
  }) {
    this.#redis = opts.redis;
    this.#keys = opts.keys;
    this.#maxDepth = opts.maxDepth;
    this.#budgetMs = Math.min(opts.maxWaitMs, opts.queueTimeoutS * 1000 * TIMEOUT_SHARE);
    this.#slots = opts.slots;
  }

  async admit<T>(queue: Queue, engine: string, model: string, enqueue: () => Promise<T>): Promise<T> {
    const others = this.#admitting.get(queue.name) ?? 0;
    this.#admitting.set(queue.name, others + 1);
    try {
      const look = async () => {
        const [counts, slots] = await Promise.all([
          queue.getJobCounts('active', 'wait', 'prioritized', 'delayed'),
          this.#slots(engine),
        ]);
        const waiting = (counts.wait ?? 0) + (counts.prioritized ?? 0) + (counts.delayed ?? 0) + others;
        return { waiting, p: await this.predict(queue.name, (counts.active ?? 0) + waiting - slots + 1) };
      };
      let { waiting, p } = await look();
      if (waiting >= this.#maxDepth) {
        throw new ChorusError(
          'TTS_ERR_QUEUE_FULL',
          `Too many requests are waiting for model '${model}' (${waiting}); retry shortly.`,
          { retryAfterS: DEPTH_RETRY_S },
        );
      }
      if (p.waitMs > this.#budgetMs && waiting === 0) {
        // Nothing queued, every slot busy: one of them may be a job whose last byte is already out (BullMQ counts
        // it active a moment longer). A client sending one request after another would be refused for it; look
        // again once that moment has passed. A slot held by a job still running stays held, and the answer stands.
        await new Promise((r) => setTimeout(r, FINISHING_MS));
        ({ waiting, p } = await look());
      }
      if (p.waitMs > this.#budgetMs) {
        throw new ChorusError(
          'TTS_ERR_QUEUE_FULL',
          `Model '${model}' is busy: the predicted wait for a worker is ${(p.waitMs / 1000).toFixed(2)} s; retry later.`,
          // The predicted wait: by then the jobs ahead of this one have started. Clients (the OpenAI SDKs
          // included) wait what retry-after-ms says.
          { retryAfterS: Math.min(60, Math.max(0.05, p.waitMs / 1000)) },
        );
      }
      return await enqueue();
    } finally {
      const n = (this.#admitting.get(queue.name) ?? 1) - 1;
      if (n === 0) this.#admitting.delete(queue.name);
      else this.#admitting.set(queue.name, n);
    }
  }

  async predict(queueName: string, ahead: number): Promise<Prediction> {
    if (ahead <= 0) return { ahead, ratePerS: undefined, waitMs: 0 };
    const ratePerS = await this.#rate(queueName);
    // No start recorded yet (a new deployment's first burst): nothing to predict from, so admitted as before
    // admission by wait existed; QUEUE_TIMEOUT_S still bounds it. The first record of any job gives a rate.
    const waitMs = ratePerS ? (ahead / ratePerS) * 1000 : 0;
    return { ahead, ratePerS, waitMs };
  }

  /** A realtime job of this queue started (its first record reached its API replica). Best effort. */
  noteStarted(queueName: string): void {
    const key = this.#keys.admissionStarts(queueName);
    this.#redis
      .multi()
      .lpush(key, String(Date.now()))
      .ltrim(key, 0, RATE_SAMPLES - 1)
      .pexpire(key, 3_600_000)
      .exec()
      .catch(() => {});
  }

  #rate(queueName: string): Promise<number | undefined> {
    const cached = this.#rates.get(queueName);
    if (cached && Date.now() - cached.at < RATE_CACHE_MS) return cached.rate;
    const rate = this.#redis.lrange(this.#keys.admissionStarts(queueName), 0, RATE_SAMPLES - 1).then((list) => {
      const times = list.map(Number).filter(Number.isFinite);
      if (times.length === 0) return undefined;
      const span = Math.max(MIN_SPAN_MS, Date.now() - Math.min(...times));
      return times.length / (span / 1000);
    });
    rate.catch(() => this.#rates.delete(queueName));
    this.#rates.set(queueName, { at: Date.now(), rate });
    return rate;
  }
}
