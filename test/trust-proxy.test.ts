import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { loadApiConfig } from '@chorus/shared';
import { ROOT, startStack, type Stack } from './helpers/stack.ts';

/*
 * Behind the compose gateway every request arrives from the proxy: TRUST_PROXY makes per-IP limits per client,
 * and only the gateway may say who the client is. Requests are injected with the socket address they would
 * have: the gateway's, or a client's that reaches the API directly (another container, a leaked port).
 */

const compose = readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8');
/** The api service's TRUST_PROXY and the gateway's fixed address, as docker-compose.yml sets them. */
const COMPOSE_TRUST_PROXY = /^\s+TRUST_PROXY: ["']?([^"'\s]+)/m.exec(compose)?.[1] ?? '';
const GATEWAY = /^\s+ipv4_address: ["']?([^"'\s]+)/m.exec(compose)?.[1] ?? '172.29.85.10';
const DIRECT = '172.29.85.200'; // any other address on the compose network, or outside it

describe('TRUST_PROXY and per-IP rate limits', () => {
  let stack: Stack | undefined;
  afterEach(async () => {
    await stack?.stop();
    stack = undefined;
  });

  async function statusFrom(remoteAddress: string, forwardedFor?: string) {
    const res = await stack!.app.inject({
      method: 'POST',
      url: '/v1/audio/speech',
      remoteAddress,
      headers: { 'content-type': 'application/json', ...(forwardedFor ? { 'x-forwarded-for': forwardedFor } : {}) },
      payload: { model: 'tts-1', voice: 'alloy', input: 'Hi.' },
    });
    return res.statusCode;
  }

  it('as compose sets it: each client the gateway forwards has its own budget', async () => {
    stack = await startStack({ redisUrl: inject('redisUrl'), workers: 0, apiEnv: { RATE_LIMIT_PER_MIN: '1', TRUST_PROXY: COMPOSE_TRUST_PROXY } });
    expect(await statusFrom(GATEWAY, '198.51.100.1')).not.toBe(429);
    expect(await statusFrom(GATEWAY, '198.51.100.1')).toBe(429);
    expect(await statusFrom(GATEWAY, '198.51.100.2')).not.toBe(429);
    // Were a proxy to append to a forged header, the hop the gateway added still wins.
    expect(await statusFrom(GATEWAY, '203.0.113.50, 198.51.100.2')).toBe(429);
  });

  it('as compose sets it: a client reaching the API directly cannot choose its address by X-Forwarded-For', async () => {
    stack = await startStack({ redisUrl: inject('redisUrl'), workers: 0, apiEnv: { RATE_LIMIT_PER_MIN: '1', TRUST_PROXY: COMPOSE_TRUST_PROXY } });
    expect(await statusFrom(DIRECT, '198.51.100.7')).not.toBe(429);
    expect(await statusFrom(DIRECT, '198.51.100.8')).toBe(429);
    expect(await statusFrom(DIRECT)).toBe(429);
    expect(await statusFrom(GATEWAY, '198.51.100.9')).not.toBe(429); // the gateway's clients are unaffected
  });

  it('a hop count trusts exactly that many hops', async () => {
    stack = await startStack({ redisUrl: inject('redisUrl'), workers: 0, apiEnv: { RATE_LIMIT_PER_MIN: '1', TRUST_PROXY: '1' } });
    expect(await statusFrom(GATEWAY, '203.0.113.1, 198.51.100.1')).not.toBe(429);
    // Same nearest hop, different forged first entry: still one client.
    expect(await statusFrom(GATEWAY, '203.0.113.2, 198.51.100.1')).toBe(429);
    expect(await statusFrom(GATEWAY, '203.0.113.1, 198.51.100.2')).not.toBe(429);
  });

  it('without it, the forwarded header is ignored (it could be forged): one budget for the proxy address', async () => {
    stack = await startStack({ redisUrl: inject('redisUrl'), workers: 0, apiEnv: { RATE_LIMIT_PER_MIN: '1' } });
    expect(await statusFrom(GATEWAY, '198.51.100.1')).not.toBe(429);
    expect(await statusFrom(GATEWAY, '198.51.100.2')).toBe(429);
  });
});

describe('TRUST_PROXY values', () => {
  const parse = (v: string) => loadApiConfig({ TRUST_PROXY: v }).trustProxy;
  it('accepts true, a hop count, and addresses/CIDRs; refuses anything else', () => {
    expect(parse('true')).toBe(true);
    expect(parse('2')).toBe(2);
    expect(parse('172.29.85.10, 10.0.0.0/8,::1,fd00::/8,loopback')).toEqual(['172.29.85.10', '10.0.0.0/8', '::1', 'fd00::/8', 'loopback']);
    for (const bad of ['gateway', '10.0.0.0/33', '1.2.3', 'yes']) expect(() => parse(bad), bad).toThrow(/TRUST_PROXY/);
  });
});
