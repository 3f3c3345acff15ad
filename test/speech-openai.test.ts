import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { OPENAI_VOICES } from '@chorus/shared';
import { startStack, type Stack } from './helpers/stack.ts';
import { decodedDuration, decodeToPcm, opusHead, probe, rms } from './helpers/audio.ts';

const SHORT = 'Hello from Chorus.';
const MEDIUM =
  'The quick brown fox jumps over the lazy dog. Then it runs into the forest, where nobody can find it, ' +
  'and it sleeps until the morning comes again.';

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ redisUrl: inject('redisUrl') });
});
afterAll(async () => {
  await stack?.stop();
});

async function speech(body: Parameters<Stack['client']['audio']['speech']['create']>[0]) {
  const res = await stack.client.audio.speech.create(body);
  return { res, audio: Buffer.from(await res.arrayBuffer()) };
}

describe('POST /v1/audio/speech through the OpenAI SDK', () => {
  const expectations = {
    mp3: { contentType: 'audio/mpeg', codec: 'mp3', rate: 24_000 },
    aac: { contentType: 'audio/aac', codec: 'aac', rate: 24_000 },
    flac: { contentType: 'audio/flac', codec: 'flac', rate: 24_000 },
    wav: { contentType: 'audio/wav', codec: 'pcm_s16le', rate: 24_000 },
    opus: { contentType: 'audio/opus', codec: 'opus', rate: 48_000 }, // Opus always decodes at 48 kHz
  } as const;

  for (const [format, exp] of Object.entries(expectations)) {
    it(`${format}: decodes as 24 kHz mono audio whose duration grows with the text`, async () => {
      const short = await speech({ model: 'tts-1', voice: 'alloy', input: SHORT, response_format: format as 'mp3' });
      const long = await speech({ model: 'tts-1', voice: 'alloy', input: MEDIUM, response_format: format as 'mp3' });
      expect(short.res.headers.get('content-type')).toBe(exp.contentType);
      expect(short.res.headers.get('x-request-id')).toMatch(/^req_[0-9a-f]{32}$/);
      const p = await probe(long.audio, format === 'opus' ? 'ogg' : format);
      expect(p.codec).toBe(exp.codec);
      expect(p.sampleRate).toBe(exp.rate);
      expect(p.channels).toBe(1);
      if (format === 'opus') expect(opusHead(long.audio)).toEqual({ inputRate: 24_000, channels: 1 });
      const dShort = await decodedDuration(short.audio);
      const dLong = await decodedDuration(long.audio);
      expect(dShort).toBeGreaterThan(0.5);
      expect(dLong).toBeGreaterThan(dShort * 3);
      expect(rms(await decodeToPcm(long.audio))).toBeGreaterThan(300); // speech, not silence
    });
  }

  it('wav streams with OpenAI-style 0xFFFFFFFF size fields', async () => {
    const { audio } = await speech({ model: 'tts-1', voice: 'alloy', input: SHORT, response_format: 'wav' });
    expect(audio.toString('ascii', 0, 4)).toBe('RIFF');
    expect(audio.readUInt32LE(4)).toBe(0xffffffff);
    expect(audio.readUInt32LE(40)).toBe(0xffffffff);
  });

  it('pcm is headerless 24 kHz 16-bit mono: exactly the wav samples, 48,000 bytes per second', async () => {
    const pcm = await speech({ model: 'tts-1', voice: 'alloy', input: MEDIUM, response_format: 'pcm' });
    const wav = await speech({ model: 'tts-1', voice: 'alloy', input: MEDIUM, response_format: 'wav' });
    expect(pcm.res.headers.get('content-type')).toBe('audio/pcm');
    expect(pcm.audio.toString('ascii', 0, 4)).not.toBe('RIFF');
    expect(pcm.audio.length % 2).toBe(0);
    expect(pcm.audio.equals(wav.audio.subarray(44))).toBe(true);
    const seconds = await decodedDuration(wav.audio);
    expect(pcm.audio.length).toBe(Math.round(seconds * 48_000));
    expect(pcm.audio.length / 48_000).toBeGreaterThan(5);
  });

  it('speed 2 gives about half the duration of speed 1; speed 0.25 about four times', async () => {
    const base = await speech({ model: 'tts-1', voice: 'alloy', input: MEDIUM, response_format: 'pcm', speed: 1 });
    const fast = await speech({ model: 'tts-1', voice: 'alloy', input: MEDIUM, response_format: 'pcm', speed: 2 });
    const slow = await speech({ model: 'tts-1', voice: 'alloy', input: SHORT, response_format: 'mp3', speed: 0.25 });
    const slowBase = await speech({ model: 'tts-1', voice: 'alloy', input: SHORT, response_format: 'mp3', speed: 1 });
    const ratio = fast.audio.length / base.audio.length;
    expect(ratio).toBeGreaterThan(0.4);
    expect(ratio).toBeLessThan(0.6);
    const slowRatio = (await decodedDuration(slow.audio)) / (await decodedDuration(slowBase.audio));
    expect(slowRatio).toBeGreaterThan(3);
    expect(slowRatio).toBeLessThan(5);
  });

  it('all 13 OpenAI voice names work, and different names sound different', async () => {
    const digests = new Map<string, string>();
    for (const voice of OPENAI_VOICES) {
      const { res, audio } = await speech({ model: 'tts-1', voice, input: SHORT, response_format: 'pcm' });
      expect(res.status).toBe(200);
      expect(audio.length).toBeGreaterThan(24_000);
      digests.set(voice, audio.toString('base64'));
    }
    expect(new Set(digests.values()).size).toBe(OPENAI_VOICES.length);
  });

  it('accepts voice as {id} and as a configured speaker id', async () => {
    const byName = await speech({ model: 'tts-1', voice: 'onyx', input: SHORT, response_format: 'pcm' });
    const byObject = await speech({ model: 'tts-1', voice: { id: 'onyx' } as never, input: SHORT, response_format: 'pcm' });
    const bySpeaker = await speech({ model: 'tts-1', voice: 'en_us_m7', input: SHORT, response_format: 'pcm' });
    expect(byObject.audio.equals(byName.audio)).toBe(true);
    expect(bySpeaker.audio.equals(byName.audio)).toBe(true);
  });

  it('accepts every OpenAI model alias and the engine id; with no neural worker alive, aliases fall through to espeak', async () => {
    // espeak-ng is deterministic: every alias must give exactly the engine id's audio (not merely some bytes).
    const reference = (await speech({ model: 'espeak', voice: 'alloy', input: SHORT, response_format: 'pcm' })).audio;
    expect(reference.length / 48_000).toBeGreaterThan(0.5);
    for (const model of ['tts-1', 'tts-1-hd', 'gpt-4o-mini-tts', 'gpt-4o-mini-tts-2025-12-15', 'espeak']) {
      const { res, audio } = await speech({ model, voice: 'alloy', input: SHORT, response_format: 'pcm' });
      expect(res.status, model).toBe(200);
      expect(res.headers.get('x-chorus-engine'), model).toBe('espeak');
      expect(audio.equals(reference), model).toBe(true);
    }
    // The default chain names kokoro and piper first; as engine ids they are known models nobody serves here.
    const kokoro = await fetch(`${stack.baseUrl}/v1/audio/speech`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'kokoro', voice: 'alloy', input: SHORT }),
    });
    expect(kokoro.status).toBe(503);
    expect((await kokoro.json()).error.code).toBe('model_unavailable');
  });

  it('streams: the first chunk of a ~3,000 character input arrives well before the last chunk is produced', async () => {
    const sentence = 'Streaming means the listener hears the first words while the rest is still being made. ';
    const input = sentence.repeat(Math.ceil(3000 / sentence.length)).slice(0, 3000);
    const t0 = Date.now();
    const res = await stack.client.audio.speech.create({ model: 'tts-1', voice: 'alloy', input, response_format: 'mp3' });
    const reader = res.body!.getReader();
    let firstAt: number | undefined;
    let lastAt = 0;
    let bytes = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      firstAt ??= Date.now();
      lastAt = Date.now();
      bytes += value.length;
    }
    // When the worker produced the last chunk: the millisecond part of its stream entry id.
    const job = await stack.queue().getJob(res.headers.get('x-job-id')!);
    const entries = await stack.redis.xrevrange((job!.data as { streamKey: string }).streamKey, '+', '-', 'COUNT', 2);
    const lastAudio = entries.find(([, fields]) => fields[1] === 'a')!;
    const lastProducedAt = Number(lastAudio[0].split('-')[0]);
    // The first chunk was in the client's hands long before the worker produced the last one.
    expect(firstAt! - t0).toBeLessThan(lastProducedAt - t0);
    expect(lastProducedAt - firstAt!).toBeGreaterThan(200);
    expect(lastAt).toBeGreaterThanOrEqual(firstAt!);
    expect(bytes).toBeGreaterThan(100_000);
  });

  it('stream:false (and ?stream=false) returns the whole file with Content-Length and exact WAV sizes', async () => {
    const res = await fetch(`${stack.baseUrl}/v1/audio/speech?stream=false`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tts-1', voice: 'alloy', input: SHORT, response_format: 'wav' }),
    });
    const audio = Buffer.from(await res.arrayBuffer());
    expect(res.status).toBe(200);
    expect(Number(res.headers.get('content-length'))).toBe(audio.length);
    expect(audio.readUInt32LE(4)).toBe(audio.length - 8);
    expect(audio.readUInt32LE(40)).toBe(audio.length - 44);
  });

  it('names ignored extra fields in x-chorus-ignored-params', async () => {
    const res = await fetch(`${stack.baseUrl}/v1/audio/speech`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tts-1', voice: 'alloy', input: SHORT, response_format: 'pcm', foo: 1, bar: 'x' }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-chorus-ignored-params')).toBe('foo,bar');
    await res.arrayBuffer();
  });
});

describe('text is spoken as text', () => {
  it('shell metacharacters and option-like words have no effect beyond being read', async () => {
    const marker = `/tmp/chorus-pwned-${Date.now()}`;
    const input = `Hello; touch ${marker} && echo $(id) \`id\` | rm -rf / > /dev/null --help --version -v en -s 999 -m "--stdout" 'quoted'`;
    const { res, audio } = await speech({ model: 'tts-1', voice: 'alloy', input, response_format: 'pcm' });
    expect(res.status).toBe(200);
    expect(audio.length / 48_000).toBeGreaterThan(3); // all of it was read out, at normal speed
    const { existsSync } = await import('node:fs');
    expect(existsSync(marker)).toBe(false);
  });

  it('SSML/XML tags are read out, not interpreted (no 10 s break)', async () => {
    const ssml = '<speak>Hi <break time="10s"/> there <prosody rate="x-slow">slow</prosody></speak>';
    const { audio } = await speech({ model: 'tts-1', voice: 'alloy', input: ssml, response_format: 'pcm' });
    const plain = await speech({ model: 'tts-1', voice: 'alloy', input: 'Hi there slow', response_format: 'pcm' });
    const seconds = audio.length / 48_000;
    expect(seconds).toBeLessThan(10);
    // The tag names were spoken, so it is clearly longer than the plain words alone.
    expect(seconds).toBeGreaterThan((plain.audio.length / 48_000) * 1.5);
  });

  it("espeak's [[phoneme]] syntax is read as text too, however the brackets are disguised", async () => {
    // espeak-ng reads a lone bracket as a parenthesis; in phoneme mode it would read h@l@U as "hello" instead.
    const pcm = async (input: string) =>
      (await speech({ model: 'tts-1', voice: 'alloy', input, response_format: 'pcm' })).audio;
    const asText = await pcm('Say (((h@l@U))) now, and ((h@l@U)) again');
    expect(asText.length / 48_000).toBeGreaterThan(1);
    for (const input of [
      'Say [[[h@l@U]]] now, and [[h@l@U]] again',
      'Say [\u00ad[[h@l@U]]] now, and [\u200c[h@l@U]] again', // characters espeak-ng skips, between brackets
    ]) {
      expect((await pcm(input)).equals(asText)).toBe(true);
    }
  });
});
