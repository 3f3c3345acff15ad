import { randomUUID } from 'node:crypto';
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
/**
 * How recently another API replica must have relayed a start of a queue for this one to count it as admitting there
 * too (QueueAdmission's look-free admission is for a replica alone on its queue).
 */
const OTHERS_WINDOW_MS = 10_000;
/** Retry-After of a refusal by MAX_QUEUE_DEPTH. */
const DEPTH_RETRY_S = 1;
/**
 * How long after its last byte a finished job may still count as active in BullMQ: how long a request with every slot
 * busy and nothing queued waits for a slot to come free before it looks again, and how long a freed slot is held.
 */
export const FINISHING_MS = 50;
/** Weight of the newest gap in the mean time between requests (FreedSlots), and the longest gap it counts. */
const GAP_WEIGHT = 0.2;
const GAP_CAP_MS = 1000;
/**
 * Share of the usual gap between requests a waiter may have waited and still take a freed slot when the next
 * arrival is due within FINISHING_MS (FreedSlots). Its wait is all in its first byte, while the slot kept instead
 * idles only until that arrival: a quarter instead of a half cut the accepted first byte's p95 under 5× overload
 * from 38–44 to 32–36 ms, with as many admitted (bench/admission.ts, three interleaved pairs).
 */
const GIVE_WAY_SHARE = 0.25;

/** How an admission ended (`chorus_admissions_total{outcome}`). */
export type AdmissionOutcome =
  /** Admitted on its first look: a free slot, or a predicted wait within the budget. */
  | 'free_slot'
  /** Admitted into a slot this replica saw come free (a job's terminal record relayed here). */
  | 'freed_slot'
  /** Admitted on the second look, FINISHING_MS later (a slot freed by a job another replica relays). */
  | 'second_look'
  /** Refused: a newer request took its place as the one waiting for the next freed slot. */
  | 'displaced'
  /** Refused: predicted wait over the budget, or MAX_QUEUE_DEPTH. */
  | 'refused';

/** What admission saw for one request: the numbers its decision and its Retry-After came from. */
export interface Prediction {
  /** Jobs that must start (slots that must turn over) before this one can: running + waiting − slots + 1. */
  ahead: number;
  /** Realtime starts per second across the fleet, from the last RATE_SAMPLES starts; undefined before any. */
  ratePerS: number | undefined;
  /** ahead / rate in ms; 0 while a slot is free, and before anything has started (no rate yet: admitted). */
  waitMs: number;
}

function prediction(ahead: number, ratePerS: number | undefined): Prediction {
  if (ahead <= 0) return { ahead, ratePerS: undefined, waitMs: 0 };
  // No start recorded yet (a new deployment's first burst): nothing to predict from, so admitted as before
  // admission by wait existed; QUEUE_TIMEOUT_S still bounds it. The first record of any job gives a rate.
  return { ahead, ratePerS, waitMs: ratePerS ? (ahead / ratePerS) * 1000 : 0 };
}

type Wait = { outcome: 'granted'; jobId: string } | { outcome: 'displaced' | 'timeout' };

/**
 * Slots of one queue that this replica saw come free, and the one request waiting for such a slot. A realtime job's
 * terminal record reaching this replica means its worker slot frees within moments, while BullMQ still counts the
 * job active until the worker's moveToFinished: looking at the counts again after a fixed pause made every request
 * admitted under overload wait that pause (50 ms of a ~15 ms first byte). Instead the slot is offered at once.
 *
 * One waiter at a time, the newest: under overload one of two waiting requests is refused anyway, and the one that
 * has waited least keeps the first byte nearest to unloaded; the older is refused at once (not after its pause).
 * When requests come more often than FINISHING_MS apart and the waiter has waited over a quarter of the usual gap
 * (GIVE_WAY_SHARE), the slot is kept for the next arrival instead and the waiter refused: its first byte would carry
 * its whole wait, the next one's none (bench/admission.ts: with half the gap, accepted p95 52–79 ms instead of
 * 73–108 under 5× overload, 1–2% fewer admitted; a quarter cut it by a further ~15%). A slot that frees with
 * nobody waiting is kept FINISHING_MS, so a request arriving while BullMQ still counts the job active is not
 * refused for it (a client sending one request after another). Either way the request looks
 * again, counting the freed job as gone whether or not BullMQ has moved it yet (QueueAdmission.admit): a slot that
 * another request took meanwhile is not given twice, and no queue forms behind a stream of hand-overs.
 */
export class FreedSlots {
  /** Freed jobs' ids with when their terminal record came (performance.now(), like every time here), oldest first. */
  #kept: { jobId: string; at: number }[] = [];
  /**
   * When requests were admitted into a slot the counts showed free while none was kept here (see `takeSeen`),
   * oldest first: such a slot is usually one whose terminal record has yet to reach this replica (BullMQ finished
   * the job first), and that record must then not free it a second time.
   */
  #owed: number[] = [];
  #waiter: { since: number; settle: (w: Wait) => void } | undefined;
  /** Mean time between requests to this queue (exponentially weighted), and the last one's arrival. */
  #gapMs = Infinity;
  #lastArrival: number | undefined;

  /** A request to this queue arrived (any: the gap is what the next one is expected after). */
  arrived(): number {
    const now = performance.now();
    if (this.#lastArrival !== undefined) {
      // A pause counts as GAP_CAP_MS: the mean follows a new burst within ~20 requests, however long the lull.
      const gap = Math.min(GAP_CAP_MS, now - this.#lastArrival);
      this.#gapMs = Number.isFinite(this.#gapMs) ? this.#gapMs + GAP_WEIGHT * (gap - this.#gapMs) : gap;
    }
    this.#lastArrival = now;
    return now;
  }

  freed(jobId: string): void {
    this.#prune();
    if (this.#owed.shift() !== undefined) return; // taken already, through the counts
    const waiter = this.#waiter;
    this.#waiter = undefined;
    const now = performance.now();
    if (waiter && !this.#givesWay(waiter.since, now)) waiter.settle({ outcome: 'granted', jobId });
    else {
      waiter?.settle({ outcome: 'displaced' });
      this.#kept.push({ jobId, at: now });
    }
  }

  /** See the class comment: a waiter past GIVE_WAY_SHARE of the usual gap gives way when the next arrival is due soon. */
  #givesWay(since: number, now: number): boolean {
    const nextDueIn = (this.#lastArrival ?? -Infinity) + this.#gapMs - now;
    return now - since > this.#gapMs * GIVE_WAY_SHARE && nextDueIn < FINISHING_MS;
  }

  /** A slot freed within FINISHING_MS (its job's id), used up; undefined when there is none. */
  take(): string | undefined {
    this.#prune();
    return this.#kept.shift()?.jobId;
  }

  /**
   * A request was admitted into a slot the counts showed free: a kept slot is used up for it, or, with none kept,
   * the next terminal record within FINISHING_MS frees nothing (it is most likely that slot's).
   */
  takeSeen(): void {
    if (this.take() === undefined) this.#owed.push(performance.now());
  }

  /** Drops slots kept, and debts owed, longer than FINISHING_MS (BullMQ has the slots as free by then). */
  #prune(): void {
    const since = performance.now() - FINISHING_MS;
    while (this.#kept.length > 0 && this.#kept[0]!.at < since) this.#kept.shift();
    while (this.#owed.length > 0 && this.#owed[0]! < since) this.#owed.shift();
  }

  /** Waits up to `ms` for the next freed slot; a newer waiter displaces this one. `since`: its arrived() time. */
  wait(ms: number, since: number): Promise<Wait> {
    this.#waiter?.settle({ outcome: 'displaced' });
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        if (this.#waiter?.settle === settle) this.#waiter = undefined;
        resolve({ outcome: 'timeout' });
      }, ms);
      const settle = (w: Wait) => {
        clearTimeout(timer);
        resolve(w);
      };
      this.#waiter = { since, settle };
    });
  }
}

/**
 * Admission of realtime requests by predicted wait. A request is refused at once with 429 `queue_full` when the
 * wait for a worker slot it would have exceeds its budget (MAX_QUEUE_WAIT_MS, at most TIMEOUT_SHARE of
 * QUEUE_TIMEOUT_S), with a Retry-After of that predicted wait; MAX_QUEUE_DEPTH stays as a hard bound on waiting jobs.
 *
 * Prediction, per engine queue (batch items have their own queue and slots, so a batch backlog does not count):
 * - ahead = running + waiting (+ this replica's admitted requests still being enqueued) − live slots + 1.
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
  /** Per queue: this replica's admitted requests whose enqueue has not returned yet. */
  readonly #reserved = new Map<string, number>();
  readonly #rates = new Map<string, { at: number; rate: Promise<number | undefined> }>();
  readonly #freed = new Map<string, FreedSlots>();
  /**
   * Per queue: when this replica last read the counts (performance.now()), how many jobs were queued then, and
   * whether it was the only replica to relay a start there within OTHERS_WINDOW_MS.
   */
  readonly #lastLook = new Map<string, { at: number; queued: number; alone: boolean }>();
  /** This replica, among those that relay starts (admissionStarters). */
  readonly #replicaId = randomUUID();
  readonly #outcome: (outcome: AdmissionOutcome) => void;

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
    /** Each request's admission outcome (a metric). */
    onOutcome?: (outcome: AdmissionOutcome) => void;
  }) {
    this.#redis = opts.redis;
    this.#keys = opts.keys;
    this.#maxDepth = opts.maxDepth;
    this.#budgetMs = Math.min(opts.maxWaitMs, opts.queueTimeoutS * 1000 * TIMEOUT_SHARE);
    this.#slots = opts.slots;
    this.#outcome = opts.onOutcome ?? (() => {});
  }

  async admit<T>(queue: Queue, engine: string, model: string, enqueue: () => Promise<T>): Promise<T> {
    const reserved = () => this.#reserved.get(queue.name) ?? 0;
    /** Counts now; `freedJob`: a job whose terminal record came, counted as gone if BullMQ still has it active. */
    const look = async (freedJob?: string) => {
      const [counts, slots, freedActive, starters] = await Promise.all([
        queue.getJobCounts('active', 'wait', 'prioritized', 'delayed'),
        this.#slots(engine),
        freedJob ? this.#redis.lpos(queue.toKey('active'), freedJob).then((at) => at !== null) : false,
        // Sent with the counts (ioredis pipelines them): no round trip of its own.
        this.#redis.zrangebyscore(this.#keys.admissionStarters(queue.name), Date.now() - OTHERS_WINDOW_MS, '+inf').catch(() => ['?']),
      ]);
      const queued = (counts.wait ?? 0) + (counts.prioritized ?? 0) + (counts.delayed ?? 0);
      const alone = starters.every((id) => id === this.#replicaId);
      this.#lastLook.set(queue.name, { at: performance.now(), queued, alone });
      return { queued, active: (counts.active ?? 0) - (freedActive ? 1 : 0), slots };
    };
    /**
     * The decision on counts just read, with this replica's admitted requests still being enqueued counted as
     * waiting. A free slot is reserved in the same synchronous step that saw it: two requests whose looks came
     * back together cannot both take it.
     */
    const judge = async (c: Awaited<ReturnType<typeof look>>) => {
      const before = reserved();
      // The rate only when no slot is free; its read may wait on Redis, so everything after it is one synchronous
      // step, counting admissions decided meanwhile too.
      const rate = c.active + c.queued + before - c.slots + 1 > 0 ? await this.#rate(queue.name) : undefined;
      const waiting = c.queued + Math.max(before, reserved());
      if (waiting >= this.#maxDepth) {
        this.#outcome('refused');
        throw new ChorusError(
          'TTS_ERR_QUEUE_FULL',
          `Too many requests are waiting for model '${model}' (${waiting}); retry shortly.`,
          { retryAfterS: DEPTH_RETRY_S },
        );
      }
      const p = prediction(c.active + waiting - c.slots + 1, rate);
      const admitted = p.waitMs <= this.#budgetMs;
      if (admitted) this.#reserve(queue.name, 1);
      return { admitted, waiting, p };
    };
    const freed = this.#freedSlots(queue.name);
    const arrivedAt = freed.arrived();
    // A slot this replica saw come free moments ago (kept FINISHING_MS), with nothing queued at its last look
    // (as old at most): taken without reading the counts. That read is a Redis round trip, under 5× overload
    // 0.5 ms at p50 and 5.7 at p95, most of the API's share of an accepted first byte's tail (bench/admission.ts).
    // Reserved in the same synchronous step, so a look whose counts still show the finished job active counts this
    // request as waiting and does not give the slot twice. Only for a replica alone on its queue: another one,
    // seeing the slot free in the counts once BullMQ finished the job, could admit into it too.
    const last = this.#lastLook.get(queue.name);
    if (last?.alone && last.queued === 0 && performance.now() - last.at < FINISHING_MS && freed.take() !== undefined) {
      this.#reserve(queue.name, 1);
      this.#outcome('freed_slot');
      return this.#enqueueReserved(queue.name, enqueue);
    }
    let j = await judge(await look());
    let outcome: AdmissionOutcome = 'free_slot';
    if (j.admitted) {
      // The free slot it saw may be one kept as freed, or one whose terminal record is still to come: either way it
      // admits one request, not two. (Admitted to wait within the budget: a kept slot is its, through BullMQ.)
      if (j.p.ahead <= 0) freed.takeSeen();
      else freed.take();
    } else if (j.waiting === 0) {
      // Nothing queued, every slot busy: one of them may be a job whose last byte is already out (BullMQ counts it
      // active a moment longer). Such a slot seen here is taken; otherwise wait FINISHING_MS for one, then look
      // again (a slot freed by a job another replica relays). A slot held by a job still running stays held, and
      // the refusal stands.
      let freedJob = freed.take();
      if (!freedJob) {
        const w = await freed.wait(FINISHING_MS, arrivedAt);
        if (w.outcome === 'granted') freedJob = w.jobId;
        else outcome = w.outcome === 'displaced' ? 'displaced' : 'second_look';
      }
      if (freedJob) outcome = 'freed_slot';
      if (outcome !== 'displaced') j = await judge(await look(freedJob));
    }
    if (!j.admitted) {
      this.#outcome(outcome === 'displaced' ? 'displaced' : 'refused');
      throw new ChorusError(
        'TTS_ERR_QUEUE_FULL',
        `Model '${model}' is busy: the predicted wait for a worker is ${(j.p.waitMs / 1000).toFixed(2)} s; retry later.`,
        // The predicted wait: by then the jobs ahead of this one have started. Clients (the OpenAI SDKs
        // included) wait what retry-after-ms says.
        { retryAfterS: Math.min(60, Math.max(0.05, j.p.waitMs / 1000)) },
      );
    }
    this.#outcome(outcome);
    return this.#enqueueReserved(queue.name, enqueue);
  }

  /** Enqueues an admitted request, whose reservation is held until its job is in Redis. */
  async #enqueueReserved<T>(queueName: string, enqueue: () => Promise<T>): Promise<T> {
    try {
      return await enqueue();
    } finally {
      // Released a turn later: a look whose reply came before the enqueue's has run its judge by then (its
      // continuation is all microtasks), so no request counts this job neither in Redis nor here.
      setImmediate(() => this.#reserve(queueName, -1));
    }
  }

  #reserve(queueName: string, d: number): void {
    const n = (this.#reserved.get(queueName) ?? 0) + d;
    if (n === 0) this.#reserved.delete(queueName);
    else this.#reserved.set(queueName, n);
  }

  /**
   * A realtime job of this queue relayed by this replica got its terminal record: its slot frees within moments,
   * and goes to the request waiting for one, if any (see FreedSlots).
   */
  noteFreed(queueName: string, jobId: string): void {
    this.#freedSlots(queueName).freed(jobId);
  }

  #freedSlots(queueName: string): FreedSlots {
    let f = this.#freed.get(queueName);
    if (!f) this.#freed.set(queueName, (f = new FreedSlots()));
    return f;
  }

  /** A realtime job of this queue started (its first record reached its API replica). Best effort. */
  noteStarted(queueName: string): void {
    const key = this.#keys.admissionStarts(queueName);
    const now = Date.now();
    this.#redis
      .multi()
      .lpush(key, String(now))
      .ltrim(key, 0, RATE_SAMPLES - 1)
      .pexpire(key, 3_600_000)
      .exec()
      .catch(() => {});
    // A MULTI of its own: another key, which on a Cluster may live in another slot.
    const starters = this.#keys.admissionStarters(queueName);
    this.#redis
      .multi()
      .zadd(starters, now, this.#replicaId)
      .zremrangebyscore(starters, '-inf', now - OTHERS_WINDOW_MS)
      .pexpire(starters, 3_600_000)
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
