import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { mkdir, open, opendir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { Measure } from './hashing.ts';
import {
  assertKey, assertPrefix, RangeNotSatisfiableError, StorageKeyError,
  type ByteRange, type ListedObject, type ObjectInfo, type ObjectStorage, type PutOptions, type PutResult, type StoredObject,
} from './types.ts';

const DEFAULT_TYPE = 'application/octet-stream';
const isNotFound = (err: unknown) => (err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR';

/**
 * Objects as files under one root (DATA_DIR). A key `a/b` is the file `<root>/a/b`; its content type sits beside
 * it in `.b.meta`. Writes go to a hidden temp file in the same directory and are renamed into place, so a reader
 * sees the old object or the whole new one, and a failed upload leaves nothing but its removed temp file. Names
 * starting with `.` are never keys (assertKey), so list skips them.
 */
export class FsStorage implements ObjectStorage {
  readonly driver = 'fs' as const;
  readonly root: string;

  constructor(root: string) {
    this.root = path.resolve(root);
  }

  /** The file for `key`; refuses anything that would resolve outside the root, whatever assertKey let through. */
  #path(key: string): string {
    const file = path.resolve(this.root, assertKey(key));
    if (!file.startsWith(this.root + path.sep)) throw new StorageKeyError(`storage key escapes its root: ${key}`);
    return file;
  }

  #metaPath(file: string): string {
    return path.join(path.dirname(file), `.${path.basename(file)}.meta`);
  }

  async put(key: string, body: Readable, options: PutOptions): Promise<PutResult> {
    const file = this.#path(key);
    // The body may fail while mkdir runs, before pipeline listens: keep that from being an uncaught 'error' event
    // (pipeline still sees it, as the stream's errored state).
    body.on('error', () => {});
    await mkdir(path.dirname(file), { recursive: true });
    const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
    const measure = new Measure();
    const out = createWriteStream(tmp, { flags: 'wx' });
    try {
      await pipeline(body, measure, out);
      // Type first: a reader that finds the new bytes finds their type (a stale one only in the instant between).
      await writeFile(`${tmp}.meta`, JSON.stringify({ contentType: options.contentType }));
      await rename(`${tmp}.meta`, this.#metaPath(file));
      await rename(tmp, file);
    } catch (err) {
      // A body that fails at once can reject the pipeline while the temp file is still being opened: unlinking
      // then would find nothing and the open would create it after. Wait for the stream to close first.
      if (!out.closed) await once(out, 'close').catch(() => {});
      await Promise.allSettled([unlink(tmp), unlink(`${tmp}.meta`)]);
      throw err;
    }
    return { bytes: measure.bytes, sha256: measure.digest() };
  }

  async #contentType(file: string): Promise<string> {
    try {
      const meta = JSON.parse(await readFile(this.#metaPath(file), 'utf8')) as { contentType?: unknown };
      return typeof meta.contentType === 'string' ? meta.contentType : DEFAULT_TYPE;
    } catch {
      return DEFAULT_TYPE;
    }
  }

  async get(key: string, options: { range?: ByteRange } = {}): Promise<StoredObject | undefined> {
    const file = this.#path(key);
    // Open first: the stream then reads this file even if it is replaced or deleted meanwhile.
    const handle = await open(file, 'r').catch((err: unknown) => {
      if (isNotFound(err)) return undefined;
      throw err;
    });
    if (!handle) return undefined;
    try {
      const info = await handle.stat();
      if (!info.isFile()) {
        await handle.close();
        return undefined;
      }
      const contentType = await this.#contentType(file);
      let range: StoredObject['range'];
      if (options.range) {
        const end = Math.min(options.range.end ?? info.size - 1, info.size - 1);
        if (options.range.start >= info.size || end < options.range.start) {
          throw new RangeNotSatisfiableError(`range ${options.range.start}-${options.range.end ?? ''} of ${info.size} bytes`);
        }
        range = { start: options.range.start, end };
      }
      const body = handle.createReadStream({ start: range?.start, end: range?.end, autoClose: true });
      return { body, bytes: info.size, contentType, lastModified: info.mtime, range };
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const file = this.#path(key);
    try {
      const info = await stat(file);
      if (!info.isFile()) return undefined;
      return { bytes: info.size, contentType: await this.#contentType(file), lastModified: info.mtime };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async delete(key: string): Promise<boolean> {
    const file = this.#path(key);
    try {
      await unlink(file);
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    } finally {
      await unlink(this.#metaPath(file)).catch(() => {});
    }
    return true;
  }

  async *list(prefix: string): AsyncIterable<ListedObject> {
    assertPrefix(prefix);
    // Walk the deepest directory the prefix names, then filter by the rest of it.
    const dirPart = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
    yield* this.#walk(dirPart ? path.join(this.root, dirPart) : this.root, dirPart, prefix);
  }

  async *#walk(dir: string, keyDir: string, prefix: string): AsyncGenerator<ListedObject> {
    const entries = await openDirIfAny(dir);
    if (!entries) return;
    for await (const entry of entries) {
      if (entry.name.startsWith('.')) continue; // temp and metadata files
      const key = keyDir ? `${keyDir}/${entry.name}` : entry.name;
      if (entry.isDirectory()) {
        if (prefix.startsWith(`${key}/`) || key.startsWith(prefix)) yield* this.#walk(path.join(dir, entry.name), key, prefix);
      } else if (entry.isFile() && key.startsWith(prefix)) {
        const info = await stat(path.join(dir, entry.name)).catch(() => undefined);
        if (info) yield { key, bytes: info.size, lastModified: info.mtime };
      }
    }
  }

  /**
   * Removes temp files older than `olderThanMs` that a killed process left under `prefix` (a live upload keeps
   * writing its temp file, so its mtime stays recent). Returns how many.
   */
  async removeIncomplete(prefix: string, olderThanMs: number): Promise<number> {
    assertPrefix(prefix);
    const cutoff = Date.now() - olderThanMs;
    let removed = 0;
    const walk = async (dir: string): Promise<void> => {
      const entries = await openDirIfAny(dir);
      if (!entries) return;
      for await (const entry of entries) {
        const full = path.join(dir, entry.name);
        if (entry.isDirectory() && !entry.name.startsWith('.')) await walk(full);
        else if (entry.isFile() && /^\..+\.[0-9a-f]{12}\.tmp(?:\.meta)?$/.test(entry.name)) {
          const info = await stat(full).catch(() => undefined);
          if (info && info.mtimeMs < cutoff && (await unlink(full).then(() => true, () => false))) removed++;
        }
      }
    };
    const dirPart = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
    await walk(dirPart ? path.join(this.root, dirPart) : this.root);
    return removed;
  }

  async close(): Promise<void> {}
}

/** The directory's entries, or undefined when it does not exist (nothing stored under it yet). */
async function openDirIfAny(dir: string) {
  try {
    return await opendir(dir);
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}
