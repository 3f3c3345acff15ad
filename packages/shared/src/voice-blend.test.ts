import { describe, expect, it } from 'vitest';
import { parseVoiceBlend, VoiceBlendError } from './voice-blend.ts';
import { Speaker } from './voices.ts';

describe('Kokoro voice blends', () => {
  const known = new Set(['af_bella', 'af_sky', 'am_echo']);

  it('parses single voices, equal blends and weighted blends, normalising the weights', () => {
    expect(parseVoiceBlend('af_bella', known)).toEqual([{ voice: 'af_bella', weight: 1 }]);
    expect(parseVoiceBlend('af_bella+af_sky', known)).toEqual([{ voice: 'af_bella', weight: 0.5 }, { voice: 'af_sky', weight: 0.5 }]);
    expect(parseVoiceBlend('af_bella(3)+af_sky(1)', known)).toEqual([{ voice: 'af_bella', weight: 0.75 }, { voice: 'af_sky', weight: 0.25 }]);
    expect(parseVoiceBlend('af_bella(0.5)+am_echo(1.5)', known).map((p) => p.weight)).toEqual([0.25, 0.75]);
  });

  it('names the invalid voice', () => {
    const fail = (spec: string) => {
      try {
        parseVoiceBlend(spec, known);
      } catch (err) {
        return err as VoiceBlendError;
      }
      throw new Error('parsed');
    };
    expect(fail('af_bella+af_nobody')).toMatchObject({ part: 'af_nobody', message: 'unknown voice "af_nobody"' });
    expect(fail('af_bella(0)+af_sky').part).toBe('af_bella');
    expect(fail('af_bella(x)').part).toBe('af_bella(x)');
    expect(fail('af_bella++af_sky').part).toBe('');
  });

  it('jobs carry Piper voice/speaker names and Kokoro blends, and nothing shell-like', () => {
    const speaker = (voice: string) => Speaker.safeParse({ id: 's', name: 's', engine: 'piper', voice, language: 'en' }).success;
    for (const ok of ['en-us+f3', 'en_US-lessac-medium', 'en_US-libritts-high/p225', 'af_bella(2)+af_sky(1)']) expect(speaker(ok), ok).toBe(true);
    for (const bad of ['a b', '$(rm)', '../x', 'a/b/c', 'af_bella(2']) expect(speaker(bad), bad).toBe(false);
  });
});
