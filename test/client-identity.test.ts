import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { Redis } from 'ioredis';
import type { FastifyRequest } from 'fastify';
import { ChorusError, ConfigError, loadApiConfig } from '@chorus/shared';
import { ClientIdentity } from '../apps/api/src/services/client-identity.ts';

const redis = new Redis(inject('redisUrl'));
// Nothing listens on port 1: every command fails at once, as with Redis down.
const down = new Redis('redis://127.0.0.1:1', { enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null });
down.on('error', () => {});
const secretKey = `t${randomUUID().slice(0, 8)}:identity-secret`;
afterAll(async () => {
  await redis.del(secretKey);
  redis.disconnect();
  down.disconnect();
});

const request = (client: ClientIdentity, token: string) => {
  const match = client.match(token);
  return { client: match?.role === 'user' ? match.key : undefined, ip: '192.0.2.1' } as FastifyRequest;
};

describe('ClientIdentity', () => {
  it('matches whole keys of any length only, and tells the admin key from user keys', () => {
    const id = new ClientIdentity({ apiKeys: ['sk-a', 'sk-longer-key'], adminApiKey: 'sk-admin', redis, secretKey });
    expect(id.match('sk-a')).toEqual({ role: 'user', key: { index: 0 } });
    expect(id.match('sk-longer-key')).toEqual({ role: 'user', key: { index: 1 } });
    expect(id.match('sk-admin')).toEqual({ role: 'admin' });
    for (const t of ['sk-', 'sk-aa', 'sk-longer', 'sk-longer-key ', 'SK-A', 'sk-admin ', 'sk-admi', '']) {
      expect(id.match(t), t).toBeUndefined();
    }
  });

  it('user keys are on with API_KEYS only: ADMIN_API_KEY alone leaves them off', () => {
    expect(new ClientIdentity({ apiKeys: [], redis, secretKey }).enabled).toBe(false);
    const adminOnly = new ClientIdentity({ apiKeys: [], adminApiKey: 'sk-admin', redis, secretKey });
    expect(adminOnly.enabled).toBe(false);
    expect(adminOnly.hasAdmin).toBe(true);
    expect(adminOnly.match('sk-admin')).toEqual({ role: 'admin' });
    expect(new ClientIdentity({ apiKeys: ['sk-a'], redis, secretKey }).hasAdmin).toBe(false);
  });

  it('refuses at start an ADMIN_API_KEY that is also one of API_KEYS (one key, one role)', () => {
    expect(() => loadApiConfig({ API_KEYS: 'sk-a,sk-admin', ADMIN_API_KEY: 'sk-admin' })).toThrow(ConfigError);
    expect(() => loadApiConfig({ API_KEYS: 'sk-a,sk-admin', ADMIN_API_KEY: 'sk-admin' })).toThrow(/ADMIN_API_KEY/);
    expect(loadApiConfig({ API_KEYS: 'sk-a', ADMIN_API_KEY: 'sk-admin' }).adminApiKey).toBe('sk-admin');
  });

  it('checks keys while Redis is down; names clients (503 until then) once it is back, as every replica does', async () => {
    const offline = new ClientIdentity({ apiKeys: ['sk-a'], redis: down, secretKey });
    const req = request(offline, 'sk-a');
    expect(req.client).toBeDefined();
    const err = await offline.owner(req).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ChorusError);
    expect((err as ChorusError).status).toBe(503);

    const replicas = [1, 2].map(() => new ClientIdentity({ apiKeys: ['sk-a', 'sk-b'], redis, secretKey }));
    const [one, two] = await Promise.all(replicas.map((r) => r.owner(request(r, 'sk-a'))));
    expect(one).toMatch(/^[0-9a-f]{32}$/);
    expect(two).toBe(one);
    expect(await replicas[0]!.owner(request(replicas[0]!, 'sk-b'))).not.toBe(one);
    expect(await replicas[0]!.clientId(request(replicas[0]!, 'sk-a'))).toBe(`k:${one}`);
    expect(await replicas[0]!.clientId({ ip: '192.0.2.1' } as FastifyRequest)).toBe('ip:192.0.2.1');
  });
});
