import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { Queue } from 'bullmq';
import { liveWorkers, RedisKeys, speechQueueName, type Lane } from '@chorus/shared';
import { WORKER_NODE_FLAGS } from '@chorus/shared/node-flags';
import { freePort, startChild, startRedisServer, type Child, type RedisServerHandle } from './processes.ts';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const API_MAIN = path.join(ROOT, 'apps/api/src/server.ts');
const WORKER_MAIN = path.join(ROOT, 'apps/worker/src/main.ts');

/**
 * BENCH_CPU_PROF=1 starts the API and workers with `--cpu-prof`: each writes a .cpuprofile (open it in Chrome
 * DevTools or speedscope) to bench/results/profiles/ when it exits.
 */
function nodeArgs(main: string): string[] {
  const prof = process.env.BENCH_CPU_PROF === '1'
    ? ['--cpu-prof', '--cpu-prof-dir', path.join(ROOT, 'bench/results/profiles')]
    : [];
  return [...prof, ...(main === WORKER_MAIN ? WORKER_NODE_FLAGS : []), '--import', 'tsx', main];
}

export interface StackOptions {
  /** Worker processes to start. @defaultValue 1 */
  workers?: number;
  apiEnv?: Record<string, string>;
  workerEnv?: Record<string, string>;
  /** Redis with AOF on, as `npm start` runs it. @defaultValue false */
  redisAppendOnly?: boolean;
}

/**
 * The full service as it runs in production, on 127.0.0.1 only: a private redis-server, the API as its own
 * process (so its RSS and sockets can be measured, and the load generator does not share its event loop), and
 * worker processes. Limits that would turn a benchmark's deliberate load into 429/503s are raised.
 */
export class BenchStack {
  readonly redisServer: RedisServerHandle;
  readonly prefix: string;
  readonly keys: RedisKeys;
  readonly redis: Redis;
  readonly api: Child;
  readonly baseUrl: string;
  readonly workers: Child[] = [];
  /** Per addWorkers call: ms from spawning its workers until all of them heartbeat (process start to ready). */
  readonly workerStartMs: number[] = [];
  readonly #workerEnv: Record<string, string>;
  readonly #queues = new Map<string, Queue>();

  private constructor(redisServer: RedisServerHandle, api: Child, baseUrl: string, prefix: string, workerEnv: Record<string, string>) {
    this.redisServer = redisServer;
    this.prefix = prefix;
    this.keys = new RedisKeys(prefix);
    this.redis = new Redis(redisServer.url, { maxRetriesPerRequest: null });
    this.api = api;
    this.baseUrl = baseUrl;
    this.#workerEnv = workerEnv;
  }

  static async start(opts: StackOptions = {}): Promise<BenchStack> {
    const redisServer = await startRedisServer({ appendOnly: opts.redisAppendOnly });
    const prefix = `bench${randomUUID().slice(0, 8)}`;
    const common = { REDIS_URL: redisServer.url, REDIS_PREFIX: prefix, LOG_LEVEL: 'warn', SHUTDOWN_GRACE_S: '2' };
    const port = await freePort();
    const api = startChild(process.execPath, nodeArgs(API_MAIN), {
      ...common, HOST: '127.0.0.1', PORT: String(port),
      MAX_QUEUE_DEPTH: '100000', QUEUE_TIMEOUT_S: '600', MAX_QUEUE_WAIT_MS: '3600000', RATE_LIMIT_PER_MIN: '0', BODY_LIMIT_BYTES: '1048576',
      ...opts.apiEnv,
    }, ROOT);
    const stack = new BenchStack(redisServer, api, `http://127.0.0.1:${port}`, prefix, {
      ...common, HEARTBEAT_INTERVAL_MS: '500', ...opts.workerEnv,
    });
    try {
      await stack.addWorkers(opts.workers ?? 1);
      await stack.#waitApi();
    } catch (err) {
      await stack.stop();
      throw err;
    }
    return stack;
  }

  /**
   * Until /readyz answers ready with at least `workers` live workers. /readyz reads the live-worker set afresh, which
   * also renews the API's cached copy (kept for about a second) that requests are routed and admitted by.
   */
  async #waitApi(workers = 1) {
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        const res = await fetch(`${this.baseUrl}/readyz`);
        const body = (await res.json().catch(() => ({}))) as { workers?: number };
        if (res.ok && (body.workers ?? 0) >= workers) return;
      } catch {
        // not listening yet
      }
      if (this.api.process.exitCode !== null || Date.now() > deadline) {
        throw new Error(`api did not become ready:\n${this.api.output()}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Starts `n` more workers and waits until all of them heartbeat (and the API has seen them). */
  async addWorkers(n: number, extraEnv: Record<string, string> = {}): Promise<void> {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      this.workers.push(startChild(process.execPath, nodeArgs(WORKER_MAIN), { ...this.#workerEnv, ...extraEnv }, ROOT));
    }
    const deadline = Date.now() + 90_000;
    while ((await liveWorkers(this.redis, this.keys)).length < this.workers.length) {
      const dead = this.workers.find((w) => w.process.exitCode !== null);
      if (dead || Date.now() > deadline) throw new Error(`workers did not start:\n${(dead ?? this.workers[0]!).output()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    this.workerStartMs.push(performance.now() - t0);
    // The API caches the live-worker set for about a second: wait until it has seen them all (not a fixed 1.2 s).
    await this.#waitApi(this.workers.length);
  }

  queue(engine: string, lane: Lane = 'realtime'): Queue {
    const name = speechQueueName(engine, lane);
    let q = this.#queues.get(name);
    if (!q) this.#queues.set(name, (q = new Queue(name, { connection: this.redis, prefix: this.keys.bullPrefix() })));
    return q;
  }

  async stop(): Promise<void> {
    // Workers first (SIGKILL after a short grace: a backlog benchmark leaves hundreds of jobs queued).
    await Promise.all(this.workers.map((w) => w.stop(2000)));
    await this.api.stop(3000);
    for (const q of this.#queues.values()) await q.close().catch(() => {});
    this.redis.disconnect();
    await this.redisServer.stop();
  }
}
