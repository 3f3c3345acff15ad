import type { AudioFormat } from '@chorus/shared/audio-formats';
import type { JobPriority } from '../processors/job-priority.ts';

/** Receives encoded container bytes in order. */
export type EncodedSink = (chunk: Buffer) => void;

/**
 * One job's encoder: 24 kHz s16le mono PCM in, bytes of the requested container out (to the sink given when it
 * was attached). Output is a deterministic function of the PCM, whatever the write sizes (crash resume relies on
 * it).
 */
export interface AudioEncoder {
  readonly format: AudioFormat;
  attach(sink: EncodedSink): void;
  /** Resolves when the encoder can take more input. */
  write(pcm: Buffer): Promise<void>;
  /** Ends input; resolves after the last output byte went to the sink. */
  finish(): Promise<void>;
  /** Stops at once (abort); idempotent. */
  destroy(): void;
  /** Encoders that run a process put it under the job's CPU priority (job-priority.ts). */
  adopt?(priority: JobPriority): void;
}
