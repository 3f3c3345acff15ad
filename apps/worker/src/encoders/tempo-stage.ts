import { PCM_INPUT_ARGS, tempoOutputArgs } from './ffmpeg-args.ts';
import { FfmpegProcess } from './ffmpeg-process.ts';

/**
 * Time-stretches PCM with ffmpeg's atempo, for the part of the requested speed an engine cannot apply itself
 * (espeak-ng stops at 80 wpm ≈ 0.46×). Output goes to `sink` as PCM.
 */
export class TempoStage {
  readonly #process: FfmpegProcess;

  constructor(factor: number, sink: (pcm: Buffer) => void) {
    this.#process = new FfmpegProcess(PCM_INPUT_ARGS, tempoOutputArgs(factor));
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
