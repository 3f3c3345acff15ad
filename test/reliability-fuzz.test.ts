import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import fc from 'fast-check';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { startStack, type Stack } from './helpers/stack.ts';

/*
 * Issue 4, fuzzing with fast-check: random and malformed bodies, headers and query strings on every route the
 * app registers (read from the app itself, so new routes are fuzzed too). Never a 5xx, never a crash, and every
 * error is OpenAI's JSON envelope. Requests go through app.inject into a stack with a real worker, so the bodies
 * that happen to be valid are really synthesized.
 */

let stack: Stack;
let routes: { method: string; url: string }[];

beforeAll(async () => {
  stack = await startStack({ redisUrl: inject('redisUrl'), apiEnv: { API_KEYS: 'fuzz-key', PUBLIC_DISCOVERY: 'true' } });
  routes = registeredRoutes(stack.app.printRoutes({ commonPrefix: false }));
});
afterAll(async () => {
  await stack?.stop();
});

/** Reads `printRoutes()`'s tree (`├── /v1/models (GET, HEAD)` / `│   └── /:id (GET, HEAD)`) into method + path. */
function registeredRoutes(tree: string): { method: string; url: string }[] {
  const out: { method: string; url: string }[] = [];
  const stack: string[] = [];
  for (const line of tree.split('\n')) {
    const m = /^([│ ]*)[├└]── (\S+) \(([^)]+)\)/.exec(line);
    if (!m) continue;
    const depth = m[1]!.length / 4;
    stack.length = depth;
    stack.push(m[2]!);
    const url = stack.join('');
    for (const method of m[3]!.split(', ')) if (url !== '*') out.push({ method, url });
  }
  return out;
}

const segment = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.constantFrom('tts-1', 'espeak', 'alloy', '..', '%00', '%ZZ', 'tts_0123456789abcdef01234567', 'ü', '\u202e'),
);

const scalar = fc.oneof(fc.string({ maxLength: 30 }), fc.integer(), fc.double({ noNaN: true }), fc.boolean(), fc.constant(null));
const anyJson = fc.jsonValue({ maxDepth: 3 });

/** Bodies near a valid speech / generate request, so the fuzzer gets past the first checks and into the pipeline. */
const nearValidBody = fc.record(
  {
    model: fc.oneof(fc.constantFrom('tts-1', 'tts-1-hd', 'espeak'), scalar),
    input: fc.oneof(fc.string({ minLength: 1, maxLength: 40 }), scalar),
    text: fc.oneof(fc.string({ minLength: 1, maxLength: 40 }), scalar),
    voice: fc.oneof(fc.constantFrom('alloy', 'cedar', 'en_us_f3'), fc.record({ id: scalar }), scalar),
    speaker: fc.oneof(fc.constantFrom('alloy', 'en_us_f3'), scalar),
    response_format: fc.oneof(fc.constantFrom('mp3', 'wav', 'pcm', 'opus', 'flac', 'aac'), scalar),
    format: fc.oneof(fc.constantFrom('mp3', 'wav', 'pcm'), scalar),
    speed: fc.oneof(fc.double({ min: 0.25, max: 4, noNaN: true }), scalar),
    stream_format: fc.oneof(fc.constantFrom('audio', 'sse'), scalar),
    stream: fc.oneof(fc.boolean(), scalar),
    instructions: scalar,
    preset: scalar,
    seed: scalar,
    temperature: scalar,
    lang: scalar,
    language: scalar,
    extra: anyJson,
  },
  { requiredKeys: [] },
);

const payload = fc.oneof(
  { arbitrary: nearValidBody.map((b) => JSON.stringify(b)), weight: 4 },
  anyJson.map((j) => JSON.stringify(j)),
  fc.string({ maxLength: 200 }), // mostly malformed JSON
  fc.constantFrom('', '{', '{"model":', 'null', '[]', '{"input":"\\ud800"}', '{"a":1}{"b":2}', '\u0000'),
  fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)),
);

/** `arb` one time in eight, else undefined (fc.option's `freq` is the other way round: nil one time in freq). */
function rarely<T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> {
  return fc.oneof({ arbitrary: fc.constant(undefined), weight: 7 }, { arbitrary: arb, weight: 1 });
}

const headerValue = fc.string({ maxLength: 40 }).filter((v) => /^[\t\x20-\x7e]*$/.test(v));
const headers = fc.record(
  {
    // Mostly well-formed, so most cases get past content-type and auth checks into validation and synthesis.
    'content-type': fc.oneof(
      { arbitrary: fc.constant('application/json'), weight: 6 },
      fc.constantFrom('application/json; charset=utf-8', 'text/plain', 'multipart/form-data',
        'application/x-www-form-urlencoded', 'application/octet-stream', 'application/json; charset=latin1', ';;'),
      headerValue,
    ),
    authorization: fc.oneof(
      { arbitrary: fc.constant('Bearer fuzz-key'), weight: 8 },
      headerValue.map((v) => `Bearer ${v}`),
      headerValue,
    ),
    accept: fc.oneof(fc.constantFrom('application/octet-stream', 'text/event-stream', '*/*'), headerValue),
    'last-event-id': headerValue,
    'x-fuzz': headerValue,
  },
  { requiredKeys: ['content-type', 'authorization'] },
).chain((h) => rarely(fc.constantFrom('content-type', 'authorization')).map((drop) => {
  const out: Record<string, string> = { ...h };
  if (drop) delete out[drop];
  return out;
}));

const query = fc.dictionary(
  fc.oneof(fc.constantFrom('stream', 'after', 'limit', 'format'), fc.string({ maxLength: 8 })),
  fc.oneof(fc.constantFrom('false', 'true', '0', '1', '-1', ''), fc.string({ maxLength: 12 })),
  { maxKeys: 3 },
);

const request = fc
  .record({
    route: fc.integer({ min: 0, max: 1000 }),
    method: rarely(fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD')),
    params: fc.array(segment, { minLength: 2, maxLength: 2 }),
    randomPath: rarely(fc.array(segment, { maxLength: 4 })),
    query,
    headers,
    payload: fc.option(payload, { freq: 8, nil: undefined }),
  })
  .map((r) => {
    const route = routes[r.route % routes.length]!;
    let i = 0;
    const path = r.randomPath
      ? `/${r.randomPath.map(encodeURIComponent).join('/')}`
      : route.url.replace(/:[a-z_]+/g, () => encodeURIComponent(r.params[i++ % 2]!));
    const qs = new URLSearchParams(r.query).toString();
    const method = (r.method ?? route.method) as InjectOptions['method'];
    return {
      method,
      url: qs ? `${path}?${qs}` : path,
      headers: r.headers,
      payload: method === 'GET' || method === 'HEAD' ? undefined : r.payload,
    };
  });

function checkResponse(req: unknown, res: LightMyRequestResponse) {
  const where = `${JSON.stringify(req).slice(0, 400)} → ${res.statusCode} ${res.body.slice(0, 200)}`;
  // 503 model_unavailable is the contract for a model no live worker serves, not a server failure.
  const contractual503 = res.statusCode === 503 && res.body.includes('"model_unavailable"');
  expect(res.statusCode < 500 || contractual503, where).toBe(true);
  expect(res.headers['x-request-id'], where).toMatch(/^req_[0-9a-f]{32}$/);
  if (res.statusCode >= 400 && (req as { method: string }).method !== 'HEAD') {
    expect(String(res.headers['content-type']), where).toMatch(/^application\/json/);
    const body = JSON.parse(res.body);
    expect(Object.keys(body), where).toEqual(['error']);
    expect(body.error, where).toEqual({
      message: expect.any(String),
      type: expect.stringMatching(/^(invalid_request_error|rate_limit_error|server_error)$/),
      param: body.error.param === null ? null : expect.any(String),
      code: body.error.code === null ? null : expect.any(String),
    });
  }
}

describe('fuzz: every route, random bodies, headers and query strings', () => {
  it('never answers 5xx, always the JSON envelope, and nothing crashes', async () => {
    expect(routes.length).toBeGreaterThanOrEqual(8);
    let statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(request, async (req) => {
        const res = await stack.app.inject(req as InjectOptions);
        statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
        checkResponse(req, res);
      }),
      { numRuns: 1500, interruptAfterTimeLimit: 60_000 },
    );
    console.log(`fuzz: ${routes.length} routes; statuses ${JSON.stringify(Object.fromEntries([...statuses].sort()))}`);
    // Alive afterwards: the API answers and the worker still synthesizes.
    const res = await stack.app.inject({
      method: 'POST', url: '/v1/audio/speech', headers: { authorization: 'Bearer fuzz-key' },
      payload: { model: 'tts-1', voice: 'alloy', input: 'Still standing.' },
    });
    expect(res.statusCode).toBe(200);
    expect(res.rawPayload.length).toBeGreaterThan(1000);
    expect(stack.workers[0]!.process.exitCode).toBeNull();
    statuses = new Map();
  });
});
