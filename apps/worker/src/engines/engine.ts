import type { Preset, Speaker, SynthesisOptions } from '@chorus/shared';
import type { JobPriority } from '../processors/job-priority.ts';

/** The job's synthesis options (speed, lang, instructions, seed, temperature) plus what the pipeline adds. */
export interface SynthesisInput extends SynthesisOptions {
  /** One segment of the request's text (the pipeline splits the input). */
  text: string;
  speaker: Speaker;
  /** The part of the requested speed the engine should apply itself (within its speedRange). */
  speed: number;
  preset?: Preset;
  /** Engines that run child processes adopt them here (their CPU priority follows the job's; job-priority.ts). */
  priority?: JobPriority;
  /**
   * Settles once the job's first audio record is out (a realtime job that is not resuming). A process engine may
   * stop its process after its first audio until then (espeak-engine.ts): the encoder, the worker and Redis need
   * the CPU for that record more than the engine needs it for audio nobody waits for yet.
   */
  firstRecordOut?: Promise<unknown>;
}

/**
 * A TTS engine: text in, 16-bit mono PCM at `sampleRate` out, as it is produced. Engines must stop promptly
 * (killing any child process) when `signal` aborts, and must never pass user text on a command line.
 */
export interface TtsEngine {
  readonly id: string;
  readonly sampleRate: number;
  /** Engines whose voices differ in rate (Piper): the rate of this speaker's PCM. Defaults to `sampleRate`. */
  sampleRateFor?(speaker: Speaker): number;
  /**
   * The engine takes a whole request's text in one call and streams its audio as it goes (espeak-ng: first PCM
   * after ~11–15 ms for 40 or 4,000 characters alike), so the pipeline does not cut it into segments: each
   * segment would cost one more process start, on the worker's event loop (Node forks the worker to spawn).
   */
  readonly wholeText?: boolean;
  /** Speeds the engine applies natively; the pipeline time-stretches the remainder. */
  readonly speedRange: readonly [min: number, max: number];
  synthesize(input: SynthesisInput, signal: AbortSignal): AsyncIterable<Buffer>;
  /** Optional start-up check (binary present, model loadable); throws with a clear message. */
  init?(): Promise<void>;
  close?(): Promise<void>;
  /** What the engine loaded and where it runs, for the worker's heartbeat. */
  loaded?(): LoadedModel;
}

export interface LoadedModel {
  engine: string;
  device: 'cpu' | 'cuda';
  voices: string[];
}

/**
 * An engine failure. `transient`: a fault of this run rather than of its input (the engine process died by a
 * signal, an inference call threw), so the job is retried and resumes its stream at the byte offset; otherwise
 * the same input would fail again and the job fails at once.
 */
export class EngineError extends Error {
  override readonly name = 'EngineError';
  readonly transient: boolean;

  constructor(message: string, opts: { transient?: boolean; cause?: unknown } = {}) {
    super(message, { cause: opts.cause });
    this.transient = opts.transient ?? false;
  }
}
