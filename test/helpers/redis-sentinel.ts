import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { askRedis as ask, freePort, startRedisServer, type RedisServer } from './redis-server.ts';
import { track } from './child-cleanup.ts';

export const SENTINEL_MASTER_NAME = 'mymaster';

export interface SentinelSet {
  master: RedisServer;
  replica: RedisServer;
  /** `host:port,...` as REDIS_SENTINELS takes it. */
  sentinels: string;
  /** Asks a sentinel which address it currently reports as master. */
  masterAddress(): Promise<string>;
  stop(): Promise<void>;
}

/**
 * A test-owned Sentinel deployment: master + one replica + three sentinels (quorum 2), all on free ports in temp
 * dirs. Sentinels are `redis-server --sentinel` (the Debian redis-server binary; no redis-sentinel package).
 * down-after-milliseconds 1000 so a failover completes in a few seconds.
 */
export async function startSentinelSet(): Promise<SentinelSet> {
  // Redis 7 waits 5 s before a diskless full sync by default: the replica would lag the test by that much.
  const master = await startRedisServer({ extraArgs: ['--repl-diskless-sync-delay', '0'] });
  const replica = await startRedisServer({ extraArgs: ['--replicaof', '127.0.0.1', String(master.port)] });
  const sentinels: { port: number; dir: string; process: ChildProcess }[] = [];
  for (let i = 0; i < 3; i++) {
    const port = await freePort();
    const dir = mkdtempSync(path.join(tmpdir(), 'chorus-sentinel-'));
    const conf = path.join(dir, 'sentinel.conf'); // sentinels rewrite their config: it must be writable
    writeFileSync(conf, [
      `port ${port}`, 'bind 127.0.0.1', `dir ${dir}`,
      `sentinel monitor ${SENTINEL_MASTER_NAME} 127.0.0.1 ${master.port} 2`,
      `sentinel down-after-milliseconds ${SENTINEL_MASTER_NAME} 1000`,
      `sentinel failover-timeout ${SENTINEL_MASTER_NAME} 5000`,
      `sentinel parallel-syncs ${SENTINEL_MASTER_NAME} 1`, '',
    ].join('\n'));
    sentinels.push({ port, dir, process: track(spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' })) });
  }

  const set: SentinelSet = {
    master,
    replica,
    sentinels: sentinels.map((s) => `127.0.0.1:${s.port}`).join(','),
    async masterAddress() {
      const [host, port] = (await ask(sentinels[0]!.port, (c) =>
        c.call('SENTINEL', 'get-master-addr-by-name', SENTINEL_MASTER_NAME))) as [string, string];
      return `${host}:${port}`;
    },
    async stop() {
      for (const s of sentinels) {
        if (s.process.exitCode === null && s.process.signalCode === null) {
          const exited = new Promise((r) => s.process.once('exit', r));
          s.process.kill('SIGKILL');
          await exited;
        }
        rmSync(s.dir, { recursive: true, force: true });
      }
      await replica.stop();
      await master.stop();
    },
  };

  // Ready when the replica is in sync and every sentinel knows it and the two other sentinels: only then can
  // they agree on a failover.
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      const info = await ask(replica.port, (c) => c.info('replication'));
      const ok = !info.includes('master_link_status:up') ? [false] : await Promise.all(sentinels.map((s) => ask(s.port, async (c) => {
        const replicas = (await c.call('SENTINEL', 'replicas', SENTINEL_MASTER_NAME)) as string[][];
        const peers = (await c.call('SENTINEL', 'sentinels', SENTINEL_MASTER_NAME)) as unknown[];
        const flags = replicas[0] ? replicas[0][replicas[0].indexOf('flags') + 1] : '';
        return replicas.length === 1 && flags === 'slave' && peers.length === 2;
      })));
      if (ok.every(Boolean)) break;
    } catch {
      // sentinels still starting
    }
    if (Date.now() > deadline) {
      await set.stop();
      throw new Error('sentinels did not see the replica and each other in time');
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return set;
}
