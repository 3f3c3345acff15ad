import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  AbortMultipartUploadCommand, DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListMultipartUploadsCommand,
  ListObjectsV2Command, S3Client, S3ServiceException,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { Measure } from './hashing.ts';
import {
  assertKey, assertPrefix, RangeNotSatisfiableError,
  type ByteRange, type ListedObject, type ObjectInfo, type ObjectStorage, type PutOptions, type PutResult, type StoredObject,
} from './types.ts';

export interface S3StorageOptions {
  bucket: string;
  /** For S3-compatible stores (MinIO, Ceph, R2...); unset = AWS. */
  endpoint?: string;
  region: string;
  forcePathStyle: boolean;
  /** Prepended to every key (`chorus/`), so one bucket can hold other things too. */
  prefix: string;
  /** Tests pass these; otherwise the AWS SDK's default chain (env, profile, instance role...). */
  credentials?: { accessKeyId: string; secretAccessKey: string };
}

const status = (err: unknown) => (err instanceof S3ServiceException ? err.$metadata.httpStatusCode : undefined);
const isNotFound = (err: unknown) => status(err) === 404 || (err as Error).name === 'NoSuchKey' || (err as Error).name === 'NotFound';

/**
 * Objects in an S3 bucket (any S3-compatible store). Uploads stream through lib-storage's Upload: bodies up to one
 * part (5 MiB) are one PutObject, larger ones a multipart upload, which Upload aborts when the body fails, so a
 * failed upload never becomes an object (S3 only shows an object once it is complete).
 */
export class S3Storage implements ObjectStorage {
  readonly driver = 's3' as const;
  readonly client: S3Client;
  readonly #bucket: string;
  readonly #prefix: string;

  constructor(opts: S3StorageOptions) {
    this.client = new S3Client({
      region: opts.region,
      endpoint: opts.endpoint,
      forcePathStyle: opts.forcePathStyle,
      credentials: opts.credentials,
    });
    this.#bucket = opts.bucket;
    this.#prefix = opts.prefix ? assertPrefix(opts.prefix.endsWith('/') ? opts.prefix : `${opts.prefix}/`) : '';
  }

  #key(key: string): string {
    return this.#prefix + assertKey(key);
  }

  async put(key: string, body: Readable, options: PutOptions): Promise<PutResult> {
    const measure = new Measure();
    // pipeline destroys `measure` with the body's error, which fails the Upload reading it.
    const piped = pipeline(body, measure);
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.#bucket, Key: this.#key(key), Body: measure, ContentType: options.contentType },
      leavePartsOnError: false,
    });
    // An upload that fails (store down) must stop the pump too, or the body would wait on backpressure forever.
    const done = upload.done().catch((err: unknown) => {
      measure.destroy(err as Error);
      throw err;
    });
    const [uploaded, pumped] = await Promise.allSettled([done, piped]);
    if (pumped.status === 'rejected') {
      // The body failed (or the upload did, and stopped it): the root cause, not what aborting the upload said.
      // Should Upload have completed with what it had read, take the object back.
      if (uploaded.status === 'fulfilled') await this.delete(key).catch(() => {});
      throw pumped.reason;
    }
    if (uploaded.status === 'rejected') throw uploaded.reason;
    return { bytes: measure.bytes, sha256: measure.digest() };
  }

  async get(key: string, options: { range?: ByteRange } = {}): Promise<StoredObject | undefined> {
    const r = options.range;
    try {
      const out = await this.client.send(new GetObjectCommand({
        Bucket: this.#bucket, Key: this.#key(key), Range: r ? `bytes=${r.start}-${r.end ?? ''}` : undefined,
      }));
      let bytes = out.ContentLength ?? 0;
      let range: StoredObject['range'];
      const m = out.ContentRange ? /^bytes (\d+)-(\d+)\/(\d+)$/.exec(out.ContentRange) : null;
      if (m) {
        range = { start: Number(m[1]), end: Number(m[2]) };
        bytes = Number(m[3]);
      } else if (r) {
        // A store that ignored the Range sends the whole object: say so rather than mislabel it.
        range = { start: 0, end: bytes - 1 };
      }
      return {
        body: out.Body as Readable,
        bytes,
        contentType: out.ContentType ?? 'application/octet-stream',
        lastModified: out.LastModified ?? new Date(0),
        range,
      };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      if (status(err) === 416) throw new RangeNotSatisfiableError(`range ${r?.start}-${r?.end ?? ''}`);
      throw err;
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.#bucket, Key: this.#key(key) }));
      return {
        bytes: out.ContentLength ?? 0,
        contentType: out.ContentType ?? 'application/octet-stream',
        lastModified: out.LastModified ?? new Date(0),
      };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async delete(key: string): Promise<boolean> {
    // S3 deletes are idempotent and say nothing about whether the object existed: ask first.
    const existed = (await this.head(key)) !== undefined;
    await this.client.send(new DeleteObjectCommand({ Bucket: this.#bucket, Key: this.#key(key) }));
    return existed;
  }

  async *list(prefix: string): AsyncIterable<ListedObject> {
    const full = this.#prefix + assertPrefix(prefix);
    let token: string | undefined;
    do {
      const page = await this.client.send(new ListObjectsV2Command({
        Bucket: this.#bucket, Prefix: full, ContinuationToken: token,
      }));
      for (const o of page.Contents ?? []) {
        if (!o.Key) continue;
        yield { key: o.Key.slice(this.#prefix.length), bytes: o.Size ?? 0, lastModified: o.LastModified ?? new Date(0) };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async removeIncomplete(prefix: string, olderThanMs: number): Promise<number> {
    const full = this.#prefix + assertPrefix(prefix);
    const cutoff = Date.now() - olderThanMs;
    let removed = 0;
    let keyMarker: string | undefined;
    let uploadMarker: string | undefined;
    do {
      const page = await this.client.send(new ListMultipartUploadsCommand({
        Bucket: this.#bucket, Prefix: full, KeyMarker: keyMarker, UploadIdMarker: uploadMarker,
      })).catch((err: unknown) => {
        // Stores without multipart listing (s3rver): nothing to do here; a lifecycle rule is the answer there.
        if (status(err) === 501) return undefined;
        throw err;
      });
      if (!page) return removed;
      for (const u of page.Uploads ?? []) {
        if (!u.Key || !u.UploadId || (u.Initiated && u.Initiated.getTime() >= cutoff)) continue;
        await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.#bucket, Key: u.Key, UploadId: u.UploadId }));
        removed++;
      }
      keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
      uploadMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined;
    } while (keyMarker);
    return removed;
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}
