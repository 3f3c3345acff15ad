import fp from 'fastify-plugin';
import { timingSafeEqual } from 'node:crypto';
import { ChorusError } from '@chorus/shared';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** `public`: no key needed; `discovery`: no key needed while PUBLIC_DISCOVERY is on. */
    auth?: 'public' | 'discovery';
  }
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Optional Bearer keys (API_KEYS); unset = open. ADMIN_API_KEY is accepted everywhere a key is. */
export const authPlugin = fp<{ apiKeys: string[]; adminApiKey?: string; publicDiscovery: boolean }>(
  async (app, opts) => {
    const keys = [...opts.apiKeys, ...(opts.adminApiKey ? [opts.adminApiKey] : [])];
    if (opts.apiKeys.length === 0) return;
    app.addHook('onRequest', async (request) => {
      if (request.method === 'OPTIONS') return;
      const mode = request.routeOptions.config?.auth;
      if (mode === 'public' || (mode === 'discovery' && opts.publicDiscovery)) return;
      const header = request.headers.authorization ?? '';
      const match = /^Bearer\s+(.+)$/i.exec(header);
      const token = match?.[1]?.trim();
      if (!token || !keys.some((k) => safeEqual(k, token))) {
        throw new ChorusError(
          'TTS_ERR_AUTH',
          token ? 'Incorrect API key provided.' : 'You did not provide an API key (Authorization: Bearer <key>).',
        );
      }
    });
  },
  { name: 'auth' },
);
