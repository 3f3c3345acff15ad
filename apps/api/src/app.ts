import { createRequire } from 'node:module';
import Fastify, { type FastifyInstance, type RouteOptions } from 'fastify';
import cors from '@fastify/cors';
import { loggerOptions, newRequestId, type ApiConfig } from '@chorus/shared';
import { clientErrorHandler, errorsPlugin, frameworkErrorHandler, preflightCheck } from './plugins/errors.ts';
import { authPlugin } from './plugins/auth.ts';
import { servicesPlugin } from './plugins/services.ts';
import { drainingPlugin } from './plugins/draining.ts';
import { rateLimitPlugin } from './plugins/rate-limit.ts';
import { openapiPlugin } from './plugins/openapi.ts';
import { healthRoutes } from './routes/health.ts';
import { modelRoutes } from './routes/openai/models.ts';
import { voiceRoutes } from './routes/openai/voices.ts';
import { speechRoutes } from './routes/openai/speech.ts';
import { fileRoutes } from './routes/openai/files.ts';
import { batchRoutes } from './routes/openai/batches.ts';
import { legacyGenerateRoutes } from './routes/legacy/generate.ts';
import { legacyJobRoutes } from './routes/legacy/jobs.ts';
import { legacyCatalogRoutes } from './routes/legacy/catalog.ts';
import { playgroundRoutes } from './routes/playground.ts';
import { adminRoutes } from './routes/admin.ts';

export interface BuildOptions {
  /** Replace the JSON logger (tests pass false). */
  logger?: boolean;
  /** Sees every route as it is registered (tests compare them with /openapi.json). */
  onRoute?: (route: RouteOptions) => void;
}

/** The API's version, as /openapi.json states it. */
const API_VERSION = (createRequire(import.meta.url)('../package.json') as { version: string }).version;

const trustHops = (hops: number) => (_address: string, hop: number) => hop < hops;

/** Builds the API without listening (tests inject or listen on port 0; server.ts listens). */
export async function buildApp(config: ApiConfig, options: BuildOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: options.logger === false ? false : loggerOptions(config.logLevel, 'chorus-api'),
    genReqId: () => newRequestId(),
    requestIdHeader: false,
    bodyLimit: config.bodyLimitBytes,
    // A hop count trusts the nearest N hops, whoever they are (proxy-addr counts hops from the socket, 0-based).
    trustProxy: typeof config.trustProxy === 'number' ? trustHops(config.trustProxy) : config.trustProxy,
    // Draining answers new requests with our JSON 503 (plugins/draining.ts), not Fastify's plain one.
    return503OnClosing: false,
    // Receiving a request is bounded (REQUEST_TIMEOUT_S, HEADERS_TIMEOUT_S: 408); sending one is not. Node's
    // request timeout ends when the request is complete, so long audio and slow SSE readers are never cut, and no
    // socket idle timeout (connectionTimeout 0) cuts a reader that pauses.
    requestTimeout: config.requestTimeoutS * 1000,
    keepAliveTimeout: config.keepAliveTimeoutS * 1000,
    connectionTimeout: 0,
    http: {
      requestTimeout: config.requestTimeoutS * 1000,
      headersTimeout: config.headersTimeoutS * 1000,
      // Node checks these timeouts on this interval (default 30 s): a fraction of the shortest one.
      connectionsCheckingInterval: Math.min(30_000, Math.max(250, (config.headersTimeoutS * 1000) / 4)),
    },
    // Errors found before routing or by Node itself leave as the JSON envelope too (plugins/errors.ts).
    frameworkErrors: frameworkErrorHandler,
    clientErrorHandler,
  });

  if (options.onRoute) app.addHook('onRoute', options.onRoute);
  app.decorateRequest('startedAt', 0);
  app.addHook('onRequest', async (request, reply) => {
    request.startedAt = performance.now();
    reply.header('x-request-id', request.id);
  });
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    app.metrics.requests.inc({ route, method: request.method, status: String(reply.statusCode) });
    app.metrics.duration.observe({ route, method: request.method }, (performance.now() - request.startedAt) / 1000);
  });

  // JSON only: OpenAI's SDKs send JSON, and a text/plain body is a client bug worth a 415.
  app.removeContentTypeParser(['text/plain']);

  await app.register(errorsPlugin);
  if (config.corsOrigins.length > 0) app.addHook('onRequest', preflightCheck); // before cors: see preflightCheck
  await app.register(cors, {
    origin: config.corsOrigins.length === 0 ? false : config.corsOrigins.includes('*') ? true : config.corsOrigins,
    exposedHeaders: ['x-request-id', 'x-job-id', 'x-chorus-engine', 'x-chorus-ignored-params', 'retry-after', 'retry-after-ms'],
    allowedHeaders: ['authorization', 'content-type', 'x-stainless-*', 'openai-organization', 'openai-project'],
    maxAge: 600,
  });
  await app.register(servicesPlugin, { config });
  await app.register(authPlugin, { publicDiscovery: config.publicDiscovery, metricsAuth: config.metricsAuth });
  await app.register(drainingPlugin);
  // After auth: its hooks run in registration order, so a bad key is a 401 that spends no budget.
  if (config.rateLimitPerMin > 0) await app.register(rateLimitPlugin, { perMinute: config.rateLimitPerMin });
  // Before the routes: it validates what they declare and collects them for /openapi.json (plugins/openapi.ts).
  await app.register(openapiPlugin, { version: API_VERSION });
  await app.register(healthRoutes);
  await app.register(modelRoutes);
  await app.register(voiceRoutes);
  await app.register(speechRoutes);
  await app.register(fileRoutes);
  await app.register(batchRoutes);
  await app.register(legacyGenerateRoutes);
  await app.register(legacyJobRoutes);
  await app.register(legacyCatalogRoutes);
  await app.register(playgroundRoutes);
  // Without ADMIN_API_KEY there are no admin routes: /admin/* is the envelope's 404.
  if (config.adminApiKey) await app.register(adminRoutes, { prefix: '/admin' });
  return app;
}
