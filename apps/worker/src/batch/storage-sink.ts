import { PassThrough } from 'node:stream';
import type { RedisClient } from '@chorus/shared';
import type { Queue } from 'bullmq';
import {
  commitFileMeta, enqueueFinalize, ERRORS, FORMAT_INFO, recordOutcome, StorageKeys, type AudioFormat,
  type BatchItemSink, type ItemOutcome, type ObjectStorage, type RedisKeys,
} from '@chorus/shared';
import type { AudioSink } from '../stream/audio-sink.ts';

export interface BatchDeps {
  redis: RedisClient;
  keys: RedisKeys;
  storage: ObjectStorage;
  /** The control queue the finalizer runs on. */
  control: Queue;
  /** Metrics: an item's outcome recorded (once per item), a batch finalized. */
  onItem?(outcome: ItemOutcome['status']): void;
  onBatch?(status: 'completed' | 'cancelled' | 'expired', seconds: number): void;
}

/** Records an item's outcome (once) and, when it was the batch's last, enqueues the finalizer. */
export async function settleItem(deps: BatchDeps, sink: BatchItemSink, outcome: ItemOutcome): Promise<void> {
  const { recorded, remaining } = await recordOutcome(deps.redis, deps.keys, sink.batchId, sink.customId, outcome);
  if (recorded) deps.onItem?.(outcome.status);
  if (remaining === 0) await enqueueFinalize(deps.control, sink.batchId);
}

/**
 * A batch item's audio, streamed into storage as it is encoded. The put replaces the object only once the whole
 * body arrived (ObjectStorage.put), so a retried attempt rewrites the file from the start and a failed or
 * abandoned one leaves nothing. The outcome is recorded after the file is complete and visible.
 */
export class StorageSink implements AudioSink {
  readonly #deps: BatchDeps;
  readonly #sink: BatchItemSink;
  readonly #requestId: string;
  readonly #format: AudioFormat;
  readonly #body = new PassThrough();
  readonly #put: Promise<{ bytes: number }>;
  #error: Error | undefined;
  #stopped = false;
  bytes = 0;
  chunks = 0;
  firstChunkAt: number | undefined;

  constructor(deps: BatchDeps, sink: BatchItemSink, job: { requestId: string; format: AudioFormat }) {
    this.#deps = deps;
    this.#sink = sink;
    this.#requestId = job.requestId;
    this.#format = job.format;
    this.#put = deps.storage.put(StorageKeys.file(sink.fileId), this.#body, { contentType: FORMAT_INFO[job.format].contentType });
    this.#put.catch((err: Error) => {
      if (!this.#stopped) this.#error ??= err;
    });
  }

  push(chunk: Buffer): void {
    if (this.#stopped) return;
    this.bytes += chunk.length;
    this.chunks += 1;
    this.firstChunkAt ??= Date.now();
    this.#body.write(chunk);
  }

  async drain(): Promise<void> {
    if (this.#error) throw this.#error;
  }

  async end(info: { durationS: number }): Promise<void> {
    this.#body.end();
    const { bytes } = await this.#put;
    const info_ = FORMAT_INFO[this.#format];
    const now = Math.floor(Date.now() / 1000);
    const s = this.#sink;
    await commitFileMeta(this.#deps.redis, this.#deps.keys, {
      id: s.fileId, bytes, created_at: now, expires_at: now + s.retentionS, filename: `${s.customId.slice(0, 200)}.${info_.extension}`,
      purpose: 'batch_output', content_type: info_.contentType, ...(s.owner ? { owner: s.owner } : {}),
    }, s.retentionS);
    await settleItem(this.#deps, s, {
      status: 'completed', request_id: this.#requestId, line: s.line, file_id: s.fileId, content_type: info_.contentType,
      bytes, duration_s: info.durationS,
    });
  }

  async fail(code: string, message: string, param?: string): Promise<void> {
    await this.abandon();
    const base = { request_id: this.#requestId, line: this.#sink.line };
    await settleItem(this.#deps, this.#sink, code === ERRORS.TTS_ERR_CANCELLED.code
      ? { status: 'cancelled', ...base }
      : { status: 'failed', ...base, code, message, param: param ?? null });
  }

  async abandon(): Promise<void> {
    this.#stopped = true;
    this.#body.destroy(new Error('attempt abandoned'));
    await this.#put.catch(() => {});
  }
}
