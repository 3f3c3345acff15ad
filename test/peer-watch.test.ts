import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import pino from 'pino';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { publishHeartbeat, RedisKeys, workerConnectionName, type WorkerInfo } from '@chorus/shared';
import { PeerWatch } from '../apps/worker/src/failover/peer-watch.ts';

/*
 * PeerWatch against the real Redis: a peer is a named connection plus a heartbeat, as a worker process has.
 */

const HEARTBEAT_TTL_MS = 300;
const clients: Redis[] = [];
const watches: PeerWatch[] = [];

afterEach(async () => {
  for (const w of watches.splice(0)) w.stop();
  for (const c of clients.splice(0)) c.disconnect();
});

function connect(name?: string): Promise<Redis> {
  const client = new Redis(inject('redisUrl'), { connectionName: name, maxRetriesPerRequest: 1 });
  clients.push(client);
  return new Promise((resolve, reject) => {
    client.once('ready', () => resolve(client));
    client.once('error', reject);
  });
}

function info(id: string): WorkerInfo {
  return { id, engines: ['espeak'], concurrency: 2, host: 'test', pid: 1, startedAt: Date.now(), accepting: true, lockOwners: [`${id}-bull`] };
}

/**
 * A peer (its named connection and a heartbeat with `heartbeatTtlMs`) and a started PeerWatch of another worker on
 * a fresh prefix; `dead` collects the peers it hands back.
 */
async function peerAndWatcher(heartbeatTtlMs: number) {
  const prefix = `t${randomUUID().replace(/-/g, '').slice(0, 12)}`;
  const keys = new RedisKeys(prefix);
  const peerConn = await connect(workerConnectionName(prefix, 'peer'));
  await publishHeartbeat(peerConn, keys, info('peer'), heartbeatTtlMs);
  const self = await connect(workerConnectionName(prefix, 'self'));
  const dead: WorkerInfo[] = [];
  const watch = new PeerWatch({
    redis: self, keys, prefix, selfId: 'self', pollMs: 50, logger: pino({ level: 'silent' }),
    onDead: async (peer) => void dead.push(peer),
  });
  watches.push(watch);
  watch.start();
  return { keys, peerConn, self, dead };
}

describe('PeerWatch', () => {
  it('hands back a peer that died during its own start-up grace, even once the peer\'s heartbeat has expired', async () => {
    const { keys, peerConn, self, dead } = await peerAndWatcher(HEARTBEAT_TTL_MS);
    // Inside the watcher's first 2 s (no one is declared dead then), the peer dies: its connection closes and its
    // heartbeat is never renewed, so it is gone from the registry long before the grace ends.
    await new Promise((r) => setTimeout(r, 300));
    peerConn.disconnect();
    await expect.poll(() => dead.map((p) => p.id), { timeout: 15_000, interval: 50 }).toEqual(['peer']);
    expect(dead[0]!.lockOwners).toEqual(['peer-bull']);
    await self.del(keys.workers(), keys.worker('peer'));
  });

  it('does not declare a live peer dead', async () => {
    // A heartbeat that outlives the test: only its connection tells whether it lives.
    const { keys, peerConn, self, dead } = await peerAndWatcher(60_000);
    // Past the grace, many looks.
    await new Promise((r) => setTimeout(r, 3_000));
    expect(dead).toEqual([]);
    // Then it dies: found.
    peerConn.disconnect();
    await expect.poll(() => dead.map((p) => p.id), { timeout: 15_000, interval: 50 }).toEqual(['peer']);
    await self.del(keys.workers(), keys.worker('peer'));
  });
});
