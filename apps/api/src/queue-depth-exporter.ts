import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Result } from 'ioredis';
import type { RedisClient } from '@chorus/shared';
import type { Queue } from 'bullmq';
import type { FastifyBaseLogger } from 'fastify';
import { LANES, type Lane } from '@chorus/shared/queues';

/**
 * BullMQ states reported as `chorus_queue_jobs{state}`. `completed` and `failed` are left out: they count what
 * retention keeps (removeOnComplete/removeOnFail), not work in the system. Realtime and batch jobs carry a
 * priority, so work that waits shows up as `prioritized`, not `waiting`.
 */
export const QUEUE_STATES = ['waiting', 'prioritized', 'active', 'delayed'] as const;
export type QueueState = (typeof QUEUE_STATES)[number];
/** Counts per engine, then per lane (`realtime`, `batch`: separate queues with separate worker pools). */
export type QueueDepth = Map<string, Record<Lane, Record<QueueState, number>>>;

const RENEW_LEASE = readFileSync(new URL('./commands/renew-lease.lua', import.meta.url), 'utf8');
const RELEASE_LEASE = readFileSync(new URL('./commands/release-lease.lua', import.meta.url), 'utf8');

declare module 'ioredis' {
  interface RedisCommander<Context> {
    chorusRenewLease(key: string, holder: string, leaseMs: number): Result<number, Context>;
    chorusReleaseLease(key: string, holder: string): Result<number, Context>;
  }
}

export interface QueueDepthExporterOptions {
  redis: RedisClient;
  /** The lease key (RedisKeys.metricsLeader()). */
  leaseKey: string;
  /** Engines whose queues are reported (one `tts-<engine>` queue each). */
  engines: readonly string[];
  queue(engine: string, lane: Lane): Queue;
  log: FastifyBaseLogger;
  /**
   * How long a lease lasts without renewal; renewed every third of it. After the holder dies, another replica
   * takes over within about this long (queue depth has a gap of that length, never a double count).
   * @defaultValue 15000
   */
  leaseMs?: number;
}

/**
 * Queue depth is a property of Redis, not of an API process: if every replica exported it, `sum()` over replicas
 * would count each job N times. Exactly one API process exports it, the one holding a short Redis lease; the
 * others export no `chorus_queue_jobs` series at all, so `sum by (state) (chorus_queue_jobs)` is right for any N.
 * APIs rather than workers hold it because a backlog matters most when the workers are gone.
 */
export class QueueDepthExporter {
  readonly #opts: Required<QueueDepthExporterOptions>;
  /** Who holds the lease: readable in Redis (`GET <key>`) when someone asks which replica exports. */
  readonly holderId = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  #leader = false;
  #timer: NodeJS.Timeout | undefined;

  constructor(opts: QueueDepthExporterOptions) {
    this.#opts = { leaseMs: 15_000, ...opts };
    const { redis } = opts;
    redis.defineCommand('chorusRenewLease', { numberOfKeys: 1, lua: RENEW_LEASE });
    redis.defineCommand('chorusReleaseLease', { numberOfKeys: 1, lua: RELEASE_LEASE });
  }

  get isLeader(): boolean {
    return this.#leader;
  }

  /** Tries for the lease at once (so a lone replica exports from its first scrape), then keeps renewing it. */
  async start(): Promise<void> {
    await this.#whenReady(2000);
    await this.#renew();
    this.#timer = setInterval(() => void this.#renew(), Math.max(100, Math.floor(this.#opts.leaseMs / 3)));
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    if (!this.#leader) return;
    this.#leader = false;
    // Hand over now instead of after the lease runs out; best effort, it expires anyway.
    await this.#opts.redis.chorusReleaseLease(this.#opts.leaseKey, this.holderId).catch(() => {});
  }

  /**
   * Counts per engine, lane and state, or undefined when another process exports them (or Redis does not answer).
   * Lanes are kept apart because they are drained by different worker slots (and, in Kubernetes, may be different
   * pools that autoscale on their own lane's backlog: deploy/kubernetes).
   */
  async snapshot(): Promise<QueueDepth | undefined> {
    if (!this.#leader) return undefined;
    const depth: QueueDepth = new Map();
    await Promise.all(
      this.#opts.engines.map(async (engine) => {
        const counts = await Promise.all(LANES.map((lane) => this.#opts.queue(engine, lane).getJobCounts(...QUEUE_STATES)));
        const byLane = Object.fromEntries(
          LANES.map((lane, i) => [lane, Object.fromEntries(QUEUE_STATES.map((s) => [s, counts[i]![s] ?? 0]))]),
        ) as Record<Lane, Record<QueueState, number>>;
        depth.set(engine, byLane);
      }),
    );
    return depth;
  }

  async #renew(): Promise<void> {
    const was = this.#leader;
    try {
      this.#leader = (await this.#opts.redis.chorusRenewLease(this.#opts.leaseKey, this.holderId, this.#opts.leaseMs)) === 1;
    } catch {
      // Without Redis we cannot know whether we still hold it: stop exporting rather than risk a double count.
      this.#leader = false;
    }
    if (this.#leader !== was) this.#opts.log.info({ holder: this.holderId, leader: this.#leader }, 'queue depth export lease changed');
  }

  async #whenReady(timeoutMs: number): Promise<void> {
    const { redis } = this.#opts;
    if (redis.status === 'ready') return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(done, timeoutMs);
      function done() {
        clearTimeout(t);
        redis.off('ready', done);
        resolve();
      }
      redis.once('ready', done);
    });
  }
}
