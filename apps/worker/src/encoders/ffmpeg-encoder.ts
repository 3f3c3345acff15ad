import type { AudioEncoder, EncodedSink } from './audio-encoder.ts';
import { encoderOutputArgs, PCM_INPUT_ARGS, type FfmpegFormat } from './ffmpeg-args.ts';
import { FfmpegProcess } from './ffmpeg-process.ts';

/** mp3 / opus / aac / flac through one ffmpeg per job; constructed ahead of time by the encoder pool. */
export class FfmpegEncoder implements AudioEncoder {
  readonly format: FfmpegFormat;
  readonly #process: FfmpegProcess;

  constructor(format: FfmpegFormat, niceness = 0) {
    this.format = format;
    this.#process = new FfmpegProcess(PCM_INPUT_ARGS, encoderOutputArgs(format), niceness);
  }

  /** A warm encoder whose process died while idle must not be handed out. */
  get usable(): boolean {
    return !this.#process.failed;
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
}
