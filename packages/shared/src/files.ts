import type { RedisClient } from './redis.ts';
import { newFileId } from './ids.ts';
import type { RedisKeys } from './keys.ts';

/** What Redis keeps about a file; the bytes are in storage under StorageKeys.file(id). */
export interface FileMeta {
  id: string;
  bytes: number;
  created_at: number;
  expires_at: number;
  filename: string;
  purpose: string;
  content_type: string;
  /** The uploading client (client-identity `owner`); absent while keys are off. */
  owner?: string;
}

/**
 * Makes a file visible: its metadata (with the retention TTL) and its place in the listings. Used by the API for
 * uploads and by the worker for batch output, so both write the same shape.
 */
export async function commitFileMeta(redis: RedisClient, keys: RedisKeys, meta: FileMeta, retentionS: number): Promise<void> {
  const oldest = `(${newFileId(Date.now() - retentionS * 1000).slice(0, 17)}`;
  const owner = keys.ownerFiles(meta.owner);
  // One transaction per key, sent together: the three keys live in different Cluster slots. Should one fail, a
  // listing drops an index entry whose metadata is missing, and metadata without an entry still expires.
  const index = (key: string) =>
    redis
      .multi()
      .zadd(key, 0, meta.id)
      // Ids sort by creation time, so ids older than the retention are one range; the index lives as long as its newest file.
      .zremrangebylex(key, '-', oldest)
      .expire(key, retentionS)
      .exec();
  await Promise.all([redis.set(keys.file(meta.id), JSON.stringify(meta), 'EX', retentionS), index(keys.allFiles()), index(owner)]);
}
