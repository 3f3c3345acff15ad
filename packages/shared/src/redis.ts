import { Redis, type RedisOptions } from 'ioredis';
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

/** `name` replaces the connection's default CLIENT SETNAME (`chorus-<role>`), e.g. workerConnectionName(). */
export function createRedisClient(config: RedisConfig, role: RedisRole, logger?: Logger, name?: string): Redis {
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

  // Without a listener ioredis prints unhandled 'error' events; log them once per state change instead.
  let lastMessage = '';
  client.on('error', (err: Error) => {
    if (err.message === lastMessage) return;
    lastMessage = err.message;
    logger?.warn({ err: err.message, role }, 'redis connection error');
  });
  client.on('ready', () => {
    lastMessage = '';
  });
  monitorLink(client, role, { ping: role !== 'blocking', logger });
  return client;
}

/** Resolves once the client is ready, or rejects after `timeoutMs`. */
export function waitForReady(client: Redis, timeoutMs = 10_000): Promise<void> {
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
