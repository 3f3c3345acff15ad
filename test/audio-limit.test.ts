import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import OpenAI from 'openai';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { startStack, postJson, type Stack } from './helpers/stack.ts';
import { decodedDuration } from './helpers/audio.ts';
import { descendantsNamed, espeakProcesses, waitFor } from './helpers/processes.ts';

/*
 * Issue 9, finding 2: one request's audio is bounded by MAX_AUDIO_SECONDS (2 s here), whatever the text, with a
 * clear error before and after the first byte; the worker stops its engine and encoder when the limit is passed.
 * Also: an engine failure reaches the client as a catalogue message, never espeak-ng's own words.
 */

const LIMIT_S = 2;
// ~20 s of speech at speed 1: over the limit from its first sentences.
const LONG = 'This sentence is repeated until the audio is far longer than the limit allows. '.repeat(20);
// espeak-ng reads every ideograph as "Chinese letter": 4,000 of them at speed 0.25 would be hours of audio.
const CJK = '漢字'.repeat(2000);

let stack: Stack;
let workerPid: number;
beforeAll(async () => {
  stack = await startStack({
    redisUrl: inject('redisUrl'),
    apiEnv: { MAX_AUDIO_SECONDS: String(LIMIT_S) },
    workerEnv: { WORKER_CONCURRENCY: '1', ENCODER_POOL_SIZE: '1', ESPEAK_POOL_SIZE: '1' },
  });
  workerPid = stack.workers[0]!.process.pid!;
});
afterAll(async () => {
  await stack?.stop();
});

function expectTooLong(err: { status?: number; code?: unknown; param?: unknown; type?: unknown; message?: string }) {
  expect(err.status).toBe(400);
  expect(err.code).toBe('audio_too_long');
  expect(err.param).toBe('input');
  expect(err.type).toBe('invalid_request_error');
  expect(err.message).toContain(`${LIMIT_S} seconds`);
}

describe('MAX_AUDIO_SECONDS', () => {
  it('a request under the limit is unaffected', async () => {
    const res = await stack.client.audio.speech.create({ model: 'tts-1', voice: 'alloy', input: 'Short.', response_format: 'mp3' });
    const d = await decodedDuration(Buffer.from(await res.arrayBuffer()));
    expect(d).toBeGreaterThan(0.3);
    expect(d).toBeLessThan(LIMIT_S);
  });

  it('before the first byte (whole-file responses): 400 audio_too_long, param input, message with the limit', async () => {
    const err = await stack.client.audio.speech
      .create({ model: 'tts-1', voice: 'alloy', input: LONG, response_format: 'wav', stream: false } as never)
      .then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expectTooLong(err as InstanceType<typeof OpenAI.APIError>);

    const legacy = await postJson(stack, '/api/generate_tts', { text: LONG, format: 'wav' });
    expect(legacy.status).toBe(400);
    const body = (await legacy.json()) as { error: Record<string, string> };
    expectTooLong({ status: legacy.status, ...body.error });
  });

  it('raw streaming: first bytes out, then a truncated transfer at about the limit', async () => {
    const res = await stack.client.audio.speech.create({ model: 'tts-1', voice: 'alloy', input: LONG, response_format: 'pcm' });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    let bytes = 0;
    const outcome = await (async () => {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return 'complete';
        bytes += value.length;
      }
    })().catch(() => 'truncated');
    expect(outcome).toBe('truncated');
    expect(bytes).toBeGreaterThan(0);
    expect(bytes).toBeLessThanOrEqual(LIMIT_S * 48_000);
  });

  // pcm/wav: the first audio leaves the worker at once. (An mp3 encoder holds its first bytes back a little, so
  // an mp3 request for this text can pass the limit before its first byte: then it is a plain 400.)
  it('SSE: deltas, then speech.audio.error with code audio_too_long, then [DONE]', async () => {
    const res = await postJson(stack, '/v1/audio/speech', {
      model: 'tts-1', voice: 'alloy', input: LONG, response_format: 'pcm', stream_format: 'sse',
    });
    expect(res.status).toBe(200);
    const events: EventSourceMessage[] = [];
    createParser({ onEvent: (e) => events.push(e) }).feed(await res.text());
    expect(events.at(-1)?.data).toBe('[DONE]');
    const json = events.slice(0, -1).map((e) => JSON.parse(e.data) as { type: string; error?: Record<string, string> });
    expect(json.filter((j) => j.type === 'speech.audio.delta').length).toBeGreaterThan(0);
    const last = json.at(-1)!;
    expect(last.type).toBe('speech.audio.error');
    expect(last.error!.code).toBe('audio_too_long');
    expect(last.error!.message).toContain(`${LIMIT_S} seconds`);
  });

  it('legacy SSE: an error event with code audio_too_long', async () => {
    const res = await postJson(stack, '/api/generate_tts/stream', { text: LONG, format: 'wav' });
    expect(res.status).toBe(200);
    const events: EventSourceMessage[] = [];
    createParser({ onEvent: (e) => events.push(e) }).feed(await res.text());
    const last = JSON.parse(events.at(-1)!.data) as { type: string; code: string };
    expect(last).toMatchObject({ type: 'error', code: 'audio_too_long' });
  });

  it('hours of audio (CJK at speed 0.25, opus) fail within seconds; espeak-ng and ffmpeg are stopped', async () => {
    const t0 = performance.now();
    const res = await postJson(stack, '/v1/audio/speech', {
      model: 'tts-1', voice: 'alloy', input: CJK, response_format: 'opus', speed: 0.25, stream_format: 'sse',
    });
    const text = await res.text();
    const failedMs = performance.now() - t0;
    expect(text).toContain('"code":"audio_too_long"');
    // Without the limit this request runs for minutes; with it, a few seconds even on a loaded machine.
    expect(failedMs).toBeLessThan(15_000);
    // Nothing keeps producing: no espeak-ng that has written audio, and only the warm pools' idle processes left:
    // one encoder per container, one espeak-ng per argument set used in this file (speeds 1 and 0.25), idle on stdin.
    const freedMs = await waitFor(
      () => {
        const espeak = espeakProcesses(workerPid);
        return espeak.working.length === 0 && espeak.idle.length <= 2 && descendantsNamed(workerPid, 'ffmpeg').length <= 4;
      },
      20_000, // a generous deadline: the time is logged, the assertion is that they go
    );
    expect(freedMs).toBeGreaterThanOrEqual(0);
    console.log(`CJK x4000 at speed 0.25: audio_too_long after ${failedMs.toFixed(0)} ms, processes freed ${freedMs.toFixed(0)} ms later`);
  });
});

describe('engine failures reach clients as catalogue messages', () => {
  let broken: Stack;
  beforeAll(async () => {
    // A speaker whose espeak-ng voice does not exist: espeak-ng exits 1 with its own error text on stderr.
    const dir = mkdtempSync(path.join(tmpdir(), 'chorus-voices-'));
    const file = path.join(dir, 'voices.json');
    writeFileSync(file, JSON.stringify({
      default_speaker: 'ok',
      speakers: {
        ok: { name: 'OK', engine: 'espeak', voice: 'en-us', language: 'en-US' },
        broken: { name: 'Broken', engine: 'espeak', voice: 'zz-nope', language: 'en-US' },
      },
      openai_voices: {},
      presets: {},
    }));
    broken = await startStack({ redisUrl: inject('redisUrl'), apiEnv: { VOICES_FILE: file }, workerEnv: { VOICES_FILE: file } });
  });
  afterAll(async () => {
    await broken?.stop();
  });

  it('500 engine_error with "Speech synthesis failed." and no stderr or exit status; the detail is logged', async () => {
    const err = await broken.client.audio.speech
      .create({ model: 'tts-1', voice: 'broken', input: 'Hello there.', response_format: 'mp3' })
      .then(() => undefined, (e: unknown) => e as InstanceType<typeof OpenAI.APIError>);
    expect(err?.status).toBe(500);
    expect(err?.code).toBe('engine_error');
    expect(err?.error).toEqual({ message: 'Speech synthesis failed.', type: 'server_error', param: null, code: 'engine_error' });
    // Same on the legacy SSE route (in-band error).
    const res = await postJson(broken, '/api/generate_tts/stream', { text: 'Hello there.', speaker: 'broken' });
    const body = await res.text();
    expect(body).toContain('"code":"engine_error"');
    expect(body).not.toMatch(/espeak|exited|does not exist/i);
    // The worker's log has what went wrong, with the request id.
    expect(await waitFor(() => /espeak-ng exited with 1.*does not exist/s.test(broken.workers[0]!.output()), 20_000))
      .toBeGreaterThanOrEqual(0);
    expect(broken.workers[0]!.output()).toMatch(/"reqId":"req_[0-9a-f]{32}"[^\n]*job failed|job failed[^\n]*"reqId":"req_/);
  });
});
