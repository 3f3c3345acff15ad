import { createHash } from 'node:crypto';
import type { FastifyPluginAsync } from 'fastify';
import cookie from '@fastify/cookie';
import type { Queue } from 'bullmq';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import { LANES, speechQueueName, type Lane } from '@chorus/shared';
import { ADMIN_COOKIE, adminGuard } from '../plugins/auth.ts';
import { sendError, toChorusError } from '../plugins/errors.ts';

/** How long a browser sign-in lasts; the end is inside the signed cookie value, not only in Max-Age. */
const SESSION_MS = 8 * 3600_000;

const LOGIN_CSS = 'body{font-family:system-ui,sans-serif;max-width:26rem;margin:4rem auto;padding:0 1rem}' +
  'label,input,button{display:block;width:100%;box-sizing:border-box;margin:.4rem 0}input,button{padding:.5rem}' +
  '.error{color:#b00020}';
const cspHash = (text: string) => `'sha256-${createHash('sha256').update(text).digest('base64')}'`;

/** The sign-in page: nothing but our own hashed style and a same-origin form. */
const LOGIN_CSP = `default-src 'none'; style-src ${cspHash(LOGIN_CSS)}; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`;

/**
 * The dashboard, as strict as bull-board's UI allows (found in Chromium: test/admin-browser.test.ts walks the
 * pages and dialogs and fails on any violation): scripts, styles, images, fonts and API calls from this origin
 * only, no inline or eval'd script. `style-src 'unsafe-inline'`: the UI injects <style> elements and sets style
 * attributes. Google Fonts: the page's link to them is removed (onSend below), so the page makes no third-party
 * request and falls back to local fonts.
 */
export const DASHBOARD_CSP = [
  "default-src 'none'", "script-src 'self'", "style-src 'self' 'unsafe-inline'", "img-src 'self'", "font-src 'self'",
  "connect-src 'self'", "base-uri 'self'", "form-action 'self'", "frame-ancestors 'none'",
].join('; ');

const GOOGLE_FONTS_LINK = /<link\b[^>]*href="https:\/\/fonts\.googleapis\.com\/[^"]*"[^>]*>\s*/g;

function loginPage(message?: string): string {
  // `message` is always one of our fixed strings, never request input.
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>Chorus admin: sign in</title><style>${LOGIN_CSS}</style></head>
<body><main><h1>Chorus admin</h1>${message ? `<p class="error" role="alert">${message}</p>` : ''}
<form method="post" action="/admin/login"><label for="key">Admin key (ADMIN_API_KEY)</label>
<input id="key" name="key" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Sign in</button></form></main></body></html>
`;
}

const LANE_LABEL: Record<Lane, string> = { realtime: 'realtime requests', batch: 'batch items' };

/**
 * /admin/*, registered only when ADMIN_API_KEY is set (otherwise every admin URL is the envelope's 404):
 * - `/admin/queues`: bull-board over every queue Chorus uses: both lanes of every engine the API knows
 *   (ModelTable.engines, whether or not a worker serves it now, so a backlog with no worker left shows), plus any
 *   other engine a live worker announces (looked up again, at most once a second, whenever the UI lists queues),
 *   the batch control queue and the batch lifecycle queue. Every route under it, assets and API included, is
 *   behind {@link adminGuard}.
 * - `/admin/login` (GET form, POST key): a browser cannot send a Bearer header when it navigates, so the key
 *   is exchanged once for a signed HttpOnly, SameSite=Strict session cookie (Secure over https), path /admin.
 *   `/admin/logout` (POST) ends it.
 */
export const adminRoutes: FastifyPluginAsync = async (app) => {
  const identity = app.identity;
  const secret = identity.adminCookieSecret();
  if (!secret) throw new Error('adminRoutes needs ADMIN_API_KEY');

  // Every route in here is an admin route: the global auth hook leaves it to adminGuard.
  app.addHook('onRoute', (route) => {
    route.config = { ...(route.config as object), auth: 'admin' } as typeof route.config;
  });
  await app.register(cookie, { secret });
  // The sign-in form posts urlencoded; only here (the rest of the API takes JSON).
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 4096 }, (_req, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });

  app.get('/login', async (request, reply) => {
    reply.header('content-security-policy', LOGIN_CSP).header('cache-control', 'no-store');
    return reply.type('text/html; charset=utf-8').send(loginPage());
  });

  app.post('/login', async (request, reply) => {
    reply.header('content-security-policy', LOGIN_CSP).header('cache-control', 'no-store');
    const key = (request.body as Record<string, unknown> | undefined)?.key;
    const match = typeof key === 'string' && key !== '' ? identity.match(key) : undefined;
    if (match?.role !== 'admin') {
      // A form answer for a person at a browser (the status says the same as the JSON routes would).
      const [status, message] = match?.role === 'user'
        ? [403, 'That is a key from API_KEYS; the dashboard needs the admin key (ADMIN_API_KEY).']
        : [401, 'That is not the admin key.'];
      return reply.code(status).type('text/html; charset=utf-8').send(loginPage(message));
    }
    const expires = Date.now() + SESSION_MS;
    reply.setCookie(ADMIN_COOKIE, String(expires), {
      signed: true, httpOnly: true, sameSite: 'strict', secure: request.protocol === 'https', path: '/admin',
      maxAge: SESSION_MS / 1000,
    });
    return reply.redirect('/admin/queues', 303);
  });

  app.post('/logout', async (request, reply) => {
    reply.clearCookie(ADMIN_COOKIE, { path: '/admin', httpOnly: true, sameSite: 'strict', secure: request.protocol === 'https' });
    return reply.redirect('/admin/login', 303);
  });

  await app.register(async (guarded) => {
    // preParsing, not onRequest: the rate limit's hook is a route-level onRequest, which runs after context
    // hooks; checked here, every refused guess has been counted against its address first.
    const guard = adminGuard(identity);
    guarded.addHook('preParsing', async (request, reply, payload) => {
      await guard(request, reply);
      return payload;
    });
    guarded.addHook('onSend', async (request, reply, payload) => {
      reply.header('content-security-policy', DASHBOARD_CSP);
      reply.header('x-content-type-options', 'nosniff');
      reply.header('referrer-policy', 'no-referrer');
      const type = String(reply.getHeader('content-type') ?? '');
      if (type.startsWith('text/html')) {
        reply.header('cache-control', 'no-store');
        if (typeof payload === 'string') return payload.replace(GOOGLE_FONTS_LINK, '');
      }
      return payload;
    });

    const board = new FastifyAdapter();
    board.setBasePath('/admin/queues');
    const { addQueue } = createBullBoard({
      queues: [],
      serverAdapter: board,
      options: { uiConfig: { boardTitle: 'Chorus queues' } },
    });
    // bull-board's own error handler answers in its own shape: ours instead, as everywhere else.
    board.setErrorHandler((err) => {
      const error = toChorusError(err);
      if (error.status >= 500) app.log.error({ err: error.cause ?? err, code: error.errorName }, error.message);
      return { status: error.status as 500, body: error.toEnvelope() };
    });

    const shown = new Set<string>();
    const show = (queue: Queue, description: string) => {
      if (shown.has(queue.name)) return;
      shown.add(queue.name);
      addQueue(new BullMQAdapter(queue, { description }));
    };
    const showEngine = (engine: string) => {
      for (const lane of LANES) show(app.speech.queue(engine, lane), `${engine}: ${LANE_LABEL[lane]}`);
    };
    for (const engine of app.models.engines) showEngine(engine);
    show(app.batches.control, 'batch finalizers (workers)');
    show(app.batches.lifecycle, 'batch validation and expiry (API replicas)');

    guarded.addHook('preHandler', async (request, reply) => {
      if (!request.routeOptions.url?.startsWith('/admin/queues/api/')) return;
      // BullMQ waits for a connection that is down rather than failing: answer the 503 at once instead.
      try {
        app.speech.assertBackendUp();
      } catch (err) {
        return sendError(reply, toChorusError(err));
      }
      if (request.routeOptions.url !== '/admin/queues/api/queues') return;
      let workers;
      try {
        workers = await app.directory.workers();
      } catch {
        return; // the listing fails next, with the envelope's 503
      }
      for (const w of workers) {
        for (const engine of w.engines) {
          try {
            speechQueueName(engine);
          } catch {
            continue; // not an engine id a queue can be named after
          }
          showEngine(engine);
        }
      }
    });

    await guarded.register(board.registerPlugin(), { prefix: '/queues' });
  });

  // /admin itself: the dashboard is the only thing here (behind the guard when followed).
  app.get('/', async (_request, reply) => reply.redirect('/admin/queues', 302));
};
