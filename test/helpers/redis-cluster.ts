import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { askRedis as ask, startRedisServer, type RedisServer } from './redis-server.ts';

const run = promisify(execFile);

export interface RedisClusterSet {
  /** Every node, primaries first as created (a replica may be promoted later). */
  nodes: RedisServer[];
  /** `host:port,...` of every node, as REDIS_CLUSTER_NODES takes it. */
  seeds: string;
  /** The node that currently serves `key`'s slot as primary (CLUSTER SLOTS asked of a live node). */
  primaryFor(key: string): Promise<RedisServer>;
  /** True once every slot is served by a primary that answers and the cluster state is ok. */
  healthy(): Promise<boolean>;
  stop(): Promise<void>;
}

/**
 * A test-owned Redis Cluster: 3 primaries + 3 replicas (`redis-server --cluster-enabled yes` on free ports in temp
 * dirs, joined by `redis-cli --cluster create`). cluster-node-timeout 2000 ms, so a killed primary's replica takes
 * over within a few seconds. Never touches the shared Redis.
 */
export async function startRedisCluster(opts: { nodeTimeoutMs?: number } = {}): Promise<RedisClusterSet> {
  const nodes: RedisServer[] = [];
  const timeout = String(opts.nodeTimeoutMs ?? 2000);
  try {
    for (let i = 0; i < 6; i++) {
      nodes.push(await startRedisServer({
        extraArgs: [
          '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', timeout,
          // A replica must be allowed to take over at once, however long its link was down in the test.
          '--cluster-replica-validity-factor', '0',
          '--repl-diskless-sync-delay', '0',
        ],
      }));
    }
    await run('redis-cli', [
      '--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '1', '--cluster-yes',
    ], { timeout: 60_000 });
  } catch (err) {
    for (const n of nodes) await n.stop();
    throw err;
  }

  const live = () => nodes.filter((n) => n.running);
  const slots = async () => {
    for (const n of live()) {
      try {
        return (await ask(n.port, (c) => c.cluster('SLOTS'))) as unknown as [number, number, [string, number, string]][];
      } catch {
        // try the next node
      }
    }
    throw new Error('no cluster node answers');
  };

  const set: RedisClusterSet = {
    nodes,
    seeds: nodes.map((n) => `127.0.0.1:${n.port}`).join(','),
    async primaryFor(key) {
      const slot = (await ask(live()[0]!.port, (c) => c.cluster('KEYSLOT', key))) as number;
      const range = (await slots()).find(([from, to]) => slot >= from && slot <= to);
      const port = range?.[2][1];
      const node = nodes.find((n) => n.port === port);
      if (!node) throw new Error(`no primary serves slot ${slot}`);
      return node;
    },
    async healthy() {
      try {
        const ranges = await slots();
        let covered = 0;
        for (const [from, to, [, port]] of ranges) {
          const node = nodes.find((n) => n.port === port);
          if (!node?.running) return false;
          const info = await ask(port, (c) => c.cluster('INFO')) as string;
          if (!info.includes('cluster_state:ok')) return false;
          covered += to - from + 1;
        }
        return covered === 16384;
      } catch {
        return false;
      }
    },
    async stop() {
      for (const n of nodes) await n.stop();
    },
  };

  const deadline = Date.now() + 30_000;
  while (!(await set.healthy())) {
    if (Date.now() > deadline) {
      await set.stop();
      throw new Error('redis cluster did not become healthy');
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  // Replicas in sync, so that a primary killed at once is replaced by a replica holding its data.
  for (const n of nodes) {
    for (;;) {
      const info = await ask(n.port, (c) => c.info('replication'));
      if (info.includes('role:master') || info.includes('master_link_status:up')) break;
      if (Date.now() > deadline) {
        await set.stop();
        throw new Error('cluster replicas did not sync');
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  return set;
}
