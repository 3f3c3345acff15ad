import type { RestartPoint } from '@chorus/shared/stream-protocol';

/**
 * Where a job's encoded audio goes: a Redis Stream for realtime requests (StreamWriter), a file in storage for
 * batch items (StorageSink). The processor drives both the same way.
 */
export interface AudioSink {
  /** Queues encoded bytes; never blocks the encoder. */
  push(chunk: Buffer): void;
  /** Waits until everything pushed so far is out; throws what went wrong on the way. */
  drain(): Promise<void>;
  /** The audio is complete. */
  end(info: { durationS: number; chars: number }): Promise<void>;
  /** The job failed for good (or was cancelled: code `cancelled`). */
  fail(code: string, message: string, param?: string): Promise<void>;
  /** This attempt stops (it will be retried); nothing it wrote may outlive it in a way the retry could see. */
  abandon(): Promise<void>;
  readonly bytes: number;
  readonly chunks: number;
  readonly firstChunkAt: number | undefined;
  /** Calls `fn` once, when this attempt's first bytes are out (not counting bytes an earlier attempt published). */
  onFirstChunk?(fn: () => void): void;
  /** Where a later attempt could resume encoding (a stream keeps it for a takeover; a file needs none). */
  restartPoint?(point: RestartPoint): void;
}
