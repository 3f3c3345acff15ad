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

describe('PeerWatch', () => {
  it('hands back a peer that died during its own start-up grace, even once the peer\'s heartbeat has expired', async () => {
    const prefix = `t${randomUUID().replace(/-/g, '').slice(0, 12)}`;
    const keys = new RedisKeys(prefix);
    const peerConn = await connect(workerConnectionName(prefix, 'peer'));
    await publishHeartbeat(peerConn, keys, info('peer'), HEARTBEAT_TTL_MS);
    const self = await connect(workerConnectionName(prefix, 'self'));
    const dead: WorkerInfo[] = [];
    const watch = new PeerWatch({
      redis: self, keys, prefix, selfId: 'self', pollMs: 50, logger: pino({ level: 'silent' }),
      onDead: async (peer) => void dead.push(peer),
    });
    watches.push(watch);
    watch.start();
    // Inside the watcher's first 2 s (no one is declared dead then), the peer dies: its connection closes and its
    // heartbeat is never renewed, so it is gone from the registry long before the grace ends.
    await new Promise((r) => setTimeout(r, 300));
    peerConn.disconnect();
    await expect.poll(() => dead.map((p) => p.id), { timeout: 15_000, interval: 50 }).toEqual(['peer']);
    expect(dead[0]!.lockOwners).toEqual(['peer-bull']);
    await self.del(keys.workers(), keys.worker('peer'));
  });

  it('does not declare a live peer dead', async () => {
    const prefix = `t${randomUUID().replace(/-/g, '').slice(0, 12)}`;
    const keys = new RedisKeys(prefix);
    const peerConn = await connect(workerConnectionName(prefix, 'peer'));
    const beat = () => publishHeartbeat(peerConn, keys, info('peer'), 60_000);
    await beat();
    const self = await connect(workerConnectionName(prefix, 'self'));
    const dead: WorkerInfo[] = [];
    const watch = new PeerWatch({
      redis: self, keys, prefix, selfId: 'self', pollMs: 50, logger: pino({ level: 'silent' }),
      onDead: async (peer) => void dead.push(peer),
    });
    watches.push(watch);
    watch.start();
    // Past the grace, many looks.
    await new Promise((r) => setTimeout(r, 3_000));
    expect(dead).toEqual([]);
    // Then it dies: found.
    peerConn.disconnect();
    await expect.poll(() => dead.map((p) => p.id), { timeout: 15_000, interval: 50 }).toEqual(['peer']);
    await self.del(keys.workers(), keys.worker('peer'));
  });
});
