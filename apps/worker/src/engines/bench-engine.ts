import { setTimeout as sleep } from 'node:timers/promises';
import type { SynthesisInput, TtsEngine } from './engine.ts';

/*
 * BENCHMARK ONLY — not a voice. `bench` stands in for a latency-bound engine (a neural model on a GPU), whose
 * time per segment is spent waiting rather than on this process's CPU: it sleeps BENCH_ENGINE_DELAY_MS per
 * segment, then yields deterministic PCM (a tone per character) whose length follows the text. It lets
 * bench/worker-scaling.ts measure how throughput scales with workers without espeak-ng's CPU cost hiding it.
 */

const SAMPLE_RATE = 24_000;
/** Audio per input character: espeak-ng speaks 300 characters in ~16.9 s, i.e. ~56 ms each at speed 1. */
export const BENCH_MS_PER_CHAR = 56;
const SAMPLES_PER_CHAR = (SAMPLE_RATE * BENCH_MS_PER_CHAR) / 1000;
/** PCM goes out in pieces of this many samples, as a streaming vocoder would hand it over. */
const CHUNK_SAMPLES = 4800;
const AMPLITUDE = 6000;
const MAX_CACHED_TONES = 4096;

export interface BenchEngineOptions {
  /**
   * Wait per segment before its audio, in ms.
   * @defaultValue 50
   */
  delayMs: number;
}

/** Reads BENCH_ENGINE_DELAY_MS (a whole number of ms, 0..60000); a bad value stops the worker with a message. */
export function benchEngineOptionsFromEnv(env: NodeJS.ProcessEnv): BenchEngineOptions {
  const raw = env.BENCH_ENGINE_DELAY_MS;
  if (raw === undefined || raw === '') return { delayMs: 50 };
  const delayMs = Number(raw);
  if (!Number.isInteger(delayMs) || delayMs < 0 || delayMs > 60_000) {
    throw new Error(`BENCH_ENGINE_DELAY_MS must be a whole number of milliseconds in 0..60000 (got "${raw}")`);
  }
  return { delayMs };
}

/** Samples the bench engine produces for `text` at `speed` (tests and benchmarks predict stream sizes from it). */
export function benchSampleCount(text: string, speed = 1): number {
  return [...text].length * Math.round(SAMPLES_PER_CHAR / speed);
}

export class BenchEngine implements TtsEngine {
  readonly id = 'bench';
  readonly sampleRate = SAMPLE_RATE;
  /** Speed only changes how many samples each character gets, so any requested speed is native. */
  readonly speedRange = [0.25, 4] as const;
  readonly #delayMs: number;
  readonly #tones = new Map<string, Buffer>();

  constructor(options: BenchEngineOptions = { delayMs: 50 }) {
    this.#delayMs = options.delayMs;
  }

  async *synthesize(input: SynthesisInput, signal: AbortSignal): AsyncIterable<Buffer> {
    signal.throwIfAborted();
    if (this.#delayMs > 0) await sleep(this.#delayMs, undefined, { signal });
    const perChar = Math.round(SAMPLES_PER_CHAR / input.speed);
    const chars = [...input.text];
    const total = chars.length * perChar;
    for (let start = 0; start < total; start += CHUNK_SAMPLES) {
      signal.throwIfAborted();
      const n = Math.min(CHUNK_SAMPLES, total - start);
      const pcm = Buffer.allocUnsafe(n * 2);
      for (let done = 0; done < n; ) {
        const s = start + done;
        const within = s % perChar;
        const take = Math.min(n - done, perChar - within);
        this.#tone(chars[Math.floor(s / perChar)]!, perChar).copy(pcm, done * 2, within * 2, (within + take) * 2);
        done += take;
      }
      yield pcm;
    }
  }

  /**
   * One character's tone (silence for a space), cached: making the audio must cost next to no CPU, or the
   * benchmark would measure this process instead of the wait it stands for.
   */
  #tone(char: string, perChar: number): Buffer {
    const key = `${perChar}:${char}`;
    let tone = this.#tones.get(key);
    if (!tone) {
      const c = char.codePointAt(0)!;
      const freq = c === 32 ? 0 : 180 + (c % 40) * 15;
      tone = Buffer.allocUnsafe(perChar * 2);
      for (let i = 0; i < perChar; i++) tone.writeInt16LE(Math.round(AMPLITUDE * Math.sin((2 * Math.PI * freq * i) / SAMPLE_RATE)), i * 2);
      if (this.#tones.size >= MAX_CACHED_TONES) this.#tones.clear();
      this.#tones.set(key, tone);
    }
    return tone;
  }
}
