import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { Speaker } from '@chorus/shared';
import { EngineError, type SynthesisInput } from './engine.ts';
import { EspeakEngine, runEspeak } from './espeak-engine.ts';
import { plainText } from './plain-text.ts';

/*
 * Against the real espeak-ng: whatever brackets, invisible format characters and control characters a text
 * holds, espeak-ng reads it as text, with audio.
 */

const speaker: Speaker = { id: 's', name: 'S', engine: 'espeak', voice: 'en-us', language: 'en-US' };
const engine = new EspeakEngine();
const ARGS = ['--stdout', '-b', '1', '-v', 'en-us', '-s', '175'];

async function collect(chunks: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const pcm of chunks) parts.push(pcm);
  return Buffer.concat(parts);
}
const viaEngine = (text: string) =>
  collect(engine.synthesize({ text, speaker, speed: 1 } satisfies SynthesisInput, new AbortController().signal));
/** espeak-ng reading `text` exactly as given (no plainText): the reference. */
const direct = (text: string) => collect(runEspeak('espeak-ng', ARGS, text, new AbortController().signal));

beforeAll(() => engine.init());

/**
 * A text built from tokens, with what it must sound like: the same tokens with each bracket read as the
 * parenthesis espeak-ng reads a lone bracket as, format characters left out (espeak-ng skips them) and control
 * characters as spaces. Phoneme mode reads the words as phoneme mnemonics instead: different audio.
 */
interface Token {
  text: string;
  plain: string;
}
const word = fc
  .stringMatching(/^[a-zA-Z@:;'_,=*?0-9]{1,8}$/)
  .map((w): Token => ({ text: w, plain: w }));
const brackets = fc
  .tuple(fc.constantFrom('[', ']'), fc.integer({ min: 1, max: 4 }))
  .map(([b, n]): Token => ({ text: b.repeat(n), plain: (b === '[' ? '(' : ')').repeat(n) }));
// U+00AD, U+200C and U+200D are the ones espeak-ng skips between brackets; the others are Cf characters too.
// ZWNJ/ZWJ stay (spelling in some scripts; next to punctuation espeak-ng does not skip them entirely).
const format = fc
  .constantFrom('\u00ad', '\u200b', '\u200c', '\u200d', '\u200e', '\u202e', '\u2060', '\u2066', '\ufeff', '\u061c')
  .map((c): Token => ({ text: c, plain: c === '\u200c' || c === '\u200d' ? c : '' }));
// Ctrl-A starts an espeak-ng embedded command (V = voice change, B = punctuation mode, 40S = 40 wpm).
const control = fc
  .constantFrom('\u0001V', '\u0001B', '\u000140S', '\u0007', '\u001b')
  .map((c): Token => ({ text: c, plain: ` ${c.slice(1)}` }));
const space: fc.Arbitrary<Token> = fc.constant({ text: ' ', plain: ' ' });
const texts = fc
  .array(fc.oneof({ arbitrary: word, weight: 3 }, { arbitrary: brackets, weight: 3 }, format, control, space), {
    minLength: 1,
    maxLength: 14,
  })
  .map((tokens) => ({ text: tokens.map((t) => t.text).join(''), plain: tokens.map((t) => t.plain).join('') }))
  // Always something to say, so "has audio" is meaningful.
  .map(({ text, plain }) => ({ text: `Say ${text} now`, plain: `Say ${plain} now` }));

describe('plainText + the espeak-ng engine', () => {
  it('fuzz: brackets, format and control characters never leave plain-text reading', async () => {
    await fc.assert(
      fc.asyncProperty(texts, async ({ text, plain }) => {
        const audio = await viaEngine(text); // throws on a crash or an empty run
        expect(audio.length).toBeGreaterThan(0);
        expect(audio.equals(await direct(plain))).toBe(true);
      }),
      { numRuns: 100 },
    );
  });

  it('reads brackets as espeak-ng reads a lone bracket (a parenthesis), and leaves ZWJ/ZWNJ in place', () => {
    expect(plainText('a [[b]] c [[[d')).toBe('a ((b)) c (((d');
    expect(plainText('[\u00ad[x\u200b]\ufeff]')).toBe('((x))');
    expect(plainText('x\u0001V y\tz\r\nw')).toBe('x V y z \nw');
    expect(plainText('\u0d28\u0d4d\u200d \u0645\u06cc\u200c\u062e')).toBe('\u0d28\u0d4d\u200d \u0645\u06cc\u200c\u062e');
  });

  it('inputs that crash espeak-ng in phoneme mode are read as text through the engine', async () => {
    for (const text of [`Hi [[${'k'.repeat(400)}]] there`, `Hi [\u00ad[${'zw;'.repeat(100)}]] there`]) {
      const audio = await viaEngine(text);
      expect(audio.length / 2 / 22_050).toBeGreaterThan(1);
    }
  });
});

describe('runEspeak: a crashed or empty run is an error', () => {
  it('espeak-ng killed by a signal (SIGSEGV on long phoneme input) rejects', async () => {
    await expect(direct(`Hi [[${'k'.repeat(400)}]] there`)).rejects.toThrow(EngineError);
    await expect(direct(`Hi [[${'k'.repeat(400)}]] there`)).rejects.toThrow(/killed by SIGSEGV/);
  });

  it('espeak-ng exiting 0 with no samples for text with letters rejects', async () => {
    await expect(direct(`Hi [[${'zw;'.repeat(100)}]] there`)).rejects.toThrow(/without audio/);
  });

  it('text with nothing to say is not an error', async () => {
    await expect(direct('...')).resolves.toBeInstanceOf(Buffer);
  });
});
