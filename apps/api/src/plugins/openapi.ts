import { createHash } from 'node:crypto';
import type { FastifyRequest, FastifySchemaCompiler, FastifyTypeProvider } from 'fastify';
import fp from 'fastify-plugin';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { jsonSchemaTransform, jsonSchemaTransformObject } from 'fastify-type-provider-zod';
import type { z } from 'zod';
import type { $ZodType, output } from 'zod/v4/core';
import { ERRORS, validationError, type ChorusError, type ErrorName } from '@chorus/shared';

/*
 * Routes declare their body, query, params and responses as zod schemas (packages/shared); this plugin makes those
 * declarations do the work: requests are validated with them (the same 400s parseOrThrow gave), and /openapi.json
 * and /docs are rendered from them.
 */

/**
 * Types requests from their declared schemas. Replies stay untyped: response schemas are documentation, and
 * audio and event streams are sent as streams.
 */
export interface ZodRequestTypes extends FastifyTypeProvider {
  validator: this['schema'] extends $ZodType ? output<this['schema']> : unknown;
  serializer: unknown;
}

/** A request part that failed its schema; the error handler turns it into the catalogue's 400 (see toValidationError). */
export class RequestValidationError extends Error {
  validationContext?: string;
  constructor(readonly zodError: z.ZodError) {
    super('request validation failed');
  }
}

/** The 400 a client sees, computed from the part as it arrived (Fastify hands validators `null` for "absent"). */
export function toValidationError(err: RequestValidationError, request: FastifyRequest): ChorusError {
  const part = err.validationContext;
  const raw = part === 'querystring' ? request.query : part === 'params' ? request.params : request.body;
  return validationError(err.zodError, raw);
}

const DOCS_ONLY = new WeakSet<object>();
/** A schema declared for the document only: the route reads that part itself (a multipart stream, a header). */
export function docsOnly<T extends z.ZodType>(schema: T): T {
  DOCS_ONLY.add(schema);
  return schema;
}

const validatorCompiler: FastifySchemaCompiler<z.ZodType> = ({ schema }) => {
  if (DOCS_ONLY.has(schema)) return () => true;
  return (data) => {
    const result = schema.safeParse(data);
    return result.success ? { value: result.data } : { error: new RequestValidationError(result.error) };
  };
};

/** Doc routes: the UI, its assets and the document itself. Not API operations, so not in the document. */
export const DOCS_PREFIX = '/docs';
export const OPENAPI_PATH = '/openapi.json';

/** The one inline style Swagger UI inserts: its top-bar logo's SVG colours (allowed by hash, not 'unsafe-inline'). */
const LOGO_STYLE = '.logo_small_svg__cls-2{fill:#fff}.logo_small_svg__cls-3{fill:#85ea2d}';

/**
 * Swagger UI needs its own scripts and styles, the document (fetched from 'self') and data: images (icons inlined
 * in its CSS). Nothing remote, no inline script, no framing by other sites.
 */
export const DOCS_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  `style-src 'self' 'sha256-${createHash('sha256').update(LOGO_STYLE).digest('base64')}'`,
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

type Responses = Record<string, { description?: string; headers?: unknown; content?: unknown }>;

export const openapiPlugin = fp<{ version: string }>(
  async (app, opts) => {
    app.setValidatorCompiler(validatorCompiler);
    // Responses are declared for the document only: the wire carries what the handler returns, as before (a
    // serializer compiled from the schema would drop any field the schema does not name).
    app.setSerializerCompiler(() => (data) => JSON.stringify(data));

    const keysOn = app.identity.enabled;
    const { publicDiscovery, metricsAuth, rateLimitPerMin } = app.config;
    const isOpen = (auth: string | undefined) =>
      !keysOn || auth === 'public' || (auth === 'discovery' && publicDiscovery) || (auth === 'metrics' && metricsAuth === 'public');

    await app.register(swagger, {
      openapi: {
        openapi: '3.1.0',
        info: {
          title: 'Chorus',
          version: opts.version,
          description:
            'Text-to-speech gateway. `/v1/*` speaks the OpenAI dialect (speech, models, voices, files, batches); ' +
            '`/api/*` is the legacy dialect. Every error is `{error:{message,type,param,code}}`, and every response ' +
            'carries `x-request-id`.',
        },
        tags: [
          { name: 'speech', description: 'OpenAI speech' },
          { name: 'models', description: 'Models and voices' },
          { name: 'files', description: 'OpenAI Files API (batch input and output)' },
          { name: 'batches', description: 'OpenAI Batch API for speech' },
          { name: 'legacy', description: 'The legacy `/api/*` dialect' },
          { name: 'operations', description: 'Health and metrics' },
        ],
        components: { securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'An API key (API_KEYS).' } } },
        ...(keysOn ? { security: [{ apiKey: [] }] } : {}),
      },
      transform: (doc) => {
        const out = jsonSchemaTransform(doc);
        const declared = (doc.schema?.response ?? {}) as Responses;
        // A route without a schema still gets the common errors (and stays listed).
        const schema = ((out as { schema?: unknown }).schema ??= {}) as { response?: Responses; security?: unknown[] };
        const response = (schema.response ??= {});
        // The type provider keeps a response's description and content; its headers are put back here.
        for (const [status, r] of Object.entries(declared)) if (r.headers && response[status]) response[status].headers = r.headers;
        const auth = doc.route.config?.auth;
        const common: ErrorName[] = ['TTS_ERR_INTERNAL', 'TTS_ERR_SHUTTING_DOWN'];
        if (!isOpen(auth)) common.push('TTS_ERR_AUTH');
        if (rateLimitPerMin > 0) common.push('TTS_ERR_RATE_LIMITED');
        for (const name of common) addError(response, name);
        if (keysOn && isOpen(auth)) schema.security = [];
        return out;
      },
      transformObject: (doc) => pruneComponents(jsonSchemaTransformObject(doc) as unknown as Record<string, unknown>) as never,
    });

    // The doc routes are discovery, as /v1/models is: public while PUBLIC_DISCOVERY is on.
    await app.register(async (docs) => {
      docs.addHook('onRoute', (route) => {
        route.config = { ...route.config, auth: 'discovery' };
      });
      docs.get(OPENAPI_PATH, { schema: { hide: true } }, async () => app.swagger());
      await docs.register(swaggerUi, {
        routePrefix: DOCS_PREFIX,
        staticCSP: DOCS_CSP,
        logo: null as never, // no logo (the default is Fastify's)
        // No call to validator.swagger.io: nothing leaves the page for another origin.
        uiConfig: { validatorUrl: null, deepLinking: true },
      });
    });
  },
  { name: 'openapi', dependencies: ['services'] },
);

/** Adds a catalogue entry to a route's documented responses (its code joins an existing status's list). */
function addError(response: Responses, name: ErrorName) {
  const { status, code } = ERRORS[name];
  const existing = response[status];
  if (!existing) {
    response[status] = {
      description: `Error (\`${code}\`).`,
      content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
    };
  } else if (existing.description && !existing.description.includes(`\`${code}\``)) {
    existing.description = existing.description.replace(/\)\.$/, `, \`${code}\`).`);
  }
}

/**
 * The type provider adds every registered schema twice (input and output variants); keep the components some
 * operation (or another kept component) refers to.
 */
function pruneComponents(doc: Record<string, unknown>) {
  const components = doc.components as { schemas?: Record<string, unknown> } | undefined;
  const schemas = components?.schemas;
  if (!schemas) return doc;
  const refs = (value: unknown) => [...JSON.stringify(value).matchAll(/"#\/components\/schemas\/([^"]+)"/g)].map((m) => m[1]!);
  const keep = new Set<string>();
  const queue = refs({ ...doc, components: { ...components, schemas: {} } });
  while (queue.length > 0) {
    const id = queue.pop()!;
    if (keep.has(id) || !(id in schemas)) continue;
    keep.add(id);
    queue.push(...refs(schemas[id]));
  }
  components.schemas = Object.fromEntries(Object.entries(schemas).filter(([id]) => keep.has(id)));
  return doc;
}

const HEADER_DOCS = {
  'x-request-id': { type: 'string', description: 'This request’s id (`req_<32 hex>`), on every response, errors too.' },
  'x-job-id': { type: 'string', description: 'The synthesis job (GET /api/jobs/{job_id}).' },
  'x-chorus-engine': { type: 'string', description: 'The engine the request was routed to.' },
  'x-chorus-ignored-params': { type: 'string', description: 'Body fields that were ignored, comma-separated (percent-encoded).' },
  'x-audio-duration': { type: 'string', description: 'Audio duration in seconds.' },
  'content-disposition': { type: 'string', description: '`attachment; filename="<job id>.<ext>"`.' },
  'content-length': { type: 'integer', description: 'Exact size (whole files only).' },
} as const;

/** Documented response headers (JSON Schema; /openapi.json lists them under the response). */
export function responseHeaders(...names: (keyof typeof HEADER_DOCS)[]) {
  return Object.fromEntries(names.map((n) => [n, HEADER_DOCS[n]]));
}
