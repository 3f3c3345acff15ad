import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import type { RedisConfig } from './config.ts';
import { monitorLink } from './redis-link-monitor.ts';

/**
 * Connection roles (BullMQ's production guide):
 * - `producer`: request-path commands. Fails fast while Redis is down (no offline queue) so the API answers
 *   503 at once instead of hanging.
 * - `worker`: BullMQ workers and anything that must survive a Redis restart by waiting: retries forever.
 * - `blocking`: XREAD BLOCK / SUBSCRIBE. Always its own connection; retries forever.
 */
export type RedisRole = 'producer' | 'worker' | 'blocking';

/** A connection to one Redis (standalone or through Sentinel) or to a Redis Cluster: the code works on either. */
export type RedisClient = Redis | Cluster;

export function isCluster(client: RedisClient): client is Cluster {
  return client instanceof Cluster;
}

/**
 * The primaries of a Cluster (one connection each, from the client's pool), or the one Redis. For what must look at
 * every node: CLIENT LIST, SCAN.
 */
export function primaries(client: RedisClient): Redis[] {
  return isCluster(client) ? client.nodes('master') : [client];
}

/** `name` replaces the connection's default CLIENT SETNAME (`chorus-<role>`), e.g. workerConnectionName(). */
export function createRedisClient(config: RedisConfig, role: RedisRole, logger?: Logger, name?: string): RedisClient {
  if (config.clusterNodes) return createClusterClient(config, role, logger, name);
  const url = new URL(config.url);
  const base: RedisOptions = {
    connectionName: name ?? `chorus-${role}`,
    password: url.password ? decodeURIComponent(url.password) : undefined,
    username: url.username ? decodeURIComponent(url.username) : undefined,
    db: url.pathname.length > 1 ? Number(url.pathname.slice(1)) : 0,
    // Reconnect quickly after a restart or failover; cap the backoff at 1 s.
    retryStrategy: (times) => Math.min(50 * times, 1000),
    lazyConnect: false,
  };
  const roleOptions: RedisOptions =
    role === 'producer'
      ? {
          enableOfflineQueue: false,
          maxRetriesPerRequest: 1,
          connectTimeout: 2000,
          // A connection that is open but unanswered (Redis paused, a dropped route) would otherwise hold a
          // request forever: no socket error ever comes. Every producer command is a short one.
          commandTimeout: 3000,
        }
      : { maxRetriesPerRequest: null, enableReadyCheck: true };

  const client = config.sentinels
    ? new Redis({
        ...base,
        ...roleOptions,
        sentinels: config.sentinels,
        name: config.sentinelName,
        sentinelRetryStrategy: (times) => Math.min(100 * times, 1000),
        // Follow a failover: reconnect when the old master turns replica.
        reconnectOnError: (err) => err.message.startsWith('READONLY'),
      })
    : new Redis({
        ...base,
        ...roleOptions,
        host: url.hostname || '127.0.0.1',
        port: url.port ? Number(url.port) : 6379,
        tls: url.protocol === 'rediss:' ? {} : undefined,
        reconnectOnError: (err) => err.message.startsWith('READONLY'),
      });

  logErrors(client, role, logger);
  monitorLink(client, role, { ping: role !== 'blocking', logger });
  return client;
}

/**
 * REDIS_CLUSTER_NODES: ioredis's Cluster client. Per-node connection options go in `redisOptions`, except the offline
 * queue: a node connection is created lazily on its first command, which must wait for the connect (the producer
 * still fails fast: the Cluster-level offline queue is off and its node commands time out). Reads go to primaries
 * only (a replica may lag: a stream read there could miss audio just written). The link monitor is not used: the
 * Cluster client replaces node connections itself and re-reads the slot map every second, so a failover is
 * followed within about cluster-node-timeout plus a second.
 */
function createClusterClient(config: RedisConfig, role: RedisRole, logger?: Logger, name?: string): Cluster {
  const url = new URL(config.url);
  const nodeOptions: RedisOptions = {
    connectionName: name ?? `chorus-${role}`,
    password: url.password ? decodeURIComponent(url.password) : undefined,
    username: url.username ? decodeURIComponent(url.username) : undefined,
    tls: url.protocol === 'rediss:' ? {} : undefined,
    ...(role === 'producer'
      ? { maxRetriesPerRequest: 1, connectTimeout: 2000, commandTimeout: 3000 }
      : { maxRetriesPerRequest: null }),
  };
  const options: ClusterOptions = {
    redisOptions: nodeOptions,
    scaleReads: 'master',
    enableOfflineQueue: role !== 'producer',
    enableReadyCheck: true,
    clusterRetryStrategy: (times) => Math.min(100 * times, 1000),
    retryDelayOnFailover: 100,
    retryDelayOnClusterDown: 100,
    retryDelayOnTryAgain: 100,
    slotsRefreshInterval: 1000,
    // Commands to a failed primary are retried (after a slot refresh) until its replica has taken over; a
    // cluster-node-timeout of several seconds needs more than the default 16 tries at 100 ms.
    maxRedirections: role === 'producer' ? 16 : 1000,
  };
  const client = new Cluster(config.clusterNodes!, options);
  logErrors(client, role, logger);
  return client;
}

/** Without a listener ioredis prints unhandled 'error' events; log them once per state change instead. */
function logErrors(client: RedisClient, role: RedisRole, logger?: Logger): void {
  let lastMessage = '';
  client.on('error', (err: Error) => {
    if (err.message === lastMessage) return;
    lastMessage = err.message;
    logger?.warn({ err: err.message, role }, 'redis connection error');
  });
  client.on('ready', () => {
    lastMessage = '';
  });
}

/** Resolves once the client is ready, or rejects after `timeoutMs`. */
export function waitForReady(client: RedisClient, timeoutMs = 10_000): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`redis not ready after ${timeoutMs} ms (status ${client.status})`));
    }, timeoutMs);
    const onReady = () => {
      cleanup();
      resolve();
    };
    const cleanup = () => {
      clearTimeout(timer);
      client.off('ready', onReady);
    };
    client.on('ready', onReady);
  });
}

/** Resolves once a Redis at `url` answers PING (a server just spawned by the launcher, a test or a benchmark). */
export async function waitForRedisUp(url: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const c = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    c.on('error', () => {});
    try {
      await c.connect();
      await c.ping();
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`redis at ${url} did not answer within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 50));
    } finally {
      c.disconnect();
    }
  }
}
