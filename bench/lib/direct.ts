import { spawn } from 'node:child_process';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { OUTPUT_SAMPLE_RATE, VoiceCatalog, type AudioFormat, type Speaker } from '@chorus/shared';
import { EspeakEngine } from '../../apps/worker/src/engines/espeak-engine.ts';
import { Resampler } from '../../apps/worker/src/audio/resampler.ts';
import { segmentText } from '../../apps/worker/src/audio/segmenter.ts';
import { EncoderPool, isProcessFormat } from '../../apps/worker/src/encoders/encoder-pool.ts';
import { encoderOutputArgs, type FfmpegFormat } from '../../apps/worker/src/encoders/ffmpeg-args.ts';

export interface DirectResult {
  ttfbMs: number;
  totalMs: number;
  bytes: number;
}

/** The speaker the service resolves `voice: "alloy"` to, so both sides synthesize the same audio. */
export function alloySpeaker(): Speaker {
  return VoiceCatalog.load().resolve('alloy')!;
}

/**
 * The worker's pipeline called in this process, with no queue, Redis or HTTP: segmentText → EspeakEngine →
 * Resampler (as the engine produces PCM; ffmpeg formats resample in the encoder) → encoder from a warm EncoderPool,
 * as processors/synthesize.ts runs it.
 * The baseline the service is compared with.
 */
export class DirectPipeline {
  readonly #engine = new EspeakEngine();
  readonly #resampler = new Resampler(22_050, OUTPUT_SAMPLE_RATE);
  readonly #pool: EncoderPool;
  readonly #speaker = alloySpeaker();
  /** Resample and encode each segment only once it is complete (the worker's behaviour before streaming). */
  wholeSegments = false;

  constructor(encoderPoolSize: number) {
    this.#pool = new EncoderPool(encoderPoolSize);
  }

  async init(): Promise<void> {
    await this.#engine.init();
    this.#pool.warm([OUTPUT_SAMPLE_RATE, this.#engine.sampleRate]);
  }

  /**
   * One request through the pipeline. `untilFirstByte` stops it (engine killed, encoder destroyed) once the first
   * encoded byte exists: enough for a first-byte comparison, without encoding minutes of audio.
   */
  async run(text: string, format: AudioFormat, opts: { untilFirstByte?: boolean } = {}): Promise<DirectResult> {
    const t0 = performance.now();
    let ttfbMs = Number.NaN;
    let bytes = 0;
    const ac = new AbortController();
    // As the worker: ffmpeg formats take espeak-ng's 22,050 Hz PCM and resample it themselves.
    const resampleHere = !isProcessFormat(format);
    const encoder = this.#pool.acquire(format, false, resampleHere ? OUTPUT_SAMPLE_RATE : this.#engine.sampleRate);
    encoder.attach((chunk) => {
      if (bytes === 0) {
        ttfbMs = performance.now() - t0;
        if (opts.untilFirstByte) ac.abort();
      }
      bytes += chunk.length;
    });
    const speak = (segment: string) => this.#engine.synthesize({ text: segment, speaker: this.#speaker, speed: 1 }, ac.signal);
    try {
      for (const segment of segmentText(text)) {
        if (this.wholeSegments) {
          // What the worker did before it streamed segments (kept to show the difference in one run).
          const parts: Buffer[] = [];
          for await (const pcm of speak(segment)) parts.push(pcm);
          const pcm = Buffer.concat(parts);
          await encoder.write(resampleHere ? this.#resampler.process(pcm) : pcm);
          ac.signal.throwIfAborted();
          continue;
        }
        const resampling = resampleHere ? this.#resampler.stream() : undefined;
        for await (const pcm of speak(segment)) {
          const out = resampling ? resampling.push(pcm) : pcm;
          if (out.length) await encoder.write(out);
          await yieldToEventLoop();
          ac.signal.throwIfAborted();
        }
        const tail = resampling?.flush();
        if (tail?.length) await encoder.write(tail);
      }
      await encoder.finish();
    } catch (err) {
      encoder.destroy();
      if (!(opts.untilFirstByte && ac.signal.aborted)) throw err;
    }
    return { ttfbMs, totalMs: performance.now() - t0, bytes };
  }

  close(): void {
    this.#pool.close();
  }
}

/**
 * The naive pipeline the issue compares against: espeak-ng's WAV piped into a freshly spawned ffmpeg per
 * request (ffmpeg resamples and encodes). Its first byte waits for ffmpeg's ~65 ms process start.
 */
export function naivePipeline(text: string, voice: string, format: FfmpegFormat = 'mp3'): Promise<DirectResult> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const espeak = spawn('espeak-ng', ['--stdout', '-b', '1', '-v', voice], { stdio: ['pipe', 'pipe', 'ignore'] });
    const ffmpeg = spawn('ffmpeg', [
      '-nostdin', '-hide_banner', '-loglevel', 'error', '-probesize', '32', '-analyzeduration', '0',
      '-f', 'wav', '-i', 'pipe:0', ...encoderOutputArgs(format), 'pipe:1',
    ], { stdio: ['pipe', 'pipe', 'ignore'] });
    let ttfbMs = Number.NaN;
    let bytes = 0;
    espeak.stdout.pipe(ffmpeg.stdin);
    ffmpeg.stdin.on('error', () => {});
    ffmpeg.stdout.on('data', (d: Buffer) => {
      if (bytes === 0) ttfbMs = performance.now() - t0;
      bytes += d.length;
    });
    espeak.once('error', reject);
    ffmpeg.once('error', reject);
    ffmpeg.once('close', (code) => {
      if (code !== 0) reject(new Error(`ffmpeg exited ${code}`));
      else resolve({ ttfbMs, totalMs: performance.now() - t0, bytes });
    });
    espeak.stdin.end(`${text}\n`);
  });
}
