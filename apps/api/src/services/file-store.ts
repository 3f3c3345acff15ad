import type { Readable } from 'node:stream';
import type { RedisClient } from '@chorus/shared';
import type { FastifyBaseLogger } from 'fastify';
import {
  commitFileMeta, FILE_ID_PATTERN, newFileId, StorageKeys, type FileMeta, type ObjectStorage, type RedisKeys,
} from '@chorus/shared';

export type { FileMeta };

/** OpenAI's File object. */
export function fileObject(meta: FileMeta) {
  return {
    id: meta.id,
    object: 'file' as const,
    bytes: meta.bytes,
    created_at: meta.created_at,
    expires_at: meta.expires_at,
    filename: meta.filename,
    purpose: meta.purpose,
    status: 'processed' as const,
    status_details: null,
  };
}

export interface ListOptions {
  /** Which index: one owner's (RedisKeys.ownerFiles). */
  index: string;
  after?: string;
  limit: number;
  order: 'asc' | 'desc';
  purpose?: string;
}

/** Bytes older than this with no metadata are orphans (a crash between the two writes, or an expired file). */
const ORPHAN_GRACE_MS = 3600_000;

/**
 * Files: metadata in Redis with a TTL of FILE_RETENTION_S, bytes in storage. Expiry is the metadata's TTL (an
 * expired file is gone from every route at once); the bytes it leaves behind, and those of uploads that crashed
 * between writing bytes and metadata, are removed by `sweep`, which each API process runs hourly.
 */
export class FileStore {
  readonly storage: ObjectStorage;
  readonly retentionS: number;
  readonly #redis: RedisClient;
  readonly #keys: RedisKeys;
  readonly #log: FastifyBaseLogger;
  #first: NodeJS.Timeout | undefined;
  #timer: NodeJS.Timeout | undefined;
  #sweeping: Promise<unknown> | undefined;

  constructor(opts: { redis: RedisClient; keys: RedisKeys; storage: ObjectStorage; retentionS: number; log: FastifyBaseLogger }) {
    this.#redis = opts.redis;
    this.#keys = opts.keys;
    this.storage = opts.storage;
    this.retentionS = opts.retentionS;
    this.#log = opts.log;
  }

  newId(): string {
    return newFileId();
  }

  /** Streams bytes into storage for a file id that has no metadata yet (invisible until `commit`). */
  putBytes(id: string, body: Readable, contentType: string) {
    return this.storage.put(StorageKeys.file(id), body, { contentType });
  }

  async discardBytes(id: string): Promise<void> {
    await this.storage.delete(StorageKeys.file(id)).catch((err: unknown) => {
      this.#log.warn({ err, fileId: id }, 'could not delete file bytes; the sweep will');
    });
  }

  /** Makes an uploaded file visible: its metadata (with the retention TTL) and its place in the listings. */
  async commit(meta: FileMeta): Promise<void> {
    await commitFileMeta(this.#redis, this.#keys, meta, this.retentionS);
  }

  async get(id: string): Promise<FileMeta | undefined> {
    if (!FILE_ID_PATTERN.test(id)) return undefined;
    const raw = await this.#redis.get(this.#keys.file(id));
    return raw ? (JSON.parse(raw) as FileMeta) : undefined;
  }

  /** Metadata first (the file is gone at once), then the bytes; bytes left by a failure are swept later. */
  async delete(meta: FileMeta): Promise<void> {
    // One command per key: they live in different Cluster slots.
    await Promise.all([
      this.#redis.del(this.#keys.file(meta.id)),
      this.#redis.zrem(this.#keys.allFiles(), meta.id),
      this.#redis.zrem(this.#keys.ownerFiles(meta.owner), meta.id),
    ]);
    await this.discardBytes(meta.id);
  }

  /** One page in id (creation) order after the cursor; index entries whose file expired are dropped on the way. */
  async list(opts: ListOptions): Promise<{ data: FileMeta[]; hasMore: boolean }> {
    const desc = opts.order === 'desc';
    let from = opts.after ? `(${opts.after}` : desc ? '+' : '-';
    const data: FileMeta[] = [];
    const batch = Math.min(1000, opts.limit + 1);
    for (;;) {
      const ids = desc
        ? await this.#redis.zrange(opts.index, from, '-', 'BYLEX', 'REV', 'LIMIT', 0, batch)
        : await this.#redis.zrange(opts.index, from, '+', 'BYLEX', 'LIMIT', 0, batch);
      if (ids.length === 0) return { data, hasMore: false };
      // GETs, not one MGET: the files live in different Cluster slots (ioredis sends them back to back anyway).
      const raws = await Promise.all(ids.map((id) => this.#redis.get(this.#keys.file(id))));
      const gone: string[] = [];
      for (let i = 0; i < ids.length; i++) {
        const raw = raws[i];
        if (!raw) {
          gone.push(ids[i]!);
          continue;
        }
        const meta = JSON.parse(raw) as FileMeta;
        if (opts.purpose !== undefined && meta.purpose !== opts.purpose) continue;
        if (data.length === opts.limit) return { data, hasMore: true };
        data.push(meta);
      }
      if (gone.length > 0) await this.#redis.zrem(opts.index, ...gone);
      if (ids.length < batch) return { data, hasMore: false };
      from = `(${ids[ids.length - 1]}`;
    }
  }

  /**
   * Deletes bytes whose metadata is gone (expired or never written) and older than `graceMs`, and what killed
   * uploads left. Returns how many objects it removed.
   */
  async sweep(graceMs = ORPHAN_GRACE_MS): Promise<number> {
    const cutoff = Date.now() - graceMs;
    let removed = await this.storage.removeIncomplete(StorageKeys.filesPrefix, graceMs);
    let chunk: string[] = [];
    const flush = async () => {
      const exists = await Promise.all(chunk.map((id) => this.#redis.exists(this.#keys.file(id))));
      for (let i = 0; i < chunk.length; i++) {
        if (exists[i] === 0 && (await this.storage.delete(StorageKeys.file(chunk[i]!)))) removed++;
      }
      chunk = [];
    };
    for await (const obj of this.storage.list(StorageKeys.filesPrefix)) {
      const id = StorageKeys.fileIdOf(obj.key);
      if (!id || !FILE_ID_PATTERN.test(id) || obj.lastModified.getTime() > cutoff) continue;
      chunk.push(id);
      if (chunk.length >= 100) await flush();
    }
    await flush();
    return removed;
  }

  /** Sweeps a minute after start and hourly after that; one sweep at a time. */
  startSweeping(intervalMs = 3600_000, firstMs = 60_000): void {
    const run = () => {
      this.#sweeping ??= this.sweep()
        .then((n) => n > 0 && this.#log.info({ removed: n }, 'file sweep removed expired or orphaned bytes'))
        .catch((err: unknown) => this.#log.warn({ err }, 'file sweep failed; retrying at the next one'))
        .finally(() => (this.#sweeping = undefined));
    };
    this.#first = setTimeout(() => {
      run();
      this.#timer = setInterval(run, intervalMs).unref();
    }, firstMs).unref();
  }

  async stopSweeping(): Promise<void> {
    clearTimeout(this.#first);
    clearInterval(this.#timer);
    await this.#sweeping;
  }
}
