import fp from 'fastify-plugin';
import { ChorusError, type ApiConfig } from '@chorus/shared';

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * `public`: no key needed; `discovery`: no key needed while PUBLIC_DISCOVERY is on; `metrics`: as
     * METRICS_AUTH says (`public`, any `key`, or the `admin` key).
     */
    auth?: 'public' | 'discovery' | 'metrics';
  }
}

/**
 * Bearer keys: on when API_KEYS or ADMIN_API_KEY is set, open otherwise. ADMIN_API_KEY is accepted everywhere a
 * key is. A verified key is left on `request.client` for the rate limit and job ownership (services/client-identity).
 */
export const authPlugin = fp<{ publicDiscovery: boolean; metricsAuth: ApiConfig['metricsAuth'] }>(
  async (app, opts) => {
    const identity = app.identity;
    if (!identity.enabled) return;
    app.addHook('onRequest', async (request) => {
      if (request.method === 'OPTIONS') return;
      const mode = request.routeOptions.config?.auth;
      const header = request.headers.authorization ?? '';
      const match = /^Bearer\s+(.+)$/i.exec(header);
      const token = match?.[1]?.trim();
      const client = token ? identity.match(token) : undefined;
      const open = mode === 'public' || (mode === 'discovery' && opts.publicDiscovery) ||
        (mode === 'metrics' && opts.metricsAuth === 'public');
      if (open) {
        // No key needed here, but a valid one still counts against its own budget rather than the address's.
        request.client = client;
        return;
      }
      if (!client) {
        throw new ChorusError(
          'TTS_ERR_AUTH',
          token ? 'Incorrect API key provided.' : 'You did not provide an API key (Authorization: Bearer <key>).',
        );
      }
      if (mode === 'metrics' && opts.metricsAuth === 'admin' && !client.admin) {
        throw new ChorusError('TTS_ERR_AUTH', 'This route needs the admin key (METRICS_AUTH=admin).');
      }
      request.client = client;
    });
  },
  { name: 'auth', dependencies: ['services'] },
);
