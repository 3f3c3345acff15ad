import { randomUUID } from 'node:crypto';
import { rmSync, writeFileSync, readFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { liveWorkers } from '@chorus/shared';
import { spawnWorker, startStack, type Stack } from './helpers/stack.ts';
import { decodedDuration, decodeToPcm, probe, rms } from './helpers/audio.ts';
import { BREAKAGES, generateModelsDir, PIPER_HOP, piperConfig, KOKORO_HOP } from './helpers/onnx-models.ts';
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
  let modelsDir: string;
  let voicesFile: string;

  beforeAll(async () => {
    modelsDir = generateModelsDir().dir;
    const defaults = JSON.parse(readFileSync(path.resolve('packages/shared/data/voices.json'), 'utf8')) as { speakers: Record<string, unknown> };
    voicesFile = path.join(mkdtempSync(path.join(tmpdir(), 'chorus-voices-')), 'voices.json');
    // The API resolves `voice` through the voices file; these speakers carry engine-native voice names.
    writeFileSync(voicesFile, JSON.stringify({
      default_speaker: 'en_us_f3',
      speakers: {
        ...defaults.speakers,
        piper_low: { name: 'Piper test 16 kHz', engine: 'piper', voice: 'en_US-test-low' },
        piper_bob: { name: 'Piper multi, bob', engine: 'piper', voice: 'en_US-multi-medium/bob' },
        kokoro_blend: { name: 'Kokoro blend', engine: 'kokoro', voice: 'af_bella(2)+af_sky(1)' },
      },
    }));
    stack = await startStack({
      redisUrl: inject('redisUrl'),
      workerEnv: { ENGINES: 'espeak,piper,kokoro', MODELS_DIR: modelsDir, ORT_INTRA_OP_THREADS: '1' },
      apiEnv: { VOICES_FILE: voicesFile },
    });
  });
  afterAll(async () => {
    await stack?.stop();
    rmSync(modelsDir, { recursive: true, force: true });
    rmSync(path.dirname(voicesFile), { recursive: true, force: true });
  });

  it('the heartbeat lists what each engine loaded and where it runs', async () => {
    const [w] = await liveWorkers(stack.redis, stack.keys);
    expect(w!.engines).toEqual(['espeak', 'piper', 'kokoro']);
    expect(w!.models).toEqual([
      { engine: 'piper', device: 'cpu', voices: ['en_US-multi-medium', 'en_US-multi-medium/alice', 'en_US-multi-medium/bob', 'en_US-test-low', 'en_US-test-medium'] },
      { engine: 'kokoro', device: 'cpu', voices: ['af_bella', 'af_sky', 'bf_emma'] },
    ]);
  });

  it('model piper, a 16 kHz voice: mp3 at 24 kHz whose duration is the model’s samples at 16 kHz', async () => {
    const text = 'Piper speaks through the whole stack.';
    const res = await stack.client.audio.speech.create({ model: 'piper', voice: 'piper_low', input: text, response_format: 'mp3' });
    const audio = Buffer.from(await res.arrayBuffer());
    const p = await probe(audio, 'mp3');
    expect(p).toMatchObject({ codec: 'mp3', sampleRate: 24_000, channels: 1 });
    const ids = PiperEngine.ids(new Map(Object.entries(piperConfig({ sampleRate: 16_000 }).phoneme_id_map)), await phonemize(text, 'en-us', new AbortController().signal));
    const expected = (ids.length * PIPER_HOP) / 16_000;
    const got = await decodedDuration(audio);
    expect(Math.abs(got - expected)).toBeLessThan(0.1); // read as 22,050 Hz it would be 27% shorter
    expect(rms(await decodeToPcm(audio))).toBeGreaterThan(1000);
  });

  it('model piper with a multi-speaker voice, and model kokoro with a blend, through the OpenAI SDK', async () => {
    const bob = await stack.client.audio.speech.create({ model: 'piper', voice: 'piper_bob', input: 'Bob here.', response_format: 'wav' });
    const blend = await stack.client.audio.speech.create({ model: 'kokoro', voice: 'kokoro_blend', input: 'A blended Kokoro voice.', response_format: 'mp3' });
    const bobAudio = Buffer.from(await bob.arrayBuffer());
    const blendAudio = Buffer.from(await blend.arrayBuffer());
    expect((await probe(bobAudio, 'wav')).sampleRate).toBe(24_000);
    expect(await decodedDuration(bobAudio)).toBeGreaterThan(0.2);
    expect(await probe(blendAudio, 'mp3')).toMatchObject({ codec: 'mp3', sampleRate: 24_000 });
    expect(await decodedDuration(blendAudio)).toBeGreaterThan(20 * KOKORO_HOP / 24_000);
    expect(rms(await decodeToPcm(blendAudio))).toBeGreaterThan(1000);
  });
});

