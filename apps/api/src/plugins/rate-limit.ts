import fp from 'fastify-plugin';
import rateLimit from '@fastify/rate-limit';
import { ChorusError } from '@chorus/shared';
import { hasAdminCredentials } from './auth.ts';

/**
 * Probes and scrapes must keep working for a client that is over its limit. /admin/*: the operator's dashboard
 * polls and must not spend (nor be stopped by) the budget of the clients behind the same address — once it has
 * the admin's credentials. Sign-in attempts and wrong keys count like any request, so the admin key cannot be
 * guessed at an unlimited rate.
 */
const EXEMPT_PATHS = new Set(['/healthz', '/readyz', '/metrics']);

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
      // A key the auth plugin verified, else the client address: an unknown Bearer value never gets a budget.
      // Should the identity secret be out of reach (Redis down), the address: the store then fails and steps aside.
      keyGenerator: (request) => app.identity.clientId(request).catch(() => `ip:${request.ip}`),
      allowList: (request) => {
        const path = request.url.split('?')[0] ?? '';
        if (EXEMPT_PATHS.has(path)) return true;
        return (path === '/admin' || path.startsWith('/admin/')) && hasAdminCredentials(app.identity, request);
      },
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
