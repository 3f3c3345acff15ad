import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { liveWorkers } from '@chorus/shared';
import { spawnWorker, type Stack } from './helpers/stack.ts';
import { decodedDuration, decodeToPcm, probe, rms } from './helpers/audio.ts';
import { BREAKAGES, generateModelsDir, PIPER_HOP, piperConfig, KOKORO_HOP } from './helpers/onnx-models.ts';
import { startModelStack } from './helpers/model-stack.ts';
import { PiperEngine } from '../apps/worker/src/engines/piper-engine.ts';
import { phonemize } from '../apps/worker/src/engines/onnx/phonemize.ts';

/*
 * The real worker process with ENGINES=…,piper,kokoro on generated models: a broken MODELS_DIR stops it at start-up
 * with one line naming the file, and a good one serves Piper and Kokoro voices through the API to the OpenAI SDK.
 */

describe('worker start-up with a broken MODELS_DIR', () => {
  // Every broken file is checked in-process in neural-engines.test.ts; here the real worker process, once per engine.
  const cases = BREAKAGES.filter(([, what]) => what === 'voice config not JSON' || what === 'voice file truncated');

  it('exits non-zero with one fatal line naming the file and what is wrong', async () => {
    expect(cases).toHaveLength(2);
    const results = await Promise.all(cases.map(async ([engine, what, breakIt, message]) => {
      const dir = generateModelsDir().dir;
      const file = breakIt(dir);
      const w = spawnWorker({
        ENGINES: `espeak,${engine}`, MODELS_DIR: dir, REDIS_URL: inject('redisUrl'), REDIS_PREFIX: `t${randomUUID().slice(0, 8)}`, LOG_LEVEL: 'info',
      });
      const code = await new Promise<number | null>((resolve) => w.process.once('exit', (c) => resolve(c)));
      rmSync(dir, { recursive: true, force: true });
      return { what, file, message, code, output: w.output() };
    }));
    for (const r of results) {
      expect(r.code, r.what).toBe(1);
      const fatal = r.output.split('\n').filter((l) => l.includes('"level":60'));
      expect(fatal, `${r.what}:\n${r.output}`).toHaveLength(1);
      const msg = (JSON.parse(fatal[0]!) as { msg: string }).msg;
      expect(msg, r.what).toContain(r.file);
      expect(msg, r.what).toMatch(r.message);
      expect(r.output, r.what).not.toMatch(/worker ready/);
    }
  });
});

describe('Piper and Kokoro through the real stack', () => {
  let stack: Stack;

  // The shipped voices file: OpenAI names map per engine, engine voices are accepted by name.
  beforeAll(async () => {
    stack = await startModelStack(inject('redisUrl'), 'espeak,piper,kokoro');
  });
  afterAll(async () => {
    await stack?.stop();
  });

  async function speak(body: Parameters<Stack['client']['audio']['speech']['create']>[0]) {
    const res = await stack.client.audio.speech.create(body);
    return { engine: res.headers.get('x-chorus-engine'), audio: Buffer.from(await res.arrayBuffer()) };
  }

  it('the heartbeat lists what each engine loaded and where it runs', async () => {
    const [w] = await liveWorkers(stack.redis, stack.keys);
    expect(w!.engines).toEqual(['espeak', 'piper', 'kokoro']);
    expect(w!.models).toEqual([
      { engine: 'espeak', device: 'cpu', voices: [] },
      { engine: 'piper', device: 'cpu', voices: ['en_US-multi-medium', 'en_US-multi-medium/alice', 'en_US-multi-medium/bob', 'en_US-test-low', 'en_US-test-medium'] },
      { engine: 'kokoro', device: 'cpu', voices: ['af_bella', 'af_sky', 'bf_emma'] },
    ]);
  });

  it('model piper, a 16 kHz voice: mp3 at 24 kHz whose duration is the model’s samples at 16 kHz', async () => {
    const text = 'Piper speaks through the whole stack.';
    const { engine, audio } = await speak({ model: 'piper', voice: 'en_US-test-low', input: text, response_format: 'mp3' });
    expect(engine).toBe('piper');
    const p = await probe(audio, 'mp3');
    expect(p).toMatchObject({ codec: 'mp3', sampleRate: 24_000, channels: 1 });
    const ids = PiperEngine.ids(new Map(Object.entries(piperConfig({ sampleRate: 16_000 }).phoneme_id_map)), await phonemize(text, 'en-us', new AbortController().signal));
    const expected = (ids.length * PIPER_HOP) / 16_000;
    const got = await decodedDuration(audio);
    expect(Math.abs(got - expected)).toBeLessThan(0.1); // read as 22,050 Hz it would be 27% shorter
    expect(rms(await decodeToPcm(audio))).toBeGreaterThan(1000);
  });

  it('model piper with a multi-speaker voice, and model kokoro with a blend, through the OpenAI SDK', async () => {
    const bob = await speak({ model: 'piper', voice: 'en_US-multi-medium/bob', input: 'Bob here.', response_format: 'wav' });
    const alice = await speak({ model: 'piper', voice: 'en_US-multi-medium/alice', input: 'Bob here.', response_format: 'wav' });
    const blend = await speak({ model: 'kokoro', voice: 'af_bella(2)+af_sky(1)', input: 'A blended Kokoro voice.', response_format: 'mp3' });
    expect([bob.engine, blend.engine]).toEqual(['piper', 'kokoro']);
    expect((await probe(bob.audio, 'wav')).sampleRate).toBe(24_000);
    expect(await decodedDuration(bob.audio)).toBeGreaterThan(0.2);
    expect(bob.audio.equals(alice.audio)).toBe(false); // sid reaches the model
    expect(await probe(blend.audio, 'mp3')).toMatchObject({ codec: 'mp3', sampleRate: 24_000 });
    expect(await decodedDuration(blend.audio)).toBeGreaterThan(20 * KOKORO_HOP / 24_000);
    expect(rms(await decodeToPcm(blend.audio))).toBeGreaterThan(1000);
  });

  it('an OpenAI alias and voice go to the best live engine: tts-1 + alloy is Kokoro, with the voice the file maps or the first loaded', async () => {
    const input = 'Routing picks the best engine a worker serves.';
    const alias = await speak({ model: 'tts-1', voice: 'alloy', input, response_format: 'pcm' });
    expect(alias.engine).toBe('kokoro');
    // alloy → af_alloy and the default af_heart are not loaded here: the first loaded voice (af_bella) speaks.
    const bella = await speak({ model: 'kokoro', voice: 'af_bella', input, response_format: 'pcm' });
    expect(alias.audio.equals(bella.audio)).toBe(true);
    // A configured espeak speaker still pins espeak under the same alias.
    expect((await speak({ model: 'tts-1', voice: 'en_us_m3', input: 'Hi.', response_format: 'pcm' })).engine).toBe('espeak');
  });

  it('an unknown voice in a blend is a 400 naming it; discovery lists loaded voices and devices', async () => {
    const err = await stack.client.audio.speech
      .create({ model: 'kokoro', voice: 'af_bella+af_nobody', input: 'No.' }, { maxRetries: 0 })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('voice');
    expect((err as Error).message).toMatch(/af_nobody/);
    const models = (await (await fetch(`${stack.baseUrl}/v1/models`)).json()) as { data: { id: string; engine: string; devices: string[] }[] };
    expect(models.data.find((m) => m.id === 'tts-1')).toMatchObject({ engine: 'kokoro', devices: ['cpu'] });
    expect(models.data.find((m) => m.id === 'piper')).toMatchObject({ engine: 'piper', devices: ['cpu'] });
    const voices = (await (await fetch(`${stack.baseUrl}/v1/audio/voices`)).json()) as { voices: { id: string; engine: string }[] };
    expect(voices.voices.find((v) => v.id === 'alloy')).toMatchObject({ engine: 'kokoro' });
    expect(voices.voices.find((v) => v.id === 'en_US-test-low')).toMatchObject({ engine: 'piper', language: 'en-US' });
    expect(voices.voices.find((v) => v.id === 'bf_emma')).toMatchObject({ engine: 'kokoro', language: 'en-GB', gender: 'female' });
  });
});
