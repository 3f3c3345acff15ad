import { OUTPUT_SAMPLE_RATE, type AudioFormat } from '@chorus/shared/audio-formats';
import type { AudioEncoder } from './audio-encoder.ts';
import { FfmpegEncoder } from './ffmpeg-encoder.ts';
import type { FfmpegFormat } from './ffmpeg-args.ts';
import { LameEncoder } from './lame-encoder.ts';
import { RawEncoder } from './raw-encoder.ts';
import { NICENESS } from '../processors/job-priority.ts';
import { refillOnce, type DeferRefill } from '../processors/first-audio-gate.ts';
import type { SpawnFn } from '../spawner/spawner.ts';

const FFMPEG_FORMATS: readonly FfmpegFormat[] = ['mp3', 'opus', 'aac', 'flac'];


/** Formats encoded by a child process (LAME for mp3, ffmpeg for the rest), which resamples the engine's PCM itself. */
export const isProcessFormat = (format: AudioFormat): format is FfmpegFormat => format !== 'wav' && format !== 'pcm';

type ProcessEncoder = FfmpegEncoder | LameEncoder;

/** One pool per container and input rate. */
const poolKey = (format: FfmpegFormat, rate: number) => `${format}@${rate}`;

/** `spawn` starts LAME (the worker's spawner helper); ffmpeg is started by fluent-ffmpeg itself. */
function startEncoder(format: FfmpegFormat, niceness: number, inputRate: number, spawn?: SpawnFn): ProcessEncoder {
  return format === 'mp3' ? new LameEncoder(niceness, inputRate, spawn) : new FfmpegEncoder(format, niceness, inputRate);
}

/**
 * Keeps `size` encoder processes per container and input rate started and idle on stdin once realtime work has
 * used that container at that rate, and one before (a format nobody asks for costs one idle process, ~9 MB private
 * for ffmpeg, not `size`). Starting ffmpeg costs
 * ~65 ms, most of a short request's time to first byte; a warm one emits its first bytes ~2.5 ms after the first
 * PCM arrives. Idle ffmpeg processes cost ~47 MB RSS each, mostly shared libraries (LAME, for mp3: ~5 ms, ~4 MB). The input rate is fixed when ffmpeg
 * starts, so the pool is kept per rate, for the rates given to `warm` (the engines' native rates) only: a job at
 * another rate (24 kHz PCM before a tempo stage, a Piper voice at 16 kHz) gets a fresh encoder.
 */
export class EncoderPool {
  readonly #size: number;
  readonly #idle = new Map<string, ProcessEncoder[]>();
  /** Pools (format@rate) realtime work has taken from: kept at `size`; the others at one. */
  readonly #used = new Set<string>();
  readonly #deferRefill: DeferRefill;
  readonly #spawn: SpawnFn | undefined;
  #closed = false;

  /** `deferRefill`: when to start replacements (the first-audio gate's `whenIdle`; default: the next turn). */
  constructor(size: number, opts: { deferRefill?: DeferRefill; spawn?: SpawnFn } = {}) {
    this.#size = size;
    this.#deferRefill = opts.deferRefill ?? setImmediate;
    this.#spawn = opts.spawn;
  }

  /** Fills every container's pool for these input rates (call at start-up with the engines' native rates). */
  warm(rates: readonly number[] = [OUTPUT_SAMPLE_RATE]): void {
    for (const rate of new Set(rates)) {
      for (const f of FFMPEG_FORMATS) {
        this.#idle.set(poolKey(f, rate), this.#idle.get(poolKey(f, rate)) ?? []);
        this.#refill(f, rate);
      }
    }
  }

  /**
   * A warm encoder for realtime work, taking PCM at `inputRate`. Batch items (`background`) get a fresh one at
   * lowered CPU priority and leave the warm ones to realtime requests, whose first byte they would otherwise cost
   * a process start.
   */
  acquire(format: AudioFormat, background = false, inputRate = OUTPUT_SAMPLE_RATE): AudioEncoder {
    if (!isProcessFormat(format)) return new RawEncoder(format);
    if (background) return startEncoder(format, NICENESS.batch, inputRate, this.#spawn);
    const key = poolKey(format, inputRate);
    const idle = this.#idle.get(key);
    if (!idle) return startEncoder(format, 0, inputRate, this.#spawn);
    this.#used.add(key);
    let encoder: ProcessEncoder | undefined;
    while ((encoder = idle.shift()) && !encoder.usable) encoder.destroy();
    encoder ??= startEncoder(format, 0, inputRate, this.#spawn);
    refillOnce((fn) => encoder.onFirstOutput(fn), () => this.#refill(format, inputRate), this.#deferRefill);
    return encoder;
  }

  /** Idle encoders kept for this container and input rate (for tests and diagnostics). */
  idleCount(format: FfmpegFormat, inputRate = OUTPUT_SAMPLE_RATE): number {
    return this.#idle.get(poolKey(format, inputRate))?.length ?? 0;
  }

  #refill(format: FfmpegFormat, rate: number) {
    if (this.#closed) return;
    const key = poolKey(format, rate);
    const idle = this.#idle.get(key)!;
    const target = this.#used.has(key) ? this.#size : Math.min(1, this.#size);
    while (idle.length < target) idle.push(startEncoder(format, 0, rate, this.#spawn));
  }

  close(): void {
    this.#closed = true;
    for (const idle of this.#idle.values()) for (const e of idle.splice(0)) e.destroy();
  }
}
