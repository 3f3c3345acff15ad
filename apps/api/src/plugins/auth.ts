import fp from 'fastify-plugin';
import { fastifyCookie } from '@fastify/cookie';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ChorusError, type ApiConfig } from '@chorus/shared';
import type { ClientIdentity } from '../services/client-identity.ts';
import { sendError } from './errors.ts';

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * `public`: no key needed; `discovery`: no key needed while PUBLIC_DISCOVERY is on; `metrics`: as
     * METRICS_AUTH says (`public`, any `key`, or the `admin` key); `admin`: the admin key only, checked by
     * {@link adminGuard} (routes/admin.ts marks its routes so). Unset: a user route (API_KEYS).
     */
    auth?: 'public' | 'discovery' | 'metrics' | 'admin';
  }
}

const bearer = (request: FastifyRequest) => /^Bearer\s+(.+)$/i.exec(request.headers.authorization ?? '')?.[1]?.trim();

const ADMIN_KEY_ON_USER_ROUTE =
  'This is the admin key (ADMIN_API_KEY): it opens /admin/* and /metrics only, never /v1/* or /api/*. Use a key from API_KEYS.';

/**
 * Two roles. User keys (API_KEYS): user routes need one when API_KEYS is set and are open otherwise. The admin
 * key (ADMIN_API_KEY): admin routes and, as METRICS_AUTH says, /metrics; it is refused on user routes (401 that
 * says so) even while they are open, so a client given the wrong key finds out at once. A verified user key is left
 * on `request.client` for the rate limit and job ownership (services/client-identity).
 */
export const authPlugin = fp<{ publicDiscovery: boolean; metricsAuth: ApiConfig['metricsAuth'] }>(
  async (app, opts) => {
    const identity = app.identity;
    if (!identity.enabled && !identity.hasAdmin) return;
    app.addHook('onRequest', async (request) => {
      if (request.method === 'OPTIONS') return;
      const mode = request.routeOptions.config?.auth;
      if (mode === 'admin') return; // adminGuard, in the admin routes' own context (cookie sessions live there)
      // No user route lives under /admin: an unmatched one is the plain 404 (as every admin URL is without ADMIN_API_KEY).
      if (request.routeOptions.url === undefined && /^\/admin(\/|\?|$)/.test(request.url)) return;
      const token = bearer(request);
      const match = token ? identity.match(token) : undefined;
      const client = match?.role === 'user' ? match.key : undefined;
      const open = mode === 'public' || (mode === 'discovery' && opts.publicDiscovery) ||
        (mode === 'metrics' && opts.metricsAuth === 'public');
      if (open) {
        // No key needed here, but a valid one still counts against its own budget rather than the address's.
        request.client = client;
        return;
      }
      if (mode === 'metrics') {
        // An operator's route: with any key configured it needs one (`key`: a user key or the admin key).
        if (match?.role === 'admin' || (client && opts.metricsAuth === 'key')) return;
        const reason = opts.metricsAuth === 'admin'
          ? identity.hasAdmin
            ? 'This route needs the admin key (METRICS_AUTH=admin).'
            : 'This route needs the admin key (METRICS_AUTH=admin), and ADMIN_API_KEY is not set.'
          : token
            ? 'Incorrect API key provided.'
            : 'You did not provide an API key (Authorization: Bearer <key>).';
        throw new ChorusError('TTS_ERR_AUTH', reason);
      }
      if (match?.role === 'admin') throw new ChorusError('TTS_ERR_AUTH', ADMIN_KEY_ON_USER_ROUTE);
      if (!identity.enabled) return; // user routes are open without API_KEYS
      if (!client) {
        throw new ChorusError(
          'TTS_ERR_AUTH',
          token ? 'Incorrect API key provided.' : 'You did not provide an API key (Authorization: Bearer <key>).',
        );
      }
      request.client = client;
    });
  },
  { name: 'auth', dependencies: ['services'] },
);

/** The admin session cookie (routes/admin.ts sets it at login, signed with ClientIdentity.adminCookieSecret). */
export const ADMIN_COOKIE = 'chorus_admin';

/**
 * Whether a request carries the admin's credentials: the admin key as Bearer, or a session cookie whose signature
 * holds and whose end has not passed. For hooks outside the admin routes (the rate limit), where the cookie plugin
 * is not registered.
 */
export function hasAdminCredentials(identity: ClientIdentity, request: FastifyRequest): boolean {
  const token = bearer(request);
  if (token) return identity.match(token)?.role === 'admin';
  const secret = identity.adminCookieSecret();
  const header = request.headers.cookie;
  if (!secret || !header) return false;
  const value = fastifyCookie.parse(header)[ADMIN_COOKIE];
  if (!value) return false;
  const session = fastifyCookie.unsign(value, secret);
  return session.valid && Number(session.value) > Date.now();
}

/**
 * The admin routes' check: `Authorization: Bearer <ADMIN_API_KEY>` or a signed, unexpired session cookie.
 * No key → 401, a user key → 403, anything else → 401. Sends the envelope itself rather than throwing: bull-board
 * gives its routes an error handler of its own.
 */
export function adminGuard(identity: ClientIdentity) {
  return async (request: FastifyRequest, reply: FastifyReply) => {
    const token = bearer(request);
    if (token) {
      const match = identity.match(token);
      if (match?.role === 'admin') return;
      if (match?.role === 'user') {
        return sendError(reply, new ChorusError('TTS_ERR_PERMISSION_DENIED', 'This route needs the admin key (ADMIN_API_KEY); a key from API_KEYS is not enough.'));
      }
      return sendError(reply, new ChorusError('TTS_ERR_AUTH', 'Incorrect admin key provided.'));
    }
    const cookie = request.cookies[ADMIN_COOKIE];
    if (cookie) {
      const session = request.unsignCookie(cookie);
      // The signed value is the session's end (epoch ms): a copied cookie stops working then, whatever Max-Age said.
      if (session.valid && Number(session.value) > Date.now()) return;
    }
    return sendError(
      reply,
      new ChorusError(
        'TTS_ERR_AUTH',
        cookie
          ? 'Your admin session has expired or is no longer valid: sign in again at /admin/login.'
          : 'This route needs the admin key: send Authorization: Bearer <ADMIN_API_KEY>, or sign in at /admin/login.',
      ),
    );
  };
}
