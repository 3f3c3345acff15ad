import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyPluginAsync } from 'fastify';
import fastifyStatic from '@fastify/static';

/** Plain HTML, one ES module and a stylesheet, shipped as they are (no build step). */
export const PLAYGROUND_ROOT = fileURLToPath(new URL('../../public/playground/', import.meta.url));

/**
 * The headers every HTML page of the API sends: scripts and styles from this origin only (no inline code, no
 * remote origins), API calls to this origin only, audio from this origin or from blob: URLs (MediaSource and the
 * finished file), and no framing.
 */
export const PAGE_SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "connect-src 'self'",
    "media-src 'self' blob:",
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; '),
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
};

/**
 * `GET /`: the browser playground, and its files under `/playground/`. The pages are public like the discovery
 * routes; the speech requests the page makes carry the key the user types, so auth, CORS and rate limits treat
 * them as any other API call.
 */
export const playgroundRoutes: FastifyPluginAsync = async (app) => {
  // Everything registered in this (encapsulated) plugin is a public page or asset.
  app.addHook('onRoute', (route) => {
    route.config = { ...route.config, auth: 'public' };
  });
  app.addHook('onSend', async (_request, reply, payload) => {
    reply.headers(PAGE_SECURITY_HEADERS);
    return payload;
  });

  await app.register(fastifyStatic, {
    root: PLAYGROUND_ROOT,
    prefix: '/playground/',
    // One route per shipped file, named in the metrics, instead of a wildcard that probes the disk per request.
    wildcard: false,
    index: false,
    // A new release must not be mixed with a cached old module: revalidate (ETag) on every load.
    cacheControl: true,
    maxAge: 0,
  });

  // The page and its files are not API operations: left out of /openapi.json (@fastify/static hides its own).
  app.get('/', { schema: { hide: true } }, (_request, reply) => reply.sendFile('index.html'));

  /** What the page cannot know otherwise: whether to ask for a key, and the input limit for its counter. */
  app.get('/playground/config.json', { schema: { hide: true } }, async () => ({
    auth_required: app.identity.enabled,
    public_discovery: app.config.publicDiscovery,
    max_input_chars: app.config.maxInputChars,
  }));
};
