import { describe, expect, it } from 'vitest';
import { ConfigError, loadWorkerConfig } from './config.ts';
import { createRedisClient, isCluster } from './redis.ts';

describe('REDIS_CLUSTER_NODES', () => {
  it('parses a host:port list into the cluster seeds; unset leaves standalone as it was', () => {
    const config = loadWorkerConfig({ REDIS_CLUSTER_NODES: '10.0.0.1:7000, redis-1.internal:7001' });
    expect(config.redis.clusterNodes).toEqual([{ host: '10.0.0.1', port: 7000 }, { host: 'redis-1.internal', port: 7001 }]);
    expect(loadWorkerConfig({}).redis.clusterNodes).toBeUndefined();
  });

  it('refuses a malformed entry and the combination with REDIS_SENTINELS', () => {
    expect(() => loadWorkerConfig({ REDIS_CLUSTER_NODES: '10.0.0.1' })).toThrow(/REDIS_CLUSTER_NODES/);
    expect(() => loadWorkerConfig({ REDIS_CLUSTER_NODES: '10.0.0.1:7000', REDIS_SENTINELS: '10.0.0.2:26379' }))
      .toThrow(ConfigError);
  });

  it('makes createRedisClient return a Cluster client (and a plain one without it)', () => {
    // Port 1 refuses at once: only the kind of client matters here.
    const cluster = createRedisClient(loadWorkerConfig({ REDIS_CLUSTER_NODES: '127.0.0.1:1' }).redis, 'producer');
    const single = createRedisClient(loadWorkerConfig({ REDIS_URL: 'redis://127.0.0.1:1' }).redis, 'producer');
    try {
      expect(isCluster(cluster)).toBe(true);
      expect(isCluster(single)).toBe(false);
    } finally {
      cluster.disconnect();
      single.disconnect();
    }
  });
});
