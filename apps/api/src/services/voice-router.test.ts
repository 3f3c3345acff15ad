import { describe, expect, it } from 'vitest';
import { ChorusError, ModelTable, VoiceCatalog } from '@chorus/shared';
import { routeRequest } from './voice-router.ts';
import type { LiveEngine } from './worker-directory.ts';

const voices = VoiceCatalog.load(); // the shipped voices file
const models = new ModelTable();

function live(spec: Record<string, string[] | undefined>): Map<string, LiveEngine> {
  return new Map(Object.entries(spec).map(([e, v]) => [e, { devices: new Set(['cpu']), voices: v && new Set(v) }]));
}

function route(model: string, voice: string, spec: Record<string, string[] | undefined>) {
  return routeRequest(model, voice, { models, voices, live: live(spec) });
}

function failure(fn: () => unknown): ChorusError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ChorusError) return err;
    throw err;
  }
  throw new Error('did not throw');
}

describe('routing a request to the best live engine', () => {
  it('an alias goes to the first engine of its chain that a live worker serves', () => {
    expect(route('tts-1', 'alloy', { espeak: undefined }).engine).toBe('espeak');
    expect(route('tts-1', 'alloy', { espeak: undefined, piper: ['en_US-amy-medium'] }).engine).toBe('piper');
    expect(route('tts-1', 'alloy', { espeak: undefined, piper: ['x'], kokoro: ['af_alloy'] }).engine).toBe('kokoro');
  });

  it('OpenAI names use the per-engine mapping, else the engine default, else the first loaded voice', () => {
    expect(route('tts-1', 'alloy', { kokoro: ['af_alloy', 'af_heart'] }).speaker.voice).toBe('af_alloy');
    expect(route('tts-1', 'alloy', { kokoro: ['af_heart', 'am_onyx'] }).speaker.voice).toBe('af_heart');
    expect(route('tts-1', 'alloy', { kokoro: ['bm_lewis', 'am_onyx'] }).speaker.voice).toBe('am_onyx');
    // on espeak-ng the mapped speaker, as before neural engines existed
    expect(route('tts-1', 'onyx', { espeak: undefined }).speaker).toMatchObject({ id: 'en_us_m7', voice: 'en-us+m7' });
  });

  it('engine voices and Kokoro blends are accepted when a live worker loaded every part', () => {
    const spec = { espeak: undefined, kokoro: ['af_bella', 'af_sky'], piper: ['en_US-lessac-medium'] };
    expect(route('tts-1', 'af_bella', spec)).toMatchObject({ engine: 'kokoro', speaker: { voice: 'af_bella', gender: 'female', language: 'en-US' } });
    expect(route('tts-1', 'af_bella(2)+af_sky(1)', spec).speaker.voice).toBe('af_bella(2)+af_sky(1)');
    expect(route('tts-1', 'en_US-lessac-medium', spec)).toMatchObject({ engine: 'piper', speaker: { language: 'en-US' } });
    const bad = failure(() => route('tts-1', 'af_bella+af_nobody', spec));
    expect(bad).toMatchObject({ status: 400, param: 'voice' });
    expect(bad.message).toMatch(/'af_nobody'/);
    expect(failure(() => route('tts-1', 'af_bella(0)+af_sky', spec)).message).toMatch(/weight/);
    expect(failure(() => route('kokoro', 'nobody', spec)).status).toBe(400);
  });

  it('a configured speaker pins its own engine', () => {
    expect(route('tts-1', 'en_us_m3', { espeak: undefined, kokoro: ['af_alloy'] }).engine).toBe('espeak');
    expect(failure(() => route('kokoro', 'en_us_m3', { espeak: undefined, kokoro: ['af_alloy'] })).status).toBe(400);
  });

  it('unknown model 404, no live engine 503', () => {
    expect(failure(() => route('tts-9', 'alloy', { espeak: undefined })).status).toBe(404);
    expect(failure(() => route('kokoro', 'alloy', { espeak: undefined })).code).toBe('model_unavailable');
  });

  it('MODEL_ALIASES takes engine chains', () => {
    const t = new ModelTable('tts-1=piper|espeak,mine=kokoro');
    expect(t.enginesFor('tts-1')).toEqual(['piper', 'espeak']);
    expect(t.routeFor('mine', new Set(['espeak']))).toBeUndefined();
    expect(() => new ModelTable('x=kokoro|nope')).toThrow(/MODEL_ALIASES/);
    expect(() => new ModelTable('x=espeak|espeak')).toThrow(/MODEL_ALIASES/);
  });
});
