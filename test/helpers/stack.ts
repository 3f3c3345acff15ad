import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { Cluster, Redis } from 'ioredis';
import { Queue } from 'bullmq';
import OpenAI from 'openai';
import { liveWorkers, loadApiConfig, primaries, RedisKeys, speechQueueName, within, type RedisClient } from '@chorus/shared';
import { WORKER_NODE_FLAGS } from '@chorus/shared/node-flags';
import { buildApp } from '../../apps/api/src/app.ts';
import { track } from './child-cleanup.ts';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const WORKER_MAIN = path.join(ROOT, 'apps/worker/src/main.ts');
const API_MAIN = path.join(ROOT, 'apps/api/src/server.ts');

export interface WorkerProcess {
  process: ChildProcess;
  output: () => string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts a real worker process (tsx) with the given environment. */
export function spawnWorker(env: Record<string, string>): WorkerProcess {
  const child = track(spawn(process.execPath, [...WORKER_NODE_FLAGS, '--import', 'tsx', WORKER_MAIN], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  }));
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-200_000)));
  child.stderr!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-200_000)));
  return {
    process: child,
    output: () => out,
    stop(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
      return new Promise((resolve) => {
        const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
        child.once('exit', (code) => {
          clearTimeout(t);
          resolve(code);
        });
        child.kill(signal);
      });
    },
  };
}

/** Starts the API as its own process (for signal tests); resolves once it answers /healthz. */
export async function spawnApi(env: Record<string, string>, port: number, timeoutMs = 20_000) {
  const child = track(spawn(process.execPath, ['--import', 'tsx', API_MAIN], {
    cwd: ROOT,
    env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  }));
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/healthz`);
      if (res.ok) break;
    } catch {
      // not up yet
    }
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`api did not start:\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { process: child, output: () => out, baseUrl: `http://127.0.0.1:${port}` };
}

export interface Stack {
  prefix: string;
  redisUrl: string;
  keys: RedisKeys;
  app: FastifyInstance;
  baseUrl: string;
  client: OpenAI;
  /** A Cluster client when the stack runs on `clusterNodes`. */
  redis: RedisClient;
  workers: WorkerProcess[];
  env: Record<string, string>;
  queue(engine?: string): Queue;
  addWorker(extraEnv?: Record<string, string>): Promise<WorkerProcess>;
  waitForWorkers(n: number): Promise<void>;
  stop(): Promise<void>;
}

export interface StackOptions {
  redisUrl: string;
  /** `host:port,...` of Sentinels (REDIS_SENTINELS, master name `mymaster`); everything then follows failovers. */
  sentinels?: string;
  /** `host:port,...` of Redis Cluster nodes (REDIS_CLUSTER_NODES); `redisUrl` is then only the URL form. */
  clusterNodes?: string;
  workers?: number;
  apiEnv?: Record<string, string>;
  workerEnv?: Record<string, string>;
}

/** Deletes every key of a test's prefix: Chorus's own (`<prefix>:…`) and BullMQ's (`{<prefix>}:…`). */
export async function deletePrefixKeys(redis: RedisClient, prefix: string): Promise<void> {
  // On a Cluster: SCAN each primary, and DEL key by key (they are in different slots).
  for (const node of primaries(redis)) {
    for (const pattern of [`${prefix}:*`, `{${prefix}}:*`]) {
      let cursor = '0';
      do {
        const [next, found] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
        cursor = next;
        if (found.length) await Promise.all(found.map((k) => redis.del(k)));
      } while (cursor !== '0');
    }
  }
}

/** API in-process (listening on a free port) + real worker processes, on a unique key prefix. */
export async function startStack(opts: StackOptions): Promise<Stack> {
  const prefix = `t${randomUUID().replace(/-/g, '').slice(0, 12)}`;
  const env: Record<string, string> = {
    REDIS_URL: opts.redisUrl, REDIS_PREFIX: prefix, LOG_LEVEL: 'warn',
    // Tests queue requests on purpose: refuse only what would not start within QUEUE_TIMEOUT_S (the cap).
    MAX_QUEUE_WAIT_MS: '3600000',
    ...(opts.sentinels ? { REDIS_SENTINELS: opts.sentinels, REDIS_SENTINEL_NAME: 'mymaster' } : {}),
    ...(opts.clusterNodes ? { REDIS_CLUSTER_NODES: opts.clusterNodes } : {}),
  };
  const keys = new RedisKeys(prefix);
  const hostPort = (hp: string) => ({ host: hp.split(':')[0]!, port: Number(hp.split(':')[1]) });
  const redis: RedisClient = opts.clusterNodes
    ? new Cluster(opts.clusterNodes.split(',').map(hostPort), {
        scaleReads: 'master', redisOptions: { maxRetriesPerRequest: null }, slotsRefreshInterval: 1000, maxRedirections: 1000,
      })
    : opts.sentinels
    ? new Redis({
        sentinels: opts.sentinels.split(',').map(hostPort),
        name: 'mymaster',
        maxRetriesPerRequest: null,
      })
    : new Redis(opts.redisUrl, { maxRetriesPerRequest: null });
  redis.on('error', () => {}); // fault tests stop Redis on purpose; ioredis would print every reconnect failure
  const queues = new Map<string, Queue>();
  const workers: WorkerProcess[] = [];

  const stack: Stack = {
    prefix, redisUrl: opts.redisUrl, keys, redis, workers, env,
    app: undefined as unknown as FastifyInstance,
    baseUrl: '',
    client: undefined as unknown as OpenAI,
    queue(engine = 'espeak') {
      let q = queues.get(engine);
      if (!q) {
        queues.set(engine, (q = new Queue(speechQueueName(engine), { connection: redis, prefix: keys.bullPrefix() })));
        q.on('error', () => {}); // see the redis error listener above
      }
      return q;
    },
    async addWorker(extraEnv = {}) {
      const w = spawnWorker({ ...env, HEARTBEAT_INTERVAL_MS: '500', ...opts.workerEnv, ...extraEnv });
      workers.push(w);
      return w;
    },
    async waitForWorkers(n) {
      const deadline = Date.now() + 30_000;
      while ((await liveWorkers(redis, keys)).length < n) {
        if (Date.now() > deadline) {
          throw new Error(`workers did not start:\n${workers.map((w) => w.output()).join('\n---\n')}`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      await stack.app.directory.refresh();
    },
    async stop() {
      // A client that vanished without closing its socket must not hold the suite: force after 3 s.
      const force = setTimeout(() => stack.app?.server.closeAllConnections(), 3000);
      // Not bounded here: the API bounds each of its own close steps (plugins/services.ts); a hang is a defect.
      await stack.app?.close();
      clearTimeout(force);
      await Promise.all(workers.map((w) => w.stop('SIGKILL')));
      // The test's own clean-up is: a step waiting on a Redis node a fault test killed is left after a bound (keys
      // left behind only in a test-owned Redis).
      for (const q of queues.values()) await within(q.close(), 10_000);
      await within(deletePrefixKeys(redis, prefix), 10_000);
      redis.disconnect();
    },
  };

  for (let i = 0; i < (opts.workers ?? 1); i++) await stack.addWorker();
  const config = loadApiConfig({ ...env, HOST: '127.0.0.1', PORT: '0', ...opts.apiEnv });
  // CHORUS_TEST_API_LOG=1 shows the API's own log lines (warn and above) when a test needs explaining.
  stack.app = await buildApp(config, { logger: process.env.CHORUS_TEST_API_LOG ? undefined : false });
  await stack.app.listen({ host: '127.0.0.1', port: 0 });
  const addr = stack.app.server.address();
  stack.baseUrl = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  stack.client = new OpenAI({ baseURL: `${stack.baseUrl}/v1`, apiKey: opts.apiEnv?.API_KEYS?.split(',')[0] ?? 'unused', maxRetries: 0 });
  if ((opts.workers ?? 1) > 0) await stack.waitForWorkers(opts.workers ?? 1);
  return stack;
}

/** POST JSON with fetch (for bodies the SDK cannot send). */
export function postJson(stack: Stack, route: string, body: unknown, headers: Record<string, string> = {}) {
  return fetch(`${stack.baseUrl}${route}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

/** One mp3 speech request by fetch (no SDK retries): status, whole body, elapsed ms, Retry-After. */
export async function timedSpeech(baseUrl: string, input: string, extra: Record<string, unknown> = {}) {
  const t0 = performance.now();
  const res = await fetch(`${baseUrl}/v1/audio/speech`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'tts-1', voice: 'alloy', input, response_format: 'mp3', ...extra }),
    signal: AbortSignal.timeout(30_000),
  });
  const body = Buffer.from(await res.arrayBuffer());
  return { status: res.status, body, ms: performance.now() - t0, retryAfter: res.headers.get('retry-after') };
}
