import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import OpenAI from 'openai';
import { startStack, postJson, type Stack } from './helpers/stack.ts';

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ redisUrl: inject('redisUrl') });
});
afterAll(async () => {
  await stack?.stop();
});

const GOOD = { model: 'tts-1', input: 'Hello.', voice: 'alloy' } as const;

async function sdkError(body: Record<string, unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  try {
    const res = await stack.client.audio.speech.create(body as never);
    await res.arrayBuffer();
  } catch (err) {
    expect(err).toBeInstanceOf(OpenAI.APIError);
    return err as InstanceType<typeof OpenAI.APIError>;
  }
  throw new Error(`expected an error for ${JSON.stringify(body).slice(0, 200)}`);
}

async function expectNothingQueued() {
  for (const engine of ['espeak', 'kokoro']) {
    const counts = await stack.queue(engine).getJobCounts();
    expect(Object.values(counts).reduce((a, b) => a + b, 0), `${engine}: ${JSON.stringify(counts)}`).toBe(0);
  }
}

describe('bad input on /v1/audio/speech (OpenAI SDK, maxRetries 0)', () => {
  const cases: [string, Record<string, unknown>, number, string, string | null, abstract new (...args: never[]) => unknown][] = [
    ['missing model', { input: 'x', voice: 'alloy' }, 400, 'model', 'missing_required_parameter', OpenAI.BadRequestError],
    ['missing input', { model: 'tts-1', voice: 'alloy' }, 400, 'input', 'missing_required_parameter', OpenAI.BadRequestError],
    ['missing voice', { model: 'tts-1', input: 'x' }, 400, 'voice', 'missing_required_parameter', OpenAI.BadRequestError],
    ['input of the wrong type', { ...GOOD, input: 42 }, 400, 'input', 'invalid_type', OpenAI.BadRequestError],
    ['speed of the wrong type', { ...GOOD, speed: 'fast' }, 400, 'speed', 'invalid_type', OpenAI.BadRequestError],
    ['speed above 4', { ...GOOD, speed: 4.5 }, 400, 'speed', 'invalid_value', OpenAI.BadRequestError],
    ['speed below 0.25', { ...GOOD, speed: 0.1 }, 400, 'speed', 'invalid_value', OpenAI.BadRequestError],
    ['unknown response_format', { ...GOOD, response_format: 'ogg' }, 400, 'response_format', 'invalid_value', OpenAI.BadRequestError],
    ['unknown stream_format', { ...GOOD, stream_format: 'chunks' }, 400, 'stream_format', 'invalid_value', OpenAI.BadRequestError],
    ['input over 4,096 characters', { ...GOOD, input: 'a'.repeat(4097) }, 400, 'input', 'string_too_long', OpenAI.BadRequestError],
    ['empty input', { ...GOOD, input: '' }, 400, 'input', 'invalid_value', OpenAI.BadRequestError],
    ['whitespace-only input', { ...GOOD, input: '  \n\t ' }, 400, 'input', 'invalid_value', OpenAI.BadRequestError],
    ['instructions over 4,096 characters', { ...GOOD, instructions: 'b'.repeat(4097) }, 400, 'instructions', 'string_too_long', OpenAI.BadRequestError],
    ['unknown voice', { ...GOOD, voice: 'nobody' }, 400, 'voice', 'invalid_value', OpenAI.BadRequestError],
    ['unknown voice id object', { ...GOOD, voice: { id: 'nobody' } }, 400, 'voice', 'invalid_value', OpenAI.BadRequestError],
    ['voice of the wrong type', { ...GOOD, voice: 7 }, 400, 'voice', 'invalid_value', OpenAI.BadRequestError],
    ['unknown preset', { ...GOOD, preset: 'nope' }, 400, 'preset', 'invalid_value', OpenAI.BadRequestError],
    ['unknown model', { ...GOOD, model: 'tts-9' }, 404, 'model', 'model_not_found', OpenAI.NotFoundError],
  ];

  for (const [name, body, status, param, code, cls] of cases) {
    it(`${name} → ${status} ${code} (param ${param})`, async () => {
      const err = await sdkError(body);
      expect(err).toBeInstanceOf(cls);
      expect(err.status).toBe(status);
      expect(err.type).toBe('invalid_request_error');
      expect(err.param).toBe(param);
      expect(err.code).toBe(code);
      expect(err.headers?.get('x-request-id')).toMatch(/^req_[0-9a-f]{32}$/);
      await expectNothingQueued();
    });
  }

  it('the unknown-voice message lists the valid voices', async () => {
    const err = await sdkError({ ...GOOD, voice: 'nobody' });
    expect(err.message).toContain('alloy');
    expect(err.message).toContain('cedar');
  });

  it('a known model no live worker serves → 503 model_unavailable at once, nothing queued', async () => {
    const t0 = Date.now();
    const err = await sdkError({ ...GOOD, model: 'kokoro' });
    expect(err).toBeInstanceOf(OpenAI.InternalServerError);
    expect(err.status).toBe(503);
    expect(err.type).toBe('server_error');
    expect(err.code).toBe('model_unavailable');
    expect(err.headers?.get('retry-after')).toBeTruthy();
    // "At once": not after waiting in the queue for a worker until QUEUE_TIMEOUT_S (30 s by default). A tenth of that
    // leaves a loaded machine room and still tells the two apart.
    expect(Date.now() - t0).toBeLessThan(3000);
    await expectNothingQueued();
  });

  it('malformed JSON → 400 JSON envelope', async () => {
    const res = await postJson(stack, '/v1/audio/speech', '{"model": "tts-1", "input": ');
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: Record<string, unknown> };
    expect(body.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_json', param: null });
    expect(res.headers.get('x-request-id')).toMatch(/^req_[0-9a-f]{32}$/);
    await expectNothingQueued();
  });

  it('text/plain body → 415 JSON envelope', async () => {
    const res = await fetch(`${stack.baseUrl}/v1/audio/speech`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: JSON.stringify(GOOD),
    });
    expect(res.status).toBe(415);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('unsupported_media_type');
    await expectNothingQueued();
  });

  it('body too large → 413 JSON envelope', async () => {
    const res = await postJson(stack, '/v1/audio/speech', { ...GOOD, input: 'x'.repeat(2 * 1024 * 1024) });
    expect(res.status).toBe(413);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('payload_too_large');
    await expectNothingQueued();
  });

  it('unknown route → 404 JSON envelope, never HTML', async () => {
    const res = await fetch(`${stack.baseUrl}/v1/audio/nothing-here`);
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('not_found');
  });
});
