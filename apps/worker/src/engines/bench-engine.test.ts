import { describe, expect, it } from 'vitest';
import type { Speaker } from '@chorus/shared';
import { BenchEngine, benchEngineOptionsFromEnv, benchSampleCount } from './bench-engine.ts';
import type { SynthesisInput } from './engine.ts';

const speaker: Speaker = { id: 'bench', name: 'Bench', engine: 'bench', language: 'en-US' };
const input = (text: string, speed = 1): SynthesisInput => ({ text, speaker, speed });

async function collect(engine: BenchEngine, inp: SynthesisInput, signal = new AbortController().signal) {
  const parts: Buffer[] = [];
  for await (const pcm of engine.synthesize(inp, signal)) parts.push(pcm);
  return Buffer.concat(parts);
}

describe('BenchEngine (benchmark only)', () => {
  it('yields deterministic PCM whose length follows the text and the speed', async () => {
    const engine = new BenchEngine({ delayMs: 0 });
    const short = await collect(engine, input('Hello there.'));
    const long = await collect(engine, input('Hello there. '.repeat(10)));
    expect(short.length).toBe(benchSampleCount('Hello there.') * 2);
    expect(long.length).toBe(benchSampleCount('Hello there. '.repeat(10)) * 2);
    expect(long.length / short.length).toBeCloseTo(130 / 12, 5);
    expect((await collect(engine, input('Hello there.', 2))).length).toBe(short.length / 2);
    expect((await collect(engine, input('Hello there.'))).equals(short)).toBe(true);
    expect(short.readInt16LE(200)).not.toBe(0); // a tone, not silence
  });

  it('waits the configured delay before the first audio', async () => {
    const engine = new BenchEngine({ delayMs: 120 });
    const t0 = performance.now();
    const it = engine.synthesize(input('Hi.'), new AbortController().signal)[Symbol.asyncIterator]();
    await it.next();
    expect(performance.now() - t0).toBeGreaterThanOrEqual(115);
    await it.return?.();
  });

  it('stops promptly when aborted during the delay', async () => {
    const engine = new BenchEngine({ delayMs: 10_000 });
    const ac = new AbortController();
    const t0 = performance.now();
    setTimeout(() => ac.abort(), 30);
    await expect(collect(engine, input('Hi.'), ac.signal)).rejects.toMatchObject({ name: 'AbortError' });
    // Long before the 10 s delay runs out (a quarter of it: room for a loaded machine, still telling the two apart).
    expect(performance.now() - t0).toBeLessThan(2500);
  });

  it('reads BENCH_ENGINE_DELAY_MS and refuses bad values', () => {
    expect(benchEngineOptionsFromEnv({})).toEqual({ delayMs: 50 });
    expect(benchEngineOptionsFromEnv({ BENCH_ENGINE_DELAY_MS: '250' })).toEqual({ delayMs: 250 });
    expect(() => benchEngineOptionsFromEnv({ BENCH_ENGINE_DELAY_MS: 'soon' })).toThrow(/BENCH_ENGINE_DELAY_MS/);
    expect(() => benchEngineOptionsFromEnv({ BENCH_ENGINE_DELAY_MS: '-1' })).toThrow(/BENCH_ENGINE_DELAY_MS/);
  });
});
