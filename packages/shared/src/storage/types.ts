import type { Readable } from 'node:stream';

/*
 * Durable object storage for files (batch input, output and audio): one interface, a filesystem driver (DATA_DIR)
 * and an S3 driver. Bodies stream in and out; no driver holds a whole object in memory.
 */

export interface PutOptions {
  contentType: string;
}

export interface PutResult {
  bytes: number;
  /** Hex SHA-256 of what was stored. */
  sha256: string;
}

export interface ObjectInfo {
  bytes: number;
  contentType: string;
  lastModified: Date;
}

/** Inclusive byte range, as HTTP's `Range: bytes=start-end` (end defaults to the last byte). */
export interface ByteRange {
  start: number;
  end?: number;
}

export interface StoredObject extends ObjectInfo {
  body: Readable;
  /** The bytes `body` carries: `bytes` itself unless a range was asked for. */
  range?: { start: number; end: number };
}

export interface ListedObject {
  key: string;
  bytes: number;
  lastModified: Date;
}

export interface ObjectStorage {
  readonly driver: 'fs' | 's3';
  /**
   * Streams `body` into `key`, replacing what was there only once the whole body arrived: a body that errors (or
   * is destroyed) leaves nothing behind and rejects with its error.
   */
  put(key: string, body: Readable, options: PutOptions): Promise<PutResult>;
  /** The object, or undefined when there is none. */
  get(key: string, options?: { range?: ByteRange }): Promise<StoredObject | undefined>;
  head(key: string): Promise<ObjectInfo | undefined>;
  /** True when an object was there. */
  delete(key: string): Promise<boolean>;
  /** Every object whose key starts with `prefix`, in no particular order. */
  list(prefix: string): AsyncIterable<ListedObject>;
  /**
   * Removes what uploads killed mid-way left under `prefix` and older than `olderThanMs` (temp files; S3 multipart
   * uploads never completed). Returns how many.
   */
  removeIncomplete(prefix: string, olderThanMs: number): Promise<number>;
  close(): Promise<void>;
}

export class StorageKeyError extends Error {
  override readonly name = 'StorageKeyError';
}

export class RangeNotSatisfiableError extends Error {
  override readonly name = 'RangeNotSatisfiableError';
}

/**
 * A key is `/`-separated segments of letters, digits, `_`, `-` and `.`, none starting with `.`: no `..`, no
 * absolute paths, no backslashes, and the filesystem driver's hidden temp and metadata files (which start with
 * `.`) cannot be named.
 */
const KEY = /^[A-Za-z0-9_-][A-Za-z0-9._-]*(?:\/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$/;
const PREFIX = /^(?:[A-Za-z0-9_-][A-Za-z0-9._-]*\/)*(?:[A-Za-z0-9_-][A-Za-z0-9._-]*)?$/;

export function assertKey(key: string): string {
  if (key.length > 512 || !KEY.test(key)) throw new StorageKeyError(`invalid storage key: ${JSON.stringify(key.slice(0, 100))}`);
  return key;
}

export function assertPrefix(prefix: string): string {
  if (prefix.length > 512 || !PREFIX.test(prefix)) {
    throw new StorageKeyError(`invalid storage prefix: ${JSON.stringify(prefix.slice(0, 100))}`);
  }
  return prefix;
}

/** The only place storage keys are built. */
export const StorageKeys = {
  /** Bytes of a file (`/v1/files`); the id is checked against FILE_ID_PATTERN by the caller and again here. */
  file(fileId: string): string {
    return assertKey(`files/${fileId}`);
  },
  filesPrefix: 'files/',
  /** The file id a `files/` key names (for sweeps), or undefined. */
  fileIdOf(key: string): string | undefined {
    return key.startsWith('files/') && !key.slice(6).includes('/') ? key.slice(6) : undefined;
  },
} as const;
