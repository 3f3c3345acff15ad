import { OUTPUT_SAMPLE_RATE } from '@chorus/shared/audio-formats';
import { pcmInputArgs, tempoOutputArgs } from './ffmpeg-args.ts';
import type { JobPriority } from '../processors/job-priority.ts';
import { FfmpegProcess } from './ffmpeg-process.ts';

/** Where the tempo stage's PCM goes (the encoder); the stage waits for each call before it reads more. */
export type TempoSink = (pcm: Buffer) => Promise<void>;

/**
 * Time-stretches PCM with ffmpeg's atempo, for the part of the requested speed an engine cannot apply itself
 * (espeak-ng stops at 80 wpm ≈ 0.46×). Output goes to `sink` as PCM, one call at a time: the output stream is
 * paused while a call is pending, so a slow encoder holds back ffmpeg, whose full stdin then holds back
 * `write` (and the engine behind it). Without that, a long slow request piled its whole stretched audio up in
 * the worker's memory (700 MB for opus). A failing sink stops the stage; `write`/`finish` reject with its error.
 */
export class TempoStage {
  readonly #process: FfmpegProcess;
  #sinkError: Error | undefined;
  #pending: Promise<void> = Promise.resolve();

  /** PCM in at `inRate`, out at `outRate` (ffmpeg resamples along the way: the engine's rate in, the encoder's out). */
  constructor(factor: number, sink: TempoSink, rates: { inRate?: number; outRate?: number } = {}) {
    this.#process = new FfmpegProcess(pcmInputArgs(rates.inRate ?? OUTPUT_SAMPLE_RATE), tempoOutputArgs(factor, rates.outRate));
    const output = this.#process.output;
    output.on('data', (chunk: Buffer) => {
      output.pause();
      this.#pending = sink(chunk).then(
        () => {
          if (!this.#sinkError) output.resume();
        },
        (err: unknown) => {
          this.#sinkError ??= err as Error;
          this.destroy();
        },
      );
    });
  }

  async write(pcm: Buffer): Promise<void> {
    this.#throwIfSinkFailed();
    try {
      await this.#process.write(pcm);
    } finally {
      this.#throwIfSinkFailed();
    }
  }

  /** Ends input; resolves after the last stretched PCM went through the sink. */
  async finish(): Promise<void> {
    this.#throwIfSinkFailed();
    try {
      await this.#process.end();
      await this.#pending;
    } finally {
      this.#throwIfSinkFailed();
    }
  }

  destroy(): void {
    this.#process.kill();
  }

  /** Puts the atempo process under the job's CPU priority (job-priority.ts), like the engine and encoder. */
  adopt(priority: JobPriority): void {
    this.#process.withPid((pid) => {
      const release = priority.adopt(pid);
      this.#process.done.then(release, release);
    });
  }

  #throwIfSinkFailed(): void {
    if (this.#sinkError) throw this.#sinkError;
  }
}
