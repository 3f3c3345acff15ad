import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseVoiceBlend, type Speaker } from '@chorus/shared';
import { PiperEngine } from '../apps/worker/src/engines/piper-engine.ts';
import { KokoroEngine } from '../apps/worker/src/engines/kokoro-engine.ts';
import { phonemize } from '../apps/worker/src/engines/onnx/phonemize.ts';
import { createSession, resetCudaWarningForTests, type OnnxOptions } from '../apps/worker/src/engines/onnx/session.ts';
import { Resampler } from '../apps/worker/src/audio/resampler.ts';
import type { TtsEngine } from '../apps/worker/src/engines/engine.ts';
import { BREAKAGES, generateModelsDir, KOKORO_HOP, PIPER_HOP, piperConfig, piperModel } from './helpers/onnx-models.ts';
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { InferenceBatcher } from '../apps/worker/src/engines/onnx/batcher.ts';

const models = generateModelsDir();
const opts = (over: Partial<OnnxOptions> = {}): OnnxOptions => ({
  providers: ['cpu'], intraOpThreads: 1, batchMax: 1, batchWaitMs: 0, warn: () => {}, ...over,
});
const speaker = (engine: string, voice?: string): Speaker => ({ id: 's', name: 's', engine, voice, language: 'en-US' });

async function synth(engine: TtsEngine, text: string, voice?: string, speed = 1): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const pcm of engine.synthesize({ text, speaker: speaker(engine.id, voice), speed }, new AbortController().signal)) out.push(pcm);
  return Buffer.concat(out);
}

const idMap = new Map(Object.entries(piperConfig({ sampleRate: 22_050 }).phoneme_id_map));
async function piperTokens(text: string) {
  return PiperEngine.ids(idMap, await phonemize(text, 'en-us', new AbortController().signal)).length;
}

let piper: PiperEngine;
let kokoro: KokoroEngine;
beforeAll(async () => {
  piper = new PiperEngine(models.dir, opts());
  kokoro = new KokoroEngine(models.dir, opts());
  await piper.init();
  await kokoro.init();
});
afterAll(async () => {
  await piper?.close();
  await kokoro?.close();
});

describe('phonemising through espeak-ng', () => {
  it('gives IPA with the punctuation --ipa drops put back after its piece', async () => {
    const ipa = await phonemize('Hello world, this is a test. Really?', 'en-us', new AbortController().signal);
    expect(ipa).toMatch(/^həlˈoʊ wˈɜːld, ðɪs ɪz ɐ tˈɛst\. ɹˈiəli\?$/);
  });

  it('Piper ids: ^, each symbol followed by the pad _, then $; unknown symbols dropped', () => {
    const map = new Map([['^', [1]], ['_', [0]], ['$', [2]], ['a', [5]], ['b', [6]]]);
    expect(PiperEngine.ids(map, 'a§b')).toEqual([1, 0, 5, 0, 6, 0, 2]);
  });
});

describe('Piper engine on a generated model', () => {
  it('lists every voice and each multi-speaker voice’s speakers, on the cpu', () => {
    expect(piper.loaded()).toEqual({ engine: 'piper', device: 'cpu', voices: [...models.piperVoices].sort() });
  });

  it('output length follows the token count and the speed (length_scale / speed)', async () => {
    const short = 'Hello there.';
    const long = 'Hello there, how are you doing on this fine morning?';
    const [tShort, tLong] = [await piperTokens(short), await piperTokens(long)];
    expect(tLong).toBeGreaterThan(tShort * 2);
    expect((await synth(piper, short, 'en_US-test-medium')).length / 2).toBe(tShort * PIPER_HOP);
    expect((await synth(piper, long, 'en_US-test-medium')).length / 2).toBe(tLong * PIPER_HOP);
    expect((await synth(piper, long, 'en_US-test-medium', 2)).length / 2).toBe(Math.round((tLong * PIPER_HOP) / 2));
    expect((await synth(piper, long, 'en_US-test-medium', 0.5)).length / 2).toBe(tLong * PIPER_HOP * 2);
  });

  it('is deterministic, and sid changes the audio', async () => {
    const text = 'The same words twice.';
    const a = await synth(piper, text, 'en_US-multi-medium/alice');
    expect(await synth(piper, text, 'en_US-multi-medium/alice')).toEqual(a);
    const b = await synth(piper, text, 'en_US-multi-medium/bob');
    expect(b.length).toBe(a.length);
    expect(b.equals(a)).toBe(false);
    expect(await synth(piper, text, 'en_US-multi-medium')).toEqual(a); // speaker 0 by default
  });

  it('refuses an unknown voice or speaker by name', async () => {
    await expect(synth(piper, 'Hi.', 'en_US-nobody-low')).rejects.toThrow(/unknown Piper voice "en_US-nobody-low"/);
    await expect(synth(piper, 'Hi.', 'en_US-multi-medium/carol')).rejects.toThrow(/no speaker "carol"/);
  });

  it('a 16 kHz voice reports its own rate, and resampling to 24 kHz keeps its duration', async () => {
    const text = 'A voice at sixteen kilohertz.';
    expect(piper.sampleRateFor(speaker('piper', 'en_US-test-low'))).toBe(16_000);
    expect(piper.sampleRateFor(speaker('piper', 'en_US-test-medium'))).toBe(22_050);
    const pcm = await synth(piper, text, 'en_US-test-low');
    const out = new Resampler(16_000, 24_000).process(pcm);
    expect(out.length / 2 / 24_000).toBeCloseTo(pcm.length / 2 / 16_000, 3);
  });
});

describe('Kokoro engine on a generated model', () => {
  const voiceRows = (name: string) => {
    const bytes = readFileSync(path.join(models.dir, 'kokoro', 'voices', `${name}.bin`));
    return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
  };
  const row = (name: string, r: number) => voiceRows(name).slice(r * 256, (r + 1) * 256);

  it('loads its voices; output is 24 kHz with length following tokens and speed; deterministic', async () => {
    expect(kokoro.loaded()).toEqual({ engine: 'kokoro', device: 'cpu', voices: ['af_bella', 'af_sky', 'bf_emma'] });
    const text = 'Kokoro speaks this sentence.';
    const ipa = await phonemize(text, 'en-us', new AbortController().signal);
    const T = kokoro.tokenize(ipa)[0]!.length + 2;
    const a = await synth(kokoro, text, 'af_bella');
    expect(a.length / 2).toBe(T * KOKORO_HOP);
    expect((await synth(kokoro, text, 'af_bella', 2)).length / 2).toBe((T * KOKORO_HOP) / 2);
    expect(await synth(kokoro, text, 'af_bella')).toEqual(a);
    expect((await synth(kokoro, text, 'af_sky')).equals(a)).toBe(false);
  });

  it('the style row is chosen by token count: voice[min(max(T-2,0),509)]', () => {
    expect(kokoro.styleVector('af_bella', 7)).toEqual(row('af_bella', 7));
    expect(kokoro.styleVector('af_bella', 900)).toEqual(row('af_bella', 509));
    expect(kokoro.styleVector('af_bella', 7)).not.toEqual(kokoro.styleVector('af_bella', 8));
  });

  it('a blend uses the normalised weighted mix of the style vectors, and sounds like neither voice alone', async () => {
    expect(parseVoiceBlend('af_bella(2)+af_sky(1)')).toEqual([{ voice: 'af_bella', weight: 2 / 3 }, { voice: 'af_sky', weight: 1 / 3 }]);
    const mix = kokoro.styleVector('af_bella(2)+af_sky(1)', 12);
    const [b, s] = [row('af_bella', 12), row('af_sky', 12)];
    for (let c = 0; c < 256; c++) expect(mix[c]).toBeCloseTo((2 * b[c]! + s[c]!) / 3, 5);
    const even = kokoro.styleVector('af_bella+af_sky', 12);
    for (let c = 0; c < 256; c++) expect(even[c]).toBeCloseTo((b[c]! + s[c]!) / 2, 5);
    const text = 'A blended voice.';
    const blended = await synth(kokoro, text, 'af_bella(2)+af_sky(1)');
    expect(blended.equals(await synth(kokoro, text, 'af_bella'))).toBe(false);
    expect(blended.equals(await synth(kokoro, text, 'af_sky'))).toBe(false);
    await expect(synth(kokoro, text, 'af_bella+af_nobody')).rejects.toThrow(/unknown voice "af_nobody"/);
  });

  it('keeps every inference under 510 tokens, cutting at word boundaries', async () => {
    const text = Array.from({ length: 60 }, (_, i) => `word number ${i} goes here`).join(' ');
    const ipa = await phonemize(text, 'en-us', new AbortController().signal);
    const pieces = kokoro.tokenize(ipa);
    expect(pieces.length).toBeGreaterThan(1);
    for (const p of pieces) expect(p.length).toBeLessThanOrEqual(510);
    const space = kokoro.tokenize(' ')[0]![0]!;
    for (const p of pieces.slice(0, -1)) expect(p.at(-1)).toBe(space); // each piece ends at a word's end
    const pcm = await synth(kokoro, text, 'af_bella');
    expect(pcm.length / 2).toBe(pieces.reduce((n, p) => n + (p.length + 2) * KOKORO_HOP, 0));
  });
});

describe('micro-batching', () => {
  it('concurrent equal-length segments run as one call and each gets exactly its solo audio', async () => {
    // A wide wait: the four jobs' espeak-ng runs finish at different times on a busy machine.
    const batchedPiper = new PiperEngine(models.dir, opts({ batchMax: 4, batchWaitMs: 2000 }));
    const batchedKokoro = new KokoroEngine(models.dir, opts({ batchMax: 4, batchWaitMs: 2000 }));
    await batchedPiper.init();
    await batchedKokoro.init();
    try {
      const multi = batchedPiper.batcherFor('en_US-multi-medium');
      expect(multi.batching).toBe(true); // the exactness probe passed
      expect(batchedKokoro.batcher.batching).toBe(true);
      const text = 'Four jobs at once.';
      const piperVoices = ['en_US-multi-medium/alice', 'en_US-multi-medium/bob', 'en_US-multi-medium/alice', 'en_US-multi-medium/bob'];
      const kokoroVoices = ['af_bella', 'af_sky', 'af_bella(1)+af_sky(3)', 'af_sky'];
      const [pb, kb] = await Promise.all([
        Promise.all(piperVoices.map((v) => synth(batchedPiper, text, v))),
        Promise.all(kokoroVoices.map((v) => synth(batchedKokoro, text, v))),
      ]);
      expect(multi.stats).toMatchObject({ calls: 1, items: 4, batchedCalls: 1 });
      expect(batchedKokoro.batcher.stats).toMatchObject({ calls: 1, items: 4, batchedCalls: 1 });
      for (const [i, v] of piperVoices.entries()) expect(pb[i]!.equals(await synth(piper, text, v))).toBe(true);
      for (const [i, v] of kokoroVoices.entries()) expect(kb[i]!.equals(await synth(kokoro, text, v))).toBe(true);
      expect(pb[0]!.equals(pb[1]!)).toBe(false);
    } finally {
      await batchedPiper.close();
      await batchedKokoro.close();
    }
  });

  it('with no wait: a lone segment goes at once, segments arriving while the model is busy leave together', async () => {
    const { session } = await createSession(path.join(models.dir, 'piper', 'en_US-multi-medium.onnx'), opts());
    const batcher = new InferenceBatcher(session, 'output', { max: 8, waitMs: 0 });
    const T = 11;
    const item = (sid: number) => ({
      key: 'k',
      perItem: {
        input: { type: 'int64' as const, data: BigInt64Array.from({ length: T }, (_, i) => BigInt(3 + ((i * (sid + 2)) % 90))), dims: [T] },
        input_lengths: { type: 'int64' as const, data: BigInt64Array.of(BigInt(T)), dims: [] },
        sid: { type: 'int64' as const, data: BigInt64Array.of(BigInt(sid)), dims: [] },
      },
      shared: { scales: { type: 'float32' as const, data: Float32Array.of(0.667, 1, 0.8), dims: [3] } },
    });
    try {
      expect(await batcher.probe(item(0), item(1))).toBe(true);
      const outs = await Promise.all([0, 1, 0, 1].map((sid) => batcher.run(item(sid))));
      expect(batcher.stats).toEqual({ calls: 2, items: 4, batchedCalls: 1 });
      expect(Buffer.from(outs[2]!.buffer).equals(Buffer.from(outs[0]!.buffer))).toBe(true);
      expect(Buffer.from(outs[3]!.buffer).equals(Buffer.from(outs[1]!.buffer))).toBe(true);
      expect(Buffer.from(outs[1]!.buffer).equals(Buffer.from(outs[0]!.buffer))).toBe(false);
    } finally {
      await session.release();
    }
  });

  it('a model that samples noise (as published Piper voices do) fails the exactness probe and runs unbatched', async () => {
    const dir = generateModelsDir().dir;
    writeFileSync(path.join(dir, 'piper', 'en_US-multi-medium.onnx'), piperModel({ multiSpeaker: true, noise: true }));
    const engine = new PiperEngine(dir, opts({ batchMax: 4, batchWaitMs: 2000 }));
    try {
      await engine.init();
      const noisy = engine.batcherFor('en_US-multi-medium');
      expect(noisy.batching).toBe(false);
      expect(engine.batcherFor('en_US-test-medium').batching).toBe(true);
      const out = await Promise.all(['alice', 'bob', 'alice'].map((s) => synth(engine, 'Noise.', `en_US-multi-medium/${s}`)));
      expect(noisy.stats).toMatchObject({ calls: 3, batchedCalls: 0 });
      expect(out[0]!.equals(out[2]!)).toBe(false); // not deterministic: the reason it cannot batch exactly
    } finally {
      await engine.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('segments of different length are not padded together', async () => {
    const batched = new PiperEngine(models.dir, opts({ batchMax: 8, batchWaitMs: 50 }));
    await batched.init();
    try {
      const texts = ['Short.', 'A much longer sentence than that.'];
      const out = await Promise.all(texts.map((t) => synth(batched, t, 'en_US-test-medium')));
      expect(batched.batcherFor('en_US-test-medium').stats).toMatchObject({ calls: 2, batchedCalls: 0 });
      for (const [i, t] of texts.entries()) expect(out[i]!.equals(await synth(piper, t, 'en_US-test-medium'))).toBe(true);
    } finally {
      await batched.close();
    }
  });
});

describe('execution providers', () => {
  it('cuda asked for and missing: one warning, the session works on the cpu', async () => {
    resetCudaWarningForTests();
    const warnings: string[] = [];
    const cudaFirst = opts({ providers: ['cuda', 'cpu'], warn: (m) => warnings.push(m) });
    const file = path.join(models.dir, 'kokoro', 'onnx', 'model.onnx');
    const first = await createSession(file, cudaFirst);
    const second = await createSession(path.join(models.dir, 'piper', 'en_US-test-medium.onnx'), cudaFirst);
    expect([first.device, second.device]).toEqual(['cpu', 'cpu']);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/cuda.*running models on the CPU/i);
    const out = await first.session.run({
      input_ids: { type: 'int64', data: BigInt64Array.of(0n, 5n, 0n), dims: [1, 3] },
      style: { type: 'float32', data: new Float32Array(256), dims: [1, 256] },
      speed: { type: 'float32', data: Float32Array.of(1), dims: [1] },
    });
    expect(out.waveform!.dims).toEqual([1, 3 * KOKORO_HOP]);
    const engine = new KokoroEngine(models.dir, cudaFirst);
    await engine.init();
    expect(engine.loaded().device).toBe('cpu');
    expect(warnings).toHaveLength(1);
    await Promise.all([first.session.release(), second.session.release(), engine.close()]);
  });

  it('cuda alone, where it is missing, is a start-up error naming the file', async () => {
    const file = path.join(models.dir, 'kokoro', 'onnx', 'model.onnx');
    await expect(createSession(file, opts({ providers: ['cuda'] }))).rejects.toThrow(/model\.onnx: no usable execution provider/);
  });
});

describe('the event loop', () => {
  it('keeps turning while a heavy model infers (inference runs in the session’s own thread)', async () => {
    const file = path.join(models.dir, 'heavy.onnx');
    writeFileSync(file, piperModel({ layers: 12, hidden: 768 }));
    const { session } = await createSession(file, opts());
    const batcher = new InferenceBatcher(session, 'output', { max: 1, waitMs: 0 });
    const T = 300;
    const item = {
      key: 'k',
      perItem: {
        input: { type: 'int64' as const, data: BigInt64Array.from({ length: T }, (_, i) => BigInt(3 + (i % 100))), dims: [T] },
        input_lengths: { type: 'int64' as const, data: BigInt64Array.of(BigInt(T)), dims: [] },
      },
      shared: { scales: { type: 'float32' as const, data: Float32Array.of(0.667, 1, 0.8), dims: [3] } },
    };
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const t0 = performance.now();
    for (let i = 0; i < 3; i++) await batcher.run(item);
    const ms = performance.now() - t0;
    clearInterval(timer);
    await session.release();
    // Blocking inference would let the timer fire about once per run; here it fires throughout (≥ 1 per 10 ms).
    expect(ms).toBeGreaterThan(60);
    expect(ticks).toBeGreaterThan(ms / 10);
  });
});

describe('start-up checks of MODELS_DIR', () => {
  for (const [engine, what, breakIt, message] of BREAKAGES) {
    it(`${engine}: ${what} — init fails with one line naming the file`, async () => {
      const dir = generateModelsDir().dir;
      const file = breakIt(dir);
      const e = engine === 'piper' ? new PiperEngine(dir, opts()) : new KokoroEngine(dir, opts());
      try {
        const err = (await e.init().then(() => undefined, (x: unknown) => x)) as Error | undefined;
        expect(err?.name).toBe('EngineError');
        expect(err!.message).toContain(file);
        expect(err!.message).toMatch(message);
        expect(err!.message).not.toContain('\n');
      } finally {
        await e.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  it('kokoro: the vocabulary may come from tokenizer.json (model.vocab) instead of config.json', async () => {
    const dir = generateModelsDir().dir;
    const config = JSON.parse(readFileSync(path.join(dir, 'kokoro', 'config.json'), 'utf8')) as { vocab: Record<string, number> };
    writeFileSync(path.join(dir, 'kokoro', 'tokenizer.json'), JSON.stringify({ model: { type: 'WordLevel', vocab: config.vocab } }));
    renameSync(path.join(dir, 'kokoro', 'config.json'), path.join(dir, 'kokoro', 'config.json.bak'));
    const e = new KokoroEngine(dir, opts());
    try {
      await e.init();
      expect(await synth(e, 'From the tokenizer.', 'af_sky')).toEqual(await synth(kokoro, 'From the tokenizer.', 'af_sky'));
    } finally {
      await e.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
