import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { FastifyInstance, RouteOptions } from 'fastify';
import { Redis } from 'ioredis';
import { Validator } from '@seriousme/openapi-schema-validator';
import { loadApiConfig } from '@chorus/shared';
import { buildApp } from '../apps/api/src/app.ts';
import { deletePrefixKeys } from './helpers/stack.ts';

type Doc = {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, Record<string, unknown>> };
};
type Operation = {
  requestBody?: { content: Record<string, { schema: Record<string, unknown> }> };
  parameters?: { name: string; in: string }[];
  responses: Record<string, { description: string; headers?: Record<string, unknown>; content?: Record<string, { schema: Record<string, unknown> }> }>;
  security?: unknown[];
};

/** An API (no workers: the document and the doc pages need none) with its own key prefix. */
async function startApi(env: Record<string, string> = {}) {
  const prefix = `t${randomUUID().replace(/-/g, '').slice(0, 12)}`;
  const routes: RouteOptions[] = [];
  const config = loadApiConfig({
    REDIS_URL: inject('redisUrl'), REDIS_PREFIX: prefix, LOG_LEVEL: 'warn', HOST: '127.0.0.1', PORT: '0', ...env,
  });
  const app = await buildApp(config, { logger: false, onRoute: (r) => routes.push(r) });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  const baseUrl = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  return {
    app, baseUrl, routes,
    async stop() {
      await app.close();
      const redis = new Redis(inject('redisUrl'));
      await deletePrefixKeys(redis, prefix);
      redis.disconnect();
    },
  };
}

describe('GET /openapi.json', () => {
  let api: Awaited<ReturnType<typeof startApi>>;
  let doc: Doc;
  beforeAll(async () => {
    api = await startApi();
    const res = await fetch(`${api.baseUrl}/openapi.json`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    doc = (await res.json()) as Doc;
  });
  afterAll(async () => {
    await api?.stop();
  });

  it('is a valid OpenAPI 3.1 document', async () => {
    const validator = new Validator();
    const result = await validator.validate(structuredClone(doc) as never);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(validator.version).toBe('3.1');
    expect(doc.openapi).toBe('3.1.0');
  });

  it('documents every registered route', () => {
    const documented = new Set<string>();
    for (const [path, ops] of Object.entries(doc.paths)) for (const method of Object.keys(ops)) documented.add(`${method.toUpperCase()} ${path}`);
    const registered = new Set<string>();
    for (const route of api.routes) {
      // Left out: the doc routes themselves (/docs and its assets, /openapi.json: pages about the API, not
      // operations of it); the HEAD twin Fastify adds to every GET (the same operation without a body); and
      // @fastify/cors's `OPTIONS *` (preflight answers for every path, not a path of its own: OpenAPI has no `*`).
      // The playground (`/` and its files under /playground/) is a page that calls the API, not part of it.
      if (route.url === '/openapi.json' || route.url === '/docs' || route.url.startsWith('/docs/')) continue;
      if (route.url === '/' || route.url.startsWith('/playground/')) continue;
      for (const method of [route.method].flat()) {
        if (method === 'HEAD' || (method === 'OPTIONS' && route.url === '*')) continue;
        registered.add(`${method} ${route.url.replace(/:([A-Za-z0-9_]+)/g, '{$1}')}`);
      }
    }
    expect(registered.size).toBeGreaterThan(20);
    expect([...registered].filter((r) => !documented.has(r))).toEqual([]);
    // Both dialects, files and batches, health and metrics.
    for (const r of ['POST /v1/audio/speech', 'POST /api/generate_tts', 'POST /v1/files', 'GET /v1/batches/{id}', 'GET /readyz', 'GET /metrics']) {
      expect(documented).toContain(r);
    }
    // and nothing that is not a route
    expect([...documented].filter((r) => !registered.has(r))).toEqual([]);
    // Declared, not merely listed (@fastify/swagger lists an undeclared route with a "Default Response").
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const where = `${method.toUpperCase()} ${path}`;
        expect((op as { summary?: string }).summary, where).toBeTruthy();
        expect(op.responses['200']?.description, where).not.toBe('Default Response');
        expect(op.responses['200']?.content, where).toBeDefined();
        expect(op.responses['500'], where).toBeDefined();
      }
    }
  });

  it('describes the speech body from the same schema that validates it, with descriptions and examples', () => {
    const op = doc.paths['/v1/audio/speech']!.post!;
    const body = op.requestBody!.content['application/json']!.schema as {
      required: string[]; properties: Record<string, { description?: string; maxLength?: number; default?: unknown; enum?: string[]; examples?: unknown[] }>;
    };
    expect(body.required).toEqual(expect.arrayContaining(['model', 'input', 'voice']));
    expect(body.properties.input!.maxLength).toBe(4096); // MAX_INPUT_CHARS, from config
    expect(body.properties.input!.description).toMatch(/characters/);
    expect(body.properties.model!.examples ?? (body.properties.model as { example?: unknown }).example).toBeTruthy();
    expect(body.properties.response_format).toMatchObject({ default: 'mp3', enum: ['mp3', 'opus', 'aac', 'flac', 'wav', 'pcm'] });
    expect(body.properties.speed).toMatchObject({ minimum: 0.25, maximum: 4, default: 1 });
    expect(op.parameters).toEqual(expect.arrayContaining([expect.objectContaining({ name: 'stream', in: 'query' })]));
  });

  it('documents audio by content type, SSE events, and errors in the OpenAI envelope', () => {
    const op = doc.paths['/v1/audio/speech']!.post!;
    const ok = op.responses['200']!;
    expect(Object.keys(ok.content!)).toEqual(
      expect.arrayContaining(['audio/mpeg', 'audio/opus', 'audio/aac', 'audio/flac', 'audio/wav', 'audio/pcm', 'text/event-stream']),
    );
    expect(ok.content!['audio/mpeg']!.schema).toMatchObject({ type: 'string', format: 'binary' });
    expect(ok.content!['text/event-stream']!.schema).toEqual({ $ref: '#/components/schemas/SpeechStreamEvent' });
    expect(JSON.stringify(doc.components.schemas.SpeechStreamEvent)).toContain('speech.audio.delta');
    expect(ok.headers).toHaveProperty('x-chorus-ignored-params');
    // statuses per the error catalogue, each with the envelope
    for (const status of ['400', '404', '413', '415', '429', '500', '503']) {
      expect(op.responses[status], status).toBeDefined();
      expect(op.responses[status]!.content!['application/json']!.schema).toEqual({ $ref: '#/components/schemas/Error' });
    }
    expect(op.responses['400']!.description).toContain('`string_too_long`');
    expect(op.responses['404']!.description).toContain('`model_not_found`');
    expect(doc.components.schemas.Error).toMatchObject({
      properties: { error: { required: expect.arrayContaining(['message', 'type', 'param', 'code']) } },
    });
    const legacySse = doc.paths['/api/generate_tts/stream']!.post!.responses['200']!;
    expect(legacySse.content!['text/event-stream']!.schema).toEqual({ $ref: '#/components/schemas/LegacyStreamEvent' });
    // multipart upload documented, not validated as JSON
    const upload = doc.paths['/v1/files']!.post!.requestBody!.content;
    expect(Object.keys(upload)).toEqual(['multipart/form-data']);
    expect(upload['multipart/form-data']!.schema).toMatchObject({ properties: { file: { format: 'binary' } } });
  });

  it('the envelope on the wire is the documented one', async () => {
    const res = await fetch(`${api.baseUrl}/v1/batches?limit=0`);
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: Record<string, unknown> };
    expect(body).toEqual({
      error: { message: 'limit must be an integer from 1 to 100.', type: 'invalid_request_error', param: 'limit', code: 'invalid_value' },
    });
    const props = (doc.components.schemas.Error as { properties: { error: { properties: Record<string, unknown> } } }).properties.error.properties;
    expect(Object.keys(body.error).sort()).toEqual(Object.keys(props).sort());
  });
});

describe('GET /docs', () => {
  let api: Awaited<ReturnType<typeof startApi>>;
  beforeAll(async () => {
    api = await startApi();
  });
  afterAll(async () => {
    await api?.stop();
  });

  it('answers HTML with a strict CSP, and every asset it references is served from here', async () => {
    const res = await fetch(`${api.baseUrl}/docs`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toMatch(/https?:|\*|'unsafe-inline'|'unsafe-eval'/);
    const html = await res.text();
    const refs = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    expect(refs.some((r) => r.endsWith('.js'))).toBe(true);
    expect(refs.some((r) => r.endsWith('.css'))).toBe(true);
    for (const ref of refs) {
      const url = new URL(ref, `${api.baseUrl}/docs`);
      expect(url.origin, ref).toBe(api.baseUrl);
      const asset = await fetch(url);
      expect(asset.status, ref).toBe(200);
      expect(asset.headers.get('content-security-policy'), ref).toBe(csp);
      if (ref.endsWith('.js')) expect(asset.headers.get('content-type'), ref).toMatch(/javascript/);
      if (ref.endsWith('.css')) expect(asset.headers.get('content-type'), ref).toMatch(/text\/css/);
      await asset.arrayBuffer();
    }
    // what the page loads the document from
    const json = await fetch(`${api.baseUrl}/docs/json`);
    expect(json.status).toBe(200);
    expect(((await json.json()) as Doc).paths['/v1/audio/speech']).toBeDefined();
  });
});

describe('doc routes and API keys', () => {
  let keyed: Awaited<ReturnType<typeof startApi>> | undefined;
  let closed: Awaited<ReturnType<typeof startApi>> | undefined;
  afterAll(async () => {
    await keyed?.stop();
    await closed?.stop();
  });

  it('are public discovery: open while PUBLIC_DISCOVERY is on, keyed when it is off', async () => {
    keyed = await startApi({ API_KEYS: 'sk-test-one' });
    expect((await fetch(`${keyed.baseUrl}/openapi.json`)).status).toBe(200);
    expect((await fetch(`${keyed.baseUrl}/docs`)).status).toBe(200);
    const doc = (await (await fetch(`${keyed.baseUrl}/openapi.json`)).json()) as Doc & { security?: unknown };
    expect(doc.security).toEqual([{ apiKey: [] }]);
    expect(doc.paths['/v1/audio/speech']!.post!.responses['401']).toBeDefined();
    expect(doc.paths['/v1/models']!.get!.security).toEqual([]);

    closed = await startApi({ API_KEYS: 'sk-test-one', PUBLIC_DISCOVERY: 'false' });
    const res = await fetch(`${closed.baseUrl}/openapi.json`);
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('invalid_api_key');
    expect((await fetch(`${closed.baseUrl}/docs`)).status).toBe(401);
    const ok = await fetch(`${closed.baseUrl}/openapi.json`, { headers: { authorization: 'Bearer sk-test-one' } });
    expect(ok.status).toBe(200);
  });
});
