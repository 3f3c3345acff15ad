import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsStorage, RangeNotSatisfiableError, StorageKeyError, type ObjectStorage } from '@chorus/shared';
import { S3Storage } from '../packages/shared/src/storage/s3.ts';
import { startS3Server, S3RVER_CREDENTIALS, type S3Server } from './helpers/s3-server.ts';

/*
 * One contract, two drivers: the filesystem driver in a temp dir and the S3 driver against a real S3-protocol
 * server (s3rver) started here.
 */

async function readAll(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function keys(storage: ObjectStorage, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const o of storage.list(prefix)) out.push(o.key);
  return out.sort();
}

/** `count` chunks of `size` random bytes, produced one at a time (the whole body never exists as one buffer). */
function chunked(count: number, size: number) {
  const hash = createHash('sha256');
  async function* gen() {
    for (let i = 0; i < count; i++) {
      const chunk = randomBytes(size);
      hash.update(chunk);
      yield chunk;
      await new Promise((r) => setImmediate(r));
    }
  }
  return { body: Readable.from(gen()), digest: () => hash.digest('hex') };
}

/** A body that sends some bytes and then fails, as a client that disconnects mid-upload. */
function failing(afterBytes: number) {
  async function* gen() {
    let sent = 0;
    while (sent < afterBytes) {
      const chunk = randomBytes(256 * 1024);
      sent += chunk.length;
      yield chunk;
    }
    throw new Error('client went away');
  }
  return Readable.from(gen());
}

interface Driver {
  name: string;
  make(): Promise<ObjectStorage>;
  /** Whatever the driver keeps, listed raw (to see that nothing was left behind). */
  raw(): Promise<string[]>;
  stop(): Promise<void>;
}

let s3: S3Server | undefined;
const fsRoot = { dir: '' };

const drivers: Driver[] = [
  {
    name: 'fs',
    async make() {
      fsRoot.dir = await mkdtemp(path.join(tmpdir(), 'chorus-fs-'));
      return new FsStorage(path.join(fsRoot.dir, 'data'));
    },
    async raw() {
      return (await readdir(fsRoot.dir, { recursive: true })).map(String).filter((n) => !n.endsWith('.meta')).sort();
    },
    async stop() {
      await rm(fsRoot.dir, { recursive: true, force: true });
    },
  },
  {
    name: 's3',
    async make() {
      s3 = await startS3Server();
      return new S3Storage({
        bucket: s3.bucket, endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, prefix: 'pre/',
        credentials: S3RVER_CREDENTIALS,
      });
    },
    async raw() {
      const all = new S3Storage({
        bucket: s3!.bucket, endpoint: s3!.endpoint, region: 'us-east-1', forcePathStyle: true, prefix: '',
        credentials: S3RVER_CREDENTIALS,
      });
      const out = await keys(all, '');
      await all.close();
      return out;
    },
    async stop() {
      await s3?.stop();
    },
  },
];

describe.each(drivers)('storage contract: $name driver', (driver) => {
  let storage: ObjectStorage;
  beforeAll(async () => {
    storage = await driver.make();
  });
  afterAll(async () => {
    await storage?.close();
    await driver.stop();
  });

  it('round-trips a 12 MiB body streamed in 64 KiB chunks (hash, size, type), and ranges of it', async () => {
    const src = chunked(192, 64 * 1024);
    const put = await storage.put('files/big', src.body, { contentType: 'application/jsonl' });
    const digest = src.digest();
    expect(put).toEqual({ bytes: 12 * 1024 * 1024, sha256: digest });

    const got = await storage.get('files/big');
    expect(got).toBeDefined();
    expect(got!.bytes).toBe(12 * 1024 * 1024);
    expect(got!.contentType).toBe('application/jsonl');
    const back = createHash('sha256');
    let largest = 0;
    for await (const c of got!.body) {
      back.update(c as Buffer);
      largest = Math.max(largest, (c as Buffer).length);
    }
    expect(back.digest('hex')).toBe(digest);
    expect(largest).toBeLessThan(8 * 1024 * 1024); // streamed, not handed over as one buffer

    const head = await storage.head('files/big');
    expect(head).toMatchObject({ bytes: 12 * 1024 * 1024, contentType: 'application/jsonl' });
    expect(Math.abs(head!.lastModified.getTime() - Date.now())).toBeLessThan(120_000);

    const part = await storage.get('files/big', { range: { start: 10, end: 19 } });
    expect(part!.range).toEqual({ start: 10, end: 19 });
    expect((await readAll(part!.body)).length).toBe(10);
    await expect(storage.get('files/big', { range: { start: 12 * 1024 * 1024 } })).rejects.toBeInstanceOf(RangeNotSatisfiableError);
  });

  it('replaces an object whole, keeps an empty one, and deletes', async () => {
    await storage.put('files/a', Readable.from([Buffer.from('first version')]), { contentType: 'text/plain' });
    await storage.put('files/a', Readable.from([Buffer.from('second')]), { contentType: 'application/octet-stream' });
    const got = await storage.get('files/a');
    expect((await readAll(got!.body)).toString()).toBe('second');
    expect(got!.contentType).toBe('application/octet-stream');

    expect(await storage.put('files/empty', Readable.from([]), { contentType: 'text/plain' })).toMatchObject({ bytes: 0 });
    expect((await storage.head('files/empty'))?.bytes).toBe(0);

    expect(await storage.delete('files/a')).toBe(true);
    expect(await storage.delete('files/a')).toBe(false);
    expect(await storage.get('files/a')).toBeUndefined();
    expect(await storage.head('files/a')).toBeUndefined();
  });

  it('lists by prefix, at any depth, and nothing outside it', async () => {
    for (const k of ['list/x/1', 'list/x/2', 'list/x/deep/3', 'list/y/1', 'listing/1']) {
      await storage.put(k, Readable.from([Buffer.from(k)]), { contentType: 'text/plain' });
    }
    expect(await keys(storage, 'list/x/')).toEqual(['list/x/1', 'list/x/2', 'list/x/deep/3']);
    expect(await keys(storage, 'list/')).toEqual(['list/x/1', 'list/x/2', 'list/x/deep/3', 'list/y/1']);
    expect(await keys(storage, 'listing')).toEqual(['listing/1']);
    expect(await keys(storage, 'nothing/')).toEqual([]);
    const listed = [];
    for await (const o of storage.list('list/y/')) listed.push(o);
    expect(listed).toMatchObject([{ key: 'list/y/1', bytes: 8 }]);
  });

  it('not found: get and head are undefined, delete is false', async () => {
    expect(await storage.get('files/missing')).toBeUndefined();
    expect(await storage.head('files/missing')).toBeUndefined();
    expect(await storage.delete('files/missing')).toBe(false);
  });

  it('a body that fails mid-upload leaves no object, no temp file, and the old object intact', async () => {
    const before = await driver.raw();
    // 7 MiB: past one S3 part, so the S3 driver has a multipart upload to abort.
    await expect(storage.put('abort/new', failing(7 * 1024 * 1024), { contentType: 'text/plain' })).rejects.toThrow('client went away');
    expect(await storage.head('abort/new')).toBeUndefined();

    await storage.put('abort/old', Readable.from([Buffer.from('keep me')]), { contentType: 'text/plain' });
    await expect(storage.put('abort/old', failing(1024 * 1024), { contentType: 'text/plain' })).rejects.toThrow('client went away');
    expect((await readAll((await storage.get('abort/old'))!.body)).toString()).toBe('keep me');

    const after = (await driver.raw()).filter((k) => !before.includes(k));
    expect(after.filter((k) => !/abort$|abort\/old$/.test(k))).toEqual([]);
    expect(await storage.removeIncomplete('abort/', 0)).toBe(0);
  });

  it('a body that fails before any byte arrives rejects with its error (no uncaught error event) and stores nothing', async () => {
    const body = new PassThrough();
    const put = storage.put('abort/early', body, { contentType: 'text/plain' });
    body.destroy(new Error('failed at once'));
    await expect(put).rejects.toThrow('failed at once');
    expect(await storage.head('abort/early')).toBeUndefined();
  });

  it('keys cannot escape their root', async () => {
    for (const bad of ['../x', 'files/../../x', '/etc/passwd', 'files/./x', 'files//x', 'files/.x', 'a\\b', '', 'files/x/', '..', 'x\0y']) {
      await expect(storage.put(bad, Readable.from([Buffer.from('x')]), { contentType: 'text/plain' }), bad).rejects.toBeInstanceOf(StorageKeyError);
      await expect(storage.get(bad), bad).rejects.toBeInstanceOf(StorageKeyError);
      await expect(storage.delete(bad), bad).rejects.toBeInstanceOf(StorageKeyError);
    }
    await expect(keys(storage, '../')).rejects.toBeInstanceOf(StorageKeyError);
    expect((await driver.raw()).some((k) => k.includes('passwd'))).toBe(false);
  });
});

describe('fs driver specifics', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'chorus-fs-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('temp files a crash left are invisible, and removed once stale', async () => {
    const storage = new FsStorage(path.join(dir, 'data'));
    await storage.put('files/one', Readable.from([Buffer.from('1')]), { contentType: 'text/plain' });
    // What a killed upload leaves: a hidden temp file. Invisible to list; removed once older than the grace.
    const tmp = path.join(dir, 'data/files/.two.0123456789ab.tmp');
    await writeFile(tmp, 'partial');
    expect(await keys(storage, 'files/')).toEqual(['files/one']);
    expect(await storage.removeIncomplete('files/', 60_000)).toBe(0);
    const old = new Date(Date.now() - 3600_000);
    await utimes(tmp, old, old);
    expect(await storage.removeIncomplete('files/', 60_000)).toBe(1);
    expect((await readdir(path.join(dir, 'data/files'))).sort()).toEqual(['.one.meta', 'one']);
  });
});

describe('storage configuration', () => {
  it('defaults to the fs driver under DATA_DIR; s3 needs a bucket; bad values name their variable', async () => {
    const { loadApiConfig, ConfigError } = await import('@chorus/shared');
    const d = loadApiConfig({});
    expect(d.storage).toEqual({ driver: 'fs', dataDir: './data', s3: undefined });
    expect(d.maxBatchFileBytes).toBe(200 * 1024 * 1024);
    expect(d.fileRetentionS).toBe(30 * 86_400);
    expect(() => loadApiConfig({ STORAGE_DRIVER: 's3' })).toThrow(/S3_BUCKET/);
    expect(loadApiConfig({
      STORAGE_DRIVER: 's3', S3_BUCKET: 'my-bucket', S3_ENDPOINT: 'http://minio:9000', S3_FORCE_PATH_STYLE: 'true', S3_PREFIX: 'chorus/prod/',
    }).storage.s3).toEqual({ bucket: 'my-bucket', endpoint: 'http://minio:9000', region: 'us-east-1', forcePathStyle: true, prefix: 'chorus/prod/' });
    for (const [name, value] of [
      ['STORAGE_DRIVER', 'gcs'], ['S3_BUCKET', 'Bad_Bucket'], ['S3_ENDPOINT', 'not a url'], ['S3_PREFIX', '../up'],
      ['S3_FORCE_PATH_STYLE', 'maybe'], ['MAX_BATCH_FILE_BYTES', '0'], ['FILE_RETENTION_S', '-1'],
    ]) {
      expect(() => loadApiConfig({ [name!]: value }), name).toThrow(ConfigError);
      expect(() => loadApiConfig({ [name!]: value }), name).toThrow(name);
    }
  });
});
