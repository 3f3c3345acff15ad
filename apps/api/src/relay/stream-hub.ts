import type { RedisClient } from '@chorus/shared';
import type { FastifyBaseLogger } from 'fastify';
import { ChorusError, isCluster } from '@chorus/shared';
import { decodeRecord } from '@chorus/shared/stream-protocol';
import { compareIds, JobStream, type StreamEntry } from './job-stream.ts';

const BLOCK_MS = 5000;
/** An XREAD BLOCK that has not returned by then sits on a dead connection (dropped without a reset). */
const STUCK_MS = BLOCK_MS + 5000;
/**
 * Entries per stream per read. Records are up to 256 KiB (the worker's MAX_RECORD_BYTES) and one read is delivered
 * whole before a reader's high-water mark can pause it, so this bounds a catching-up reader (replay, whole file,
 * resume) at HIGH_WATER_BYTES + COUNT_PER_STREAM × 256 KiB = 2.5 MiB. Live streams rarely have more than one or two
 * new entries per read.
 */
export const COUNT_PER_STREAM = 8;
/** How often streams outside this process's slot (Cluster only; see #runForeign) are read. */
const FOREIGN_POLL_MS = 50;

/** A key's Cluster hash tag (the first `{...}`), or the key itself when it has none. */
function hashTag(key: string): string {
  const m = /\{([^}]+)\}/.exec(key);
  return m ? m[1]! : key;
}

/**
 * One blocking XREAD loop per API process serves every relayed job stream: 1,000 concurrent streams cost one
 * blocking connection, not 1,000. A subscriber that appears while the loop is blocked XADDs to this process's
 * wake stream, which is part of every XREAD, so the loop returns and re-reads with the new key set. (An id-based
 * wake stream has no race: an XADD that lands before the XREAD arrives still makes it return at once.)
 */
export class StreamHub {
  readonly #blocking: RedisClient;
  readonly #command: RedisClient;
  readonly #wakeKey: string;
  readonly #logger: FastifyBaseLogger;
  readonly #subs = new Map<string, Set<JobStream>>();
  #wakeLastId = '0-0';
  #running = false;
  #loop: Promise<void> | undefined;
  #wakePending = false;
  readonly #streamTtlS: number | undefined;
  #keepAlive: NodeJS.Timeout | undefined;
  #refreshing = false;
  /** Keys found missing by the last TTL refresh (a second miss in a row fails their readers). */
  #missing = new Set<string>();
  /** Cluster: only keys with the wake stream's hash tag go into the blocking XREAD (one slot per command). */
  readonly #ownTag: string | undefined;
  #foreignLoop: Promise<void> | undefined;

  /**
   * `streamTtlS` (STREAM_TTL_S) turns on the keep-alive of relayed streams: the worker's TTL counts from its last
   * write, and a reader slower than that (a client playing in real time, a paused one) would find the rest of its
   * audio expired. Every min(TTL/3, 30 s) one pipelined EXPIRE renews the TTL of every stream with a reader.
   */
  constructor(blocking: RedisClient, command: RedisClient, wakeKey: string, logger: FastifyBaseLogger, streamTtlS?: number) {
    this.#blocking = blocking;
    this.#command = command;
    this.#wakeKey = wakeKey;
    this.#logger = logger;
    this.#streamTtlS = streamTtlS;
    this.#ownTag = isCluster(blocking) ? hashTag(wakeKey) : undefined;
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#loop = this.#run();
    if (this.#ownTag !== undefined) this.#foreignLoop = this.#runForeign();
    if (this.#streamTtlS !== undefined) {
      const everyMs = Math.min((this.#streamTtlS * 1000) / 3, 30_000);
      this.#keepAlive = setInterval(() => void this.refreshTtls(), everyMs);
      this.#keepAlive.unref();
    }
  }

  /**
   * Renews the TTL of every stream that has a reader, in one pipelined call. A stream with a reader that was
   * already fed from it (or that must exist, `mustExist`) and that is missing twice in a row has vanished
   * (evicted, deleted): its readers fail, so routes end with an error instead of waiting on a key that will never
   * get another entry. One miss is forgiven: a Sentinel failover can lose a stream that its job's retry rewrites.
   */
  async refreshTtls(): Promise<void> {
    if (this.#refreshing || this.#streamTtlS === undefined) return;
    if (this.#subs.size === 0) {
      this.#missing.clear();
      return;
    }
    this.#refreshing = true;
    try {
      const keys = [...this.#subs.keys()];
      // One EXPIRE per key, sent back to back (on a Cluster, the keys of streams resumed here live in other slots).
      const ttl = this.#streamTtlS;
      const replies = await Promise.all(keys.map((key) =>
        this.#command.expire(key, ttl).then((n): [Error | null, number | undefined] => [null, n], (err: Error) => [err, undefined])));
      const missing = new Set<string>();
      keys.forEach((key, i) => {
        const [err, found] = replies[i] ?? [new Error('no reply'), undefined];
        if (err || found !== 0) return;
        const readers = [...(this.#subs.get(key) ?? [])].filter((s) => !s.settled && (s.mustExist || s.lastId !== '0-0'));
        if (readers.length === 0) return;
        if (!this.#missing.has(key)) {
          missing.add(key);
          return;
        }
        this.#logger.warn({ key }, 'relayed stream vanished');
        for (const s of readers) {
          s.fail(new ChorusError('TTS_ERR_INTERNAL', 'The audio stream is no longer available; retry the request.'));
        }
      });
      this.#missing = missing;
    } catch (err) {
      this.#logger.debug({ err: (err as Error).message }, 'relay TTL refresh failed');
    } finally {
      this.#refreshing = false;
    }
  }

  /** Streams currently relayed (for metrics). */
  get size(): number {
    let n = 0;
    for (const set of this.#subs.values()) n += set.size;
    return n;
  }

  /**
   * Reads `key` from just after `fromId` (`0-0` = from the start). `mustExist`: the stream is known to have been
   * written (a replay), so its absence means it vanished.
   */
  subscribe(key: string, fromId = '0-0', opts: { mustExist?: boolean } = {}): JobStream {
    const stream = new JobStream(key, fromId, (s) => this.#remove(s), () => this.wake());
    stream.mustExist = opts.mustExist ?? false;
    let set = this.#subs.get(key);
    if (!set) this.#subs.set(key, (set = new Set()));
    set.add(stream);
    this.wake();
    return stream;
  }

  /** Makes the blocked XREAD return so it picks up new or resumed subscribers. */
  wake(): void {
    if (this.#wakePending || !this.#running) return;
    this.#wakePending = true;
    queueMicrotask(() => {
      this.#wakePending = false;
      this.#command
        .multi()
        .xadd(this.#wakeKey, 'MAXLEN', '1', '*', 'w', '1')
        .pexpire(this.#wakeKey, 60_000)
        .exec()
        .catch((err: Error) => this.#logger.debug({ err: err.message }, 'relay wake failed'));
    });
  }

  #remove(stream: JobStream) {
    const set = this.#subs.get(stream.key);
    if (!set) return;
    set.delete(stream);
    if (set.size === 0) this.#subs.delete(stream.key);
  }

  async #run(): Promise<void> {
    let backoff = 50;
    while (this.#running) {
      const keys: string[] = [this.#wakeKey];
      const ids: string[] = [this.#wakeLastId];
      const fromByKey = new Map<string, string>();
      for (const [key, set] of this.#subs) {
        if (this.#ownTag !== undefined && hashTag(key) !== this.#ownTag) continue; // #runForeign's
        const from = this.#fromOf(set);
        if (from !== undefined) {
          keys.push(key);
          ids.push(from);
          fromByKey.set(key, from);
        }
      }
      // The blocking connection cannot be pinged while it waits, so the wait itself is the liveness check.
      const stuck = setTimeout(() => {
        if (this.#blocking.status !== 'ready') return; // reconnecting already; the read is queued for it
        this.#logger.warn('relay read got no answer; reconnecting');
        this.#blocking.disconnect(true);
      }, STUCK_MS);
      try {
        const reply = await this.#blocking.xreadBuffer(
          'COUNT', COUNT_PER_STREAM, 'BLOCK', BLOCK_MS, 'STREAMS', ...keys, ...ids,
        ).finally(() => clearTimeout(stuck));
        backoff = 50;
        if (!reply) continue;
        for (const [keyBuf, rawEntries] of reply) {
          const key = keyBuf.toString();
          if (key === this.#wakeKey) {
            const last = rawEntries[rawEntries.length - 1];
            if (last) this.#wakeLastId = last[0].toString();
            continue;
          }
          this.#deliver(key, fromByKey.get(key)!, rawEntries);
        }
      } catch (err) {
        if (!this.#running) break;
        this.#logger.warn({ err: (err as Error).message }, 'relay read failed; retrying');
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, 1000);
      }
    }
  }

  /** The position to read `set`'s key from: the furthest-behind reader that wants data. */
  #fromOf(set: Set<JobStream>): string | undefined {
    let from: string | undefined;
    for (const s of set) {
      if (!s.wantsData) continue;
      if (from === undefined || compareIds(s.lastId, from) < 0) from = s.lastId;
    }
    return from;
  }

  #deliver(key: string, from: string, rawEntries: [Buffer, Buffer[]][]): void {
    const set = this.#subs.get(key);
    if (!set) return;
    const entries: StreamEntry[] = rawEntries.map(([id, fields]) => ({ id: id.toString(), record: decodeRecord(fields) }));
    // The reply holds the entries after `from`, contiguous. A reader that subscribed while this read was in
    // flight, or was paused out of it, may need earlier entries: it gets none now and the next read starts
    // from its own position. Handing it these would silently skip what lies between.
    for (const s of set) if (compareIds(s.lastId, from) >= 0) s.deliver(entries);
  }

  /**
   * Cluster only. A stream relayed by another API process (a Last-Event-ID resume or a replay that landed on this
   * replica) carries that process's hash tag, so another slot, often another node: it cannot join this process's
   * XREAD. Such streams are few (reconnects), so they are polled: a non-blocking XREAD per stream every
   * FOREIGN_POLL_MS on the command connection, which costs them at most that much latency.
   */
  async #runForeign(): Promise<void> {
    while (this.#running) {
      await new Promise((r) => setTimeout(r, FOREIGN_POLL_MS));
      const reads: Promise<void>[] = [];
      for (const [key, set] of this.#subs) {
        if (hashTag(key) === this.#ownTag) continue;
        const from = this.#fromOf(set);
        if (from === undefined) continue;
        reads.push(this.#command.xreadBuffer('COUNT', COUNT_PER_STREAM, 'STREAMS', key, from).then(
          (reply) => {
            if (reply?.[0]) this.#deliver(key, from, reply[0][1]);
          },
          (err: Error) => this.#logger.debug({ err: err.message, key }, 'relay read of another slot failed; retrying'),
        ));
      }
      await Promise.all(reads);
    }
  }

  async close(): Promise<void> {
    this.#running = false;
    clearInterval(this.#keepAlive);
    for (const set of this.#subs.values()) for (const s of set) s.fail(new Error('relay closed'));
    // Break the blocked XREAD: disconnecting is the only way to interrupt it from this side.
    this.#blocking.disconnect();
    await this.#loop?.catch(() => {});
    await this.#foreignLoop;
  }
}
