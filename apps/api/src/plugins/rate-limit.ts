import fp from 'fastify-plugin';
import { createHash } from 'node:crypto';
import rateLimit from '@fastify/rate-limit';
import type { FastifyRequest } from 'fastify';
import { ChorusError } from '@chorus/shared';

/** Probes and scrapes must keep working for a client that is over its limit. */
const EXEMPT_PATHS = new Set(['/healthz', '/readyz', '/metrics']);

/**
 * The client a request counts against: its API key (hashed, so keys never appear in Redis key names), else its
 * IP when the service is open (API_KEYS unset).
 */
function clientKey(request: FastifyRequest): string {
  const match = /^Bearer\s+(.+)$/i.exec(request.headers.authorization ?? '');
  const token = match?.[1]?.trim();
  if (token) return `k:${createHash('sha256').update(token).digest('hex').slice(0, 32)}`;
  return `ip:${request.ip}`;
}

/**
 * RATE_LIMIT_PER_MIN per client per minute, counted in Redis (@fastify/rate-limit's RedisStore) so every API
 * replica shares one budget. Registered after auth, so its hook runs after the key check: a wrong key is a 401
 * and does not spend anybody's budget. When Redis is down the limiter steps aside (`skipOnError`) and the
 * request meets the 503 it would get anyway.
 */
export const rateLimitPlugin = fp<{ perMinute: number }>(
  async (app, opts) => {
    await app.register(rateLimit, {
      global: true,
      max: opts.perMinute,
      timeWindow: 60_000,
      redis: app.redis,
      nameSpace: app.keys.rateLimitNamespace(),
      skipOnError: true,
      keyGenerator: clientKey,
      allowList: (request) => EXEMPT_PATHS.has(request.url.split('?')[0] ?? ''),
      // Our own `retry-after` / `retry-after-ms` come from the error (sendError); keep the X-RateLimit-* ones.
      addHeaders: { 'retry-after': false },
      errorResponseBuilder: (_request, context) =>
        new ChorusError(
          'TTS_ERR_RATE_LIMITED',
          `Rate limit reached: ${context.max} requests per minute. Retry in ${context.after}.`,
          { retryAfterS: Math.max(0.001, context.ttl / 1000) },
        ),
    });
  },
  { name: 'rate-limit', dependencies: ['services', 'auth'] },
);
