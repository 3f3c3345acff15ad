import { OUTPUT_SAMPLE_RATE, type AudioFormat } from '@chorus/shared/audio-formats';
import type { AudioEncoder, EncodedSink } from './audio-encoder.ts';
import { wavHeader } from '../audio/wav.ts';

/**
 * `wav` and `pcm` need no ffmpeg: pcm is the samples, wav a 44-byte header with streaming (0xFFFFFFFF) sizes in
 * front of them. The header goes out with the first samples so the first chunk already holds audio.
 */
export class RawEncoder implements AudioEncoder {
  readonly format: AudioFormat;
  #sink: EncodedSink | undefined;
  #pendingHeader: Buffer | undefined;

  constructor(format: 'wav' | 'pcm') {
    this.format = format;
    this.#pendingHeader = format === 'wav' ? wavHeader(OUTPUT_SAMPLE_RATE) : undefined;
  }

  attach(sink: EncodedSink): void {
    this.#sink = sink;
  }

  async write(pcm: Buffer): Promise<void> {
    if (pcm.length === 0) return;
    this.#emit(pcm);
  }

  async finish(): Promise<void> {
    this.#emit(Buffer.alloc(0));
  }

  destroy(): void {
    this.#sink = undefined;
  }

  #emit(pcm: Buffer) {
    if (!this.#sink) return;
    const out = this.#pendingHeader ? Buffer.concat([this.#pendingHeader, pcm]) : pcm;
    this.#pendingHeader = undefined;
    if (out.length > 0) this.#sink(out);
  }
}
