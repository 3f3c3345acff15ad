import type {} from 'vitest';
import type { TestProject } from 'vitest/node';
import { Redis } from 'ioredis';
import { startRedisServer, type RedisServer } from './redis-server.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
  }
}

let server: RedisServer | undefined;

async function reachable(url: string): Promise<boolean> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1000 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.ping();
    return true;
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

/** Uses TEST_REDIS_URL, else a Redis on 127.0.0.1:6379, else starts a private redis-server for the run. */
export async function setup(project: TestProject) {
  let url = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
  if (!(await reachable(url))) {
    server = await startRedisServer();
    url = server.url;
  }
  project.provide('redisUrl', url);
}

export async function teardown() {
  await server?.stop();
}
