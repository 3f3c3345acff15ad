import type { AudioFormat } from '@chorus/shared/audio-formats';
import type { AudioEncoder } from './audio-encoder.ts';
import { FfmpegEncoder } from './ffmpeg-encoder.ts';
import type { FfmpegFormat } from './ffmpeg-args.ts';
import { RawEncoder } from './raw-encoder.ts';

const FFMPEG_FORMATS: readonly FfmpegFormat[] = ['mp3', 'opus', 'aac', 'flac'];
/** CPU niceness of batch items' child processes (espeak-ng, ffmpeg): realtime work runs first on a busy host. */
export const BACKGROUND_NICENESS = 10;

/**
 * Keeps `size` ffmpeg encoders per container started and idle on stdin. Starting ffmpeg costs ~65 ms, most of
 * a short request's time to first byte; a warm one emits its first bytes ~2.5 ms after the first PCM arrives.
 * Idle processes cost ~47 MB RSS each, mostly shared libraries.
 */
export class EncoderPool {
  readonly #size: number;
  readonly #idle = new Map<FfmpegFormat, FfmpegEncoder[]>();
  #closed = false;

  constructor(size: number) {
    this.#size = size;
    for (const f of FFMPEG_FORMATS) this.#idle.set(f, []);
  }

  /** Fills every container's pool (call at start-up). */
  warm(): void {
    for (const f of FFMPEG_FORMATS) this.#refill(f);
  }

  /**
   * A warm encoder for realtime work. Batch items (`background`) get a fresh one at lowered CPU priority and
   * leave the warm ones to realtime requests, whose first byte they would otherwise cost a process start.
   */
  acquire(format: AudioFormat, background = false): AudioEncoder {
    if (format === 'wav' || format === 'pcm') return new RawEncoder(format);
    if (background) return new FfmpegEncoder(format, BACKGROUND_NICENESS);
    const idle = this.#idle.get(format)!;
    let encoder: FfmpegEncoder | undefined;
    while ((encoder = idle.shift()) && !encoder.usable) encoder.destroy();
    // Refill after this tick so the spawn does not delay the job that just took one.
    setImmediate(() => this.#refill(format));
    return encoder ?? new FfmpegEncoder(format);
  }

  #refill(format: FfmpegFormat) {
    if (this.#closed) return;
    const idle = this.#idle.get(format)!;
    while (idle.length < this.#size) idle.push(new FfmpegEncoder(format));
  }

  close(): void {
    this.#closed = true;
    for (const idle of this.#idle.values()) for (const e of idle.splice(0)) e.destroy();
  }
}
