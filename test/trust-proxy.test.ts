import { afterEach, describe, expect, inject, it } from 'vitest';
import { startStack, type Stack } from './helpers/stack.ts';

/** Behind the compose gateway every request arrives from the proxy: TRUST_PROXY makes per-IP limits per client. */
describe('TRUST_PROXY and per-IP rate limits', () => {
  let stack: Stack | undefined;
  afterEach(async () => {
    await stack?.stop();
    stack = undefined;
  });

  async function statusFrom(forwardedFor: string) {
    const res = await stack!.app.inject({
      method: 'POST',
      url: '/v1/audio/speech',
      headers: { 'content-type': 'application/json', 'x-forwarded-for': forwardedFor },
      payload: { model: 'tts-1', voice: 'alloy', input: 'Hi.' },
    });
    return res.statusCode;
  }

  it('with TRUST_PROXY=true each forwarded client has its own budget', async () => {
    stack = await startStack({ redisUrl: inject('redisUrl'), workers: 0, apiEnv: { RATE_LIMIT_PER_MIN: '1', TRUST_PROXY: 'true' } });
    expect(await statusFrom('198.51.100.1')).not.toBe(429);
    expect(await statusFrom('198.51.100.1')).toBe(429);
    expect(await statusFrom('198.51.100.2')).not.toBe(429);
  });

  it('without it, the forwarded header is ignored (it could be forged): one budget for the proxy address', async () => {
    stack = await startStack({ redisUrl: inject('redisUrl'), workers: 0, apiEnv: { RATE_LIMIT_PER_MIN: '1' } });
    expect(await statusFrom('198.51.100.1')).not.toBe(429);
    expect(await statusFrom('198.51.100.2')).toBe(429);
  });
});
