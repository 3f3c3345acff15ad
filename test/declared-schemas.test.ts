import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { z } from 'zod';
import {
  BATCH_ID_PATTERN, BatchCreateBody, ChorusError, FILE_ID_PATTERN, legacyTtsRequestSchema, loadApiConfig, parseOrThrow,
  speechRequestSchema, type ErrorEnvelope,
} from '@chorus/shared';
import { buildApp } from '../apps/api/src/app.ts';
import { deletePrefixKeys } from './helpers/stack.ts';

/*
 * Routes validate through declared schemas (plugins/openapi.ts) where handlers used to call parseOrThrow or check
 * query parameters by hand. These pin that the wire did not change: each live 400 equals what the old path gives
 * for the same input (parseOrThrow on the same schema; the old query checks, kept here as the reference).
 */

const MAX = 50;
let app: FastifyInstance;
let baseUrl: string;
const prefix = `t${randomUUID().replace(/-/g, '').slice(0, 12)}`;

beforeAll(async () => {
  const config = loadApiConfig({
    REDIS_URL: inject('redisUrl'), REDIS_PREFIX: prefix, LOG_LEVEL: 'warn', HOST: '127.0.0.1', PORT: '0', MAX_INPUT_CHARS: String(MAX),
  });
  app = await buildApp(config, { logger: false });
  // A route answering more than its declared response schema names (registered like the API's own routes).
  app.get('/test/extra-fields', { schema: { response: { 200: z.object({ declared: z.string() }) } } }, async () => ({
    declared: 'yes', undeclared: 'kept',
  }));
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  baseUrl = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
});
afterAll(async () => {
  await app?.close();
  const redis = new Redis(inject('redisUrl'));
  await deletePrefixKeys(redis, prefix);
  redis.disconnect();
});

const NO_BODY = Symbol('no body');

async function post(route: string, body: unknown) {
  const res = await fetch(`${baseUrl}${route}`, {
    method: 'POST',
    ...(body === NO_BODY ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as ErrorEnvelope };
}

/** The old path: the handler parsed the body itself. */
function reference(parse: () => unknown): { status: number; body: ErrorEnvelope } | undefined {
  try {
    parse();
    return undefined;
  } catch (err) {
    const e = err as ChorusError;
    return { status: e.status, body: e.toEnvelope() };
  }
}

const BODIES: unknown[] = [
  NO_BODY, null, [], 'text', 42, {},
  { model: 1 }, { model: '' }, { model: 'tts-1' }, { model: 'tts-1', input: 5 }, { model: 'tts-1', input: '' },
  { model: 'tts-1', input: '   ' }, { model: 'tts-1', input: 'x'.repeat(MAX + 1) }, { model: 'tts-1', input: 'hi' },
  { model: 'tts-1', input: 'hi', voice: {} }, { model: 'tts-1', input: 'hi', voice: { id: '' } }, { model: 'tts-1', input: 'hi', voice: 7 },
  { model: 'tts-1', input: 'hi', voice: 'alloy', speed: 10 }, { model: 'tts-1', input: 'hi', voice: 'alloy', speed: 'fast' },
  { model: 'tts-1', input: 'hi', voice: 'alloy', response_format: 'ogg' }, { model: 'tts-1', input: 'hi', voice: 'alloy', stream: 'no' },
  { model: 'tts-1', input: 'hi', voice: 'alloy', seed: -1 }, { model: 'tts-1', input: 'hi', voice: 'alloy', lang: 'not a tag' },
  { text: '' }, { text: 3 }, { text: 'hi', format: 'ogg' }, { text: 'hi', speed: 0.1 }, { text: 'hi', speaker: '' },
  { text: 'x'.repeat(MAX + 1) }, { text: 'hi', temperature: 3 },
];

describe('declared body schemas give the 400s the handlers gave', () => {
  it('POST /v1/audio/speech', async () => {
    const schema = speechRequestSchema(MAX);
    let compared = 0;
    for (const body of BODIES) {
      const expected = reference(() => parseOrThrow(schema, body === NO_BODY ? undefined : body));
      if (!expected) continue; // valid: goes on to routing, not validation's business
      expect(await post('/v1/audio/speech', body), JSON.stringify(body) ?? 'no body').toEqual(expected);
      compared++;
    }
    expect(compared).toBeGreaterThan(20);
  });

  it('POST /api/generate_tts and /api/generate_tts/stream', async () => {
    const schema = legacyTtsRequestSchema(MAX);
    for (const body of BODIES) {
      const expected = reference(() => parseOrThrow(schema, body === NO_BODY ? undefined : body));
      if (!expected) continue;
      expect(await post('/api/generate_tts', body), JSON.stringify(body) ?? 'no body').toEqual(expected);
      expect(await post('/api/generate_tts/stream', body), JSON.stringify(body) ?? 'no body').toEqual(expected);
    }
  });

  it('POST /v1/batches (no body reads as {})', async () => {
    const bodies = [
      NO_BODY, null, {}, { input_file_id: 5 }, { input_file_id: '' }, { input_file_id: 'file-x' },
      { input_file_id: 'file-x', endpoint: '/v1/audio/speech' }, { input_file_id: 'file-x', endpoint: 1, completion_window: '24h' },
      { input_file_id: 'file-x', endpoint: '/v1/audio/speech', completion_window: '24h', metadata: { k: 'v'.repeat(513) } },
      { input_file_id: 'file-x', endpoint: '/v1/audio/speech', completion_window: '24h', metadata: Object.fromEntries([...Array(17).keys()].map((i) => [`k${i}`, 'v'])) },
    ];
    for (const body of bodies) {
      const expected = reference(() => parseOrThrow(BatchCreateBody, (body === NO_BODY ? undefined : body) ?? {}));
      if (!expected) continue;
      expect(await post('/v1/batches', body), JSON.stringify(body) ?? 'no body').toEqual(expected);
    }
    expect(reference(() => parseOrThrow(BatchCreateBody, {}))!.body.error.param).toBe('input_file_id');
  });
});

/** The query checks GET /v1/files and GET /v1/batches made by hand before they were declared. */
function oldFilesQuery(q: Record<string, string | string[] | undefined>) {
  const limit = q.limit === undefined ? 10_000 : Number(q.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) {
    throw new ChorusError('TTS_ERR_VALIDATION', 'limit must be an integer from 1 to 10000.', { param: 'limit' });
  }
  const order = q.order ?? 'desc';
  if (order !== 'asc' && order !== 'desc') {
    throw new ChorusError('TTS_ERR_VALIDATION', "order must be 'asc' or 'desc'.", { param: 'order' });
  }
  if (q.after !== undefined && !FILE_ID_PATTERN.test(String(q.after))) {
    throw new ChorusError('TTS_ERR_VALIDATION', 'after must be a file id from a previous page.', { param: 'after' });
  }
}
function oldBatchesQuery(q: Record<string, string | string[] | undefined>) {
  const limit = q.limit === undefined ? 20 : Number(q.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 100) {
    throw new ChorusError('TTS_ERR_VALIDATION', 'limit must be an integer from 1 to 100.', { param: 'limit' });
  }
  if (q.after !== undefined && !BATCH_ID_PATTERN.test(String(q.after))) {
    throw new ChorusError('TTS_ERR_VALIDATION', 'after must be a batch id from a previous page.', { param: 'after' });
  }
}

describe('declared query schemas give the answers the hand-written checks gave', () => {
  const limits = ['', '0', '1', '20', '100', '101', '10000', '10001', 'x', '1.5', '1e2', ' 5', '0x10', 'Infinity', '-1', 'NaN'];
  const queries: string[] = [
    '', ...limits.map((l) => `limit=${encodeURIComponent(l)}`), 'limit=1&limit=2',
    'order=asc', 'order=desc', 'order=up', 'order=', 'order=asc&order=desc',
    'after=../x', 'after=', `after=file-${'a'.repeat(28)}`, `after=batch_${'a'.repeat(28)}`, 'limit=0&order=up', 'order=up&after=x',
    'purpose=batch', 'unknown=1',
  ];

  for (const [route, old] of [['/v1/files', oldFilesQuery], ['/v1/batches', oldBatchesQuery]] as const) {
    it(`GET ${route}`, async () => {
      for (const q of queries) {
        const parsed: Record<string, string | string[]> = {};
        for (const [k, v] of new URLSearchParams(q)) {
          const prev = parsed[k];
          parsed[k] = prev === undefined ? v : [prev, v].flat();
        }
        const expected = reference(() => old(parsed));
        const res = await fetch(`${baseUrl}${route}?${q}`);
        const body = await res.json();
        if (expected) expect({ status: res.status, body }, q).toEqual(expected);
        else expect(res.status, q).toBe(200);
      }
    });
  }
});

it('a declared response schema documents the reply and never drops a field from it', async () => {
  const res = await fetch(`${baseUrl}/test/extra-fields`);
  expect(await res.json()).toEqual({ declared: 'yes', undeclared: 'kept' });
});
