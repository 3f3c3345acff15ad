import net from 'node:net';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import OpenAI from 'openai';
import { startStack, postJson, type Stack } from './helpers/stack.ts';
import { decodedDuration } from './helpers/audio.ts';
import { speechWithPause } from './helpers/slow-reader.ts';

/*
 * Issue 9, findings 7 (request timeouts), 8 (bad input that gave a 500) and 9 (errors outside the envelope).
 * REQUEST_TIMEOUT_S is small here so a dribbled body is cut quickly; responses must still be allowed to last.
 */

const REQUEST_TIMEOUT_S = 2;
let stack: Stack;

beforeAll(async () => {
  stack = await startStack({
    redisUrl: inject('redisUrl'),
    apiEnv: {
      REQUEST_TIMEOUT_S: String(REQUEST_TIMEOUT_S),
      HEADERS_TIMEOUT_S: String(REQUEST_TIMEOUT_S),
      CORS_ORIGINS: 'https://app.example',
    },
  });
});
afterAll(async () => {
  await stack?.stop();
});

const GOOD = { model: 'tts-1', input: 'Hello there.', voice: 'alloy' } as const;
const PROTO_NAMES = ['constructor', 'toString', 'hasOwnProperty', '__proto__', 'valueOf', 'isPrototypeOf'];

async function jobCount(): Promise<number> {
  const counts = await stack.queue('espeak').getJobCounts();
  return Object.values(counts).reduce((a, b) => a + b, 0);
}

interface RawResponse {
  status: number;
  headers: string;
  body: string;
}

/** Sends bytes on a fresh socket and parses whatever single response comes back before the socket closes. */
function rawRequest(bytes: string, opts: { keepOpen?: boolean } = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(new URL(stack.baseUrl).port), '127.0.0.1');
    let out = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (out += d));
    socket.on('error', () => {}); // a reset after the response is fine; the 'close' below reports what came
    socket.on('close', () => {
      const m = /^HTTP\/1\.1 (\d{3})[^\r]*\r\n([\s\S]*?)\r\n\r\n([\s\S]*)$/.exec(out);
      if (!m) return reject(new Error(`no HTTP response: ${JSON.stringify(out.slice(0, 300))}`));
      resolve({ status: Number(m[1]), headers: m[2]!.toLowerCase(), body: m[3]! });
    });
    socket.write(bytes);
    if (!opts.keepOpen) setTimeout(() => socket.end(), 2000);
  });
}

function expectEnvelope(res: RawResponse, status: number, code: string) {
  expect(res.status, res.body).toBe(status);
  expect(res.headers).toMatch(/content-type: application\/json/);
  const body = JSON.parse(res.body) as { error: Record<string, unknown> };
  expect(Object.keys(body)).toEqual(['error']);
  expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'param', 'type']);
  expect(body.error.code).toBe(code);
  expect(body.error.type).toBe('invalid_request_error');
}

describe('finding 8: prototype names and odd field names', () => {
  for (const preset of PROTO_NAMES) {
    it(`OpenAI route: preset "${preset}" → 400 param preset, nothing queued`, async () => {
      const before = await jobCount();
      let err: unknown;
      try {
        const res = await stack.client.audio.speech.create({ ...GOOD, preset } as never);
        await res.arrayBuffer();
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(OpenAI.BadRequestError);
      const e = err as InstanceType<typeof OpenAI.APIError>;
      expect(e.status).toBe(400);
      expect(e.param).toBe('preset');
      expect(e.code).toBe('invalid_value');
      expect(await jobCount()).toBe(before);
    });

    it(`legacy route: preset "${preset}" → 400 param preset, nothing queued`, async () => {
      const before = await jobCount();
      const res = await postJson(stack, '/api/generate_tts', { text: 'Hello.', preset });
      expect(res.status).toBe(400);
      const body = (await res.json()) as { error: { param: string; code: string } };
      expect(body.error.param).toBe('preset');
      expect(body.error.code).toBe('invalid_value');
      expect(await jobCount()).toBe(before);
    });
  }

  const WEIRD = ['bad\nname', 'x\u0001y', 'ünï€ode', 'a b,c', '\ud800lone'];

  it('OpenAI route: unknown fields whose names cannot be header text → 200, audio and a valid header', async () => {
    const extra = Object.fromEntries(WEIRD.map((k, i) => [k, i]));
    const res = await stack.client.audio.speech.create({ ...GOOD, response_format: 'wav', ...extra } as never);
    const audio = Buffer.from(await res.arrayBuffer());
    expect(await decodedDuration(audio, 'wav')).toBeGreaterThan(0.3);
    const header = res.headers.get('x-chorus-ignored-params')!;
    expect(header).toMatch(/^[\x21-\x7e]+$/); // plain visible ASCII
    // Every encodable name comes back, decodable; the lone surrogate has no encoding and is left out.
    expect(header.split(',').map(decodeURIComponent)).toEqual(WEIRD.slice(0, 4));
  });

  it('OpenAI route: thousands of ignored fields → 200 with a bounded header', async () => {
    const extra = Object.fromEntries(Array.from({ length: 3000 }, (_, i) => [`field_${i}`, i]));
    const res = await postJson(stack, '/v1/audio/speech', { ...GOOD, ...extra });
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    expect(res.headers.get('x-chorus-ignored-params')!.length).toBeLessThanOrEqual(1024);
  });

  it('legacy route: odd field names → 200 and audio', async () => {
    const body = `{"text":"Hello.","format":"wav",${WEIRD.map((k, i) => `${JSON.stringify(k)}:${i}`).join(',')}}`;
    const res = await postJson(stack, '/api/generate_tts', body);
    expect(res.status).toBe(200);
    expect(await decodedDuration(Buffer.from(await res.arrayBuffer()), 'wav')).toBeGreaterThan(0.3);
  });
});

describe('finding 9: errors before routing, or refused by Node, are envelopes', () => {
  it('malformed URL (/v1/%zz) → 400 envelope', async () => {
    const res = await rawRequest('GET /v1/%zz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expectEnvelope(res, 400, 'invalid_value');
  });

  it('over-long path parameter → 414 envelope', async () => {
    const res = await rawRequest(`GET /api/jobs/${'a'.repeat(500)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    expectEnvelope(res, 414, 'uri_too_long');
  });

  it('over-large headers → 431 envelope', async () => {
    const res = await rawRequest(`GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(40_000)}\r\n\r\n`);
    expectEnvelope(res, 431, 'headers_too_large');
  });

  it('unparsable HTTP → 400 envelope', async () => {
    const res = await rawRequest('NOT HTTP AT ALL\r\n\r\n');
    expectEnvelope(res, 400, 'invalid_value');
  });

  it('bare OPTIONS (not a CORS preflight) → 400 envelope; a real preflight still works', async () => {
    const res = await rawRequest('OPTIONS /v1/audio/speech HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expectEnvelope(res, 400, 'invalid_value');
    const pre = await fetch(`${stack.baseUrl}/v1/audio/speech`, {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' },
    });
    expect(pre.status).toBe(204);
    expect(pre.headers.get('access-control-allow-origin')).toBe('https://app.example');
  });
});

describe('finding 7: request timeouts cut slow requests, not long responses', () => {
  it('a body dribbled and never finished is cut with a 408 envelope after REQUEST_TIMEOUT_S', async () => {
    const t0 = performance.now();
    const socket = net.connect(Number(new URL(stack.baseUrl).port), '127.0.0.1');
    const body = JSON.stringify({ ...GOOD, input: 'x'.repeat(200) });
    socket.write(
      `POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`,
    );
    let i = 0;
    const drip = setInterval(() => {
      if (!socket.destroyed && socket.writable && i < body.length - 1) socket.write(body[i++]!);
    }, 200);
    let out = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (out += d));
    socket.on('error', () => {});
    await new Promise<void>((resolve) => socket.on('close', () => resolve()));
    clearInterval(drip);
    const s = (performance.now() - t0) / 1000;
    // Cut, and not before the configured time (Node checks on an interval: allow generous slack above).
    expect(s).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_S * 0.9);
    expect(s).toBeLessThan(REQUEST_TIMEOUT_S + 15);
    expect(i).toBeLessThan(body.length - 1); // it never finished sending
    const m = /^HTTP\/1\.1 (\d{3})[\s\S]*?\r\n\r\n([\s\S]*)$/.exec(out);
    expect(m?.[1]).toBe('408');
    expect(JSON.parse(m![2]!).error.code).toBe('request_timeout');
  });

  it('a streamed response that lasts several times REQUEST_TIMEOUT_S, read with a pause, arrives whole', async () => {
    // About 9 MB of wav: more than the socket buffers take while the client pauses, so the API is still sending.
    const input = 'A long answer keeps streaming well past the request timeout, and nothing may cut it. '.repeat(36);
    // Not reading for 3 × the request timeout: a slow client, the response must survive it.
    const { status, bytes } = await speechWithPause(
      `${stack.baseUrl}/v1/audio/speech`, { ...GOOD, input, response_format: 'wav' }, REQUEST_TIMEOUT_S * 3000,
    );
    expect(status).toBe(200);
    expect(bytes.length).toBeGreaterThan(4_000_000);
    expect(await decodedDuration(bytes, 'wav')).toBeCloseTo((bytes.length - 44) / 48_000, 1);
  });
});
