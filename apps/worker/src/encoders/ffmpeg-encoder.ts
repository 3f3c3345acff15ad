import { OUTPUT_SAMPLE_RATE } from '@chorus/shared/audio-formats';
import type { AudioEncoder, EncodedSink } from './audio-encoder.ts';
import { encoderOutputArgs, pcmInputArgs, type FfmpegFormat } from './ffmpeg-args.ts';
import { FfmpegProcess } from './ffmpeg-process.ts';
import type { JobPriority } from '../processors/job-priority.ts';

/**
 * mp3 / opus / aac / flac through one ffmpeg per job; constructed ahead of time by the encoder pool. `inputRate`:
 * the PCM's sample rate; ffmpeg resamples anything else to 24 kHz (in C, a fraction of what the JS resampler costs).
 */
export class FfmpegEncoder implements AudioEncoder {
  readonly format: FfmpegFormat;
  readonly inputRate: number;
  readonly #process: FfmpegProcess;

  constructor(format: FfmpegFormat, niceness = 0, inputRate = OUTPUT_SAMPLE_RATE) {
    this.format = format;
    this.inputRate = inputRate;
    this.#process = new FfmpegProcess(pcmInputArgs(inputRate), encoderOutputArgs(format), niceness);
  }

  /** A warm encoder whose process died while idle must not be handed out. */
  get usable(): boolean {
    return !this.#process.failed;
  }

  /** Called once, on the first encoded bytes. */
  onFirstOutput(fn: () => void): void {
    this.#process.output.once('data', () => fn());
  }

  attach(sink: EncodedSink): void {
    this.#process.output.on('data', (chunk: Buffer) => sink(chunk));
  }

  write(pcm: Buffer): Promise<void> {
    return this.#process.write(pcm);
  }

  finish(): Promise<void> {
    return this.#process.end();
  }

  destroy(): void {
    this.#process.kill();
  }

  adopt(priority: JobPriority): void {
    this.#process.withPid((pid) => {
      const release = priority.adopt(pid);
      this.#process.done.then(release, release);
    });
  }
}
