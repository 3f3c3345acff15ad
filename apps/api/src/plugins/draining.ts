import fp from 'fastify-plugin';
import { ChorusError } from '@chorus/shared';

/** Probes and scrapes answer while draining: /readyz is how a load balancer learns that we are going away. */
const PROBE_PATHS = new Set(['/healthz', '/readyz', '/metrics']);

/**
 * After SIGTERM (`app.draining`, set by server.ts) the process keeps listening while its in-flight streams
 * finish, so new requests get our JSON 503 `shutting_down` with a Retry-After (a retrying client lands on another
 * replica) instead of a refused connection or Fastify's own non-envelope 503.
 */
export const drainingPlugin = fp(
  async (app) => {
    app.addHook('onRequest', async (request) => {
      if (!app.draining || PROBE_PATHS.has(request.url.split('?')[0] ?? '')) return;
      throw new ChorusError('TTS_ERR_SHUTTING_DOWN', 'This server is shutting down; retry on another instance.', {
        retryAfterS: 1,
      });
    });
  },
  { name: 'draining', dependencies: ['services'] },
);
