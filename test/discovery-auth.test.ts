import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import OpenAI from 'openai';
import { OPENAI_VOICES } from '@chorus/shared';
import { startStack, type Stack } from './helpers/stack.ts';

describe('discovery, health and CORS (open service)', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ redisUrl: inject('redisUrl'), apiEnv: { CORS_ORIGINS: 'https://app.example' } });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('GET /v1/models lists the aliases and the engine a live worker serves (SDK)', async () => {
    const ids: string[] = [];
    for await (const m of stack.client.models.list()) ids.push(m.id);
    expect(ids).toEqual(['tts-1', 'tts-1-hd', 'gpt-4o-mini-tts', 'gpt-4o-mini-tts-2025-12-15', 'espeak']);
    const one = await stack.client.models.retrieve('tts-1');
    expect(one).toMatchObject({ id: 'tts-1', object: 'model', owned_by: 'chorus', engine: 'espeak', devices: ['cpu'] });
    await expect(stack.client.models.retrieve('kokoro')).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it('GET /v1/audio/voices has every OpenAI name as {id, name, engine, language, gender}', async () => {
    const res = await fetch(`${stack.baseUrl}/v1/audio/voices`);
    const body = (await res.json()) as { voices: { id: string; name: string; engine: string; language: string }[] };
    for (const v of OPENAI_VOICES) {
      expect(body.voices.find((x) => x.id === v)).toMatchObject({ id: v, name: v, engine: 'espeak' });
    }
    expect(body.voices.find((x) => x.id === 'en_us_f3')).toMatchObject({ language: 'en-US', gender: 'female' });
  });

  it('healthz and readyz', async () => {
    expect((await fetch(`${stack.baseUrl}/healthz`)).status).toBe(200);
    // Polled: the tests' workers beat every 500 ms with a 1.5 s TTL, which a very loaded machine can miss for a
    // moment (readiness then says workers: 0); a readiness that never turns 200 still fails.
    const readyz = async () => {
      const res = await fetch(`${stack.baseUrl}/readyz`);
      return { status: res.status, body: await res.json() };
    };
    await expect.poll(readyz, { timeout: 20_000, interval: 250 })
      .toMatchObject({ status: 200, body: { status: 'ready', redis: true, workers: 1 } });
  });

  it('CORS: allowed origins get the headers, x-request-id is exposed', async () => {
    const preflight = await fetch(`${stack.baseUrl}/v1/audio/speech`, {
      method: 'OPTIONS',
      headers: {
        origin: 'https://app.example',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization,content-type',
      },
    });
    expect(preflight.status).toBeLessThan(300);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('https://app.example');
    const res = await fetch(`${stack.baseUrl}/v1/models`, { headers: { origin: 'https://app.example' } });
    expect(res.headers.get('access-control-expose-headers')).toContain('x-request-id');
    const other = await fetch(`${stack.baseUrl}/v1/models`, { headers: { origin: 'https://evil.example' } });
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('readiness without workers', () => {
  it('readyz is 503 while no worker is alive', async () => {
    const stack = await startStack({ redisUrl: inject('redisUrl'), workers: 0 });
    try {
      const res = await fetch(`${stack.baseUrl}/readyz`);
      expect(res.status).toBe(503);
      expect(await res.json()).toMatchObject({ status: 'not_ready', workers: 0 });
    } finally {
      await stack.stop();
    }
  });
});

describe('API keys', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ redisUrl: inject('redisUrl'), apiEnv: { API_KEYS: 'sk-one,sk-two' } });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('a valid key gets audio; none or a wrong one gets 401 invalid_api_key', async () => {
    const res = await stack.client.audio.speech.create({ model: 'tts-1', voice: 'alloy', input: 'Hi.', response_format: 'pcm' });
    expect((await res.arrayBuffer()).byteLength).toBeGreaterThan(0);
    const second = new OpenAI({ baseURL: `${stack.baseUrl}/v1`, apiKey: 'sk-two', maxRetries: 0 });
    await (await second.audio.speech.create({ model: 'tts-1', voice: 'alloy', input: 'Hi.' })).arrayBuffer();
    const wrong = new OpenAI({ baseURL: `${stack.baseUrl}/v1`, apiKey: 'sk-wrong', maxRetries: 0 });
    const err = await wrong.audio.speech.create({ model: 'tts-1', voice: 'alloy', input: 'Hi.' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((err as InstanceType<typeof OpenAI.AuthenticationError>).code).toBe('invalid_api_key');
    const none = await fetch(`${stack.baseUrl}/v1/audio/speech`, { method: 'POST' });
    expect(none.status).toBe(401);
    expect(none.headers.get('x-request-id')).toMatch(/^req_/);
  });

  it('discovery routes stay public while PUBLIC_DISCOVERY is on', async () => {
    expect((await fetch(`${stack.baseUrl}/v1/models`)).status).toBe(200);
    expect((await fetch(`${stack.baseUrl}/v1/audio/voices`)).status).toBe(200);
  });
});

describe('API keys with PUBLIC_DISCOVERY=false', () => {
  it('discovery routes need a key too', async () => {
    const stack = await startStack({
      redisUrl: inject('redisUrl'), workers: 0, apiEnv: { API_KEYS: 'sk-one', PUBLIC_DISCOVERY: 'false' },
    });
    try {
      expect((await fetch(`${stack.baseUrl}/v1/models`)).status).toBe(401);
      const ok = await fetch(`${stack.baseUrl}/v1/models`, { headers: { authorization: 'Bearer sk-one' } });
      expect(ok.status).toBe(200);
      expect((await fetch(`${stack.baseUrl}/healthz`)).status).toBe(200);
    } finally {
      await stack.stop();
    }
  });
});
