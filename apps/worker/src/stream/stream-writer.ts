import type { RedisClient } from '@chorus/shared';
import { decodeRecord, encodeRecord, type RestartPoint, type StreamRecord } from '@chorus/shared/stream-protocol';
import type { AudioSink } from './audio-sink.ts';

/** Audio records above this size are split, so one XADD never carries megabytes. */
const MAX_RECORD_BYTES = 256 * 1024;
/**
 * After the first record, bytes are held until this many are pending or HOLD_MS passed. ffmpeg hands over each
 * mp3 packet on its own (-flush_packets 1, for the first byte), so a 300-character mp3 went out as 40–90 records
 * of 1.5–3 KB; every record costs an XADD (worker, Redis), an XREAD delivery and an HTTP write (API). 8 KB is one
 * second of 64 kb/s mp3, made in ~10 ms; holding it at most HOLD_MS delays no audio a player is waiting for.
 */
const MIN_RECORD_BYTES = 8 * 1024;
const HOLD_MS = 20;

/**
 * XADD and the stream's TTL in one step, as one command: a MULTI costs ioredis a Pipeline object per record, a
 * quarter of everything the worker allocated under load (a heap profile), and the collections that come with it.
 */
const APPEND = `redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], ARGV[1])`;

export interface StreamPosition {
  /** Next sequence number to write. */
  seq: number;
  /** Bytes of the container already on the stream. */
  bytes: number;
  /** A terminal record is already there: the job finished before (a duplicate delivery). */
  finished: boolean;
  /** The latest restart point the earlier attempt recorded (mp3; see PiecewiseEncoder). */
  restart?: RestartPoint;
}

/** Where a (possibly crashed) earlier attempt left the stream. */
export async function readStreamPosition(redis: RedisClient, key: string): Promise<StreamPosition> {
  const last = await redis.xrevrangeBuffer(key, '+', '-', 'COUNT', 1);
  const entry = last[0];
  if (!entry) return { seq: 0, bytes: 0, finished: false };
  const record = decodeRecord(entry[1]);
  if (record.type === 'audio') {
    const position: StreamPosition = { seq: record.seq + 1, bytes: record.offset + record.data.length, finished: false };
    if (record.restart) position.restart = record.restart;
    return position;
  }
  return { seq: record.seq + 1, bytes: record.type === 'end' ? record.bytes : 0, finished: true };
}

/**
 * Publishes one job's container bytes to its stream. Bytes below the position's were published by an earlier
 * attempt and are dropped (`fromBytes`: where this attempt's first byte lies in the file, a restart point's). While
 * one XADD is in flight, new bytes accumulate and go out together in the next, so the first bytes leave at once
 * and a fast encoder does not cost one round trip per packet.
 */
export class StreamWriter implements AudioSink {
  readonly #redis: RedisClient;
  readonly #key: string;
  readonly #ttlS: number;
  #seq: number;
  #offset: number;
  #skip: number;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #inFlight: Promise<void> | undefined;
  #error: Error | undefined;
  #abandoned = false;
  /** Set while bytes short of MIN_RECORD_BYTES are held back. */
  #holdTimer: NodeJS.Timeout | undefined;
  /** The held bytes waited HOLD_MS: the next record takes them whatever their size. */
  #holdExpired = false;
  /** drain(): everything pending goes out now. */
  #draining = false;
  /** Container bytes produced by this attempt, including skipped ones. */
  producedBytes = 0;
  chunks = 0;
  firstChunkAt: number | undefined;
  #onFirstChunk: (() => void) | undefined;
  /** The two latest restart points: a record carries the latest one at or before its end. */
  #restarts: RestartPoint[] = [];

  constructor(redis: RedisClient, key: string, ttlS: number, position: StreamPosition, fromBytes = 0) {
    if (fromBytes > position.bytes) throw new Error(`restart at byte ${fromBytes} is past the stream's ${position.bytes}`);
    this.#redis = redis;
    this.#key = key;
    this.#ttlS = ttlS;
    this.#seq = position.seq;
    this.#offset = position.bytes;
    this.#skip = position.bytes - fromBytes;
    this.producedBytes = fromBytes;
    if (position.restart && position.restart.bytes <= position.bytes) this.#restarts.push(position.restart);
  }

  /** Records from here on carry this restart point (once their bytes reach it), for a later attempt to resume at. */
  restartPoint(point: RestartPoint): void {
    this.#restarts = [...this.#restarts.slice(-1), point];
  }

  /** Queue bytes for publishing; never blocks the encoder. */
  push(chunk: Buffer): void {
    if (this.#abandoned) return;
    this.producedBytes += chunk.length;
    let data = chunk;
    if (this.#skip > 0) {
      const drop = Math.min(this.#skip, data.length);
      this.#skip -= drop;
      data = data.subarray(drop);
    }
    if (data.length === 0) return;
    this.#pending.push(data);
    this.#pendingBytes += data.length;
    this.#kick();
  }

  /** Starts publishing if nothing is in flight and the pending bytes are due; else holds them (at most HOLD_MS). */
  #kick(): void {
    if (this.#inFlight || this.#pending.length === 0) return;
    if (this.#due()) {
      clearTimeout(this.#holdTimer);
      this.#holdTimer = undefined;
      this.#inFlight = this.#flushLoop();
    } else {
      this.#holdTimer ??= setTimeout(() => {
        this.#holdTimer = undefined;
        this.#holdExpired = true;
        this.#kick();
      }, HOLD_MS);
    }
  }

  /** The first record leaves at once (first byte); later ones once big enough, held long enough, or draining. */
  #due(): boolean {
    return this.#draining || this.#holdExpired || this.chunks === 0 || this.#pendingBytes >= MIN_RECORD_BYTES;
  }

  async #flushLoop(): Promise<void> {
    try {
      while (this.#pending.length > 0 && this.#due()) {
        const all = Buffer.concat(this.#pending, this.#pendingBytes);
        this.#pending = [];
        this.#pendingBytes = 0;
        this.#holdExpired = false;
        for (let at = 0; at < all.length; at += MAX_RECORD_BYTES) {
          const data = all.subarray(at, at + MAX_RECORD_BYTES);
          const end = this.#offset + data.length;
          let restart: RestartPoint | undefined;
          for (const point of this.#restarts) if (point.bytes <= end) restart = point; // oldest first
          await this.#append({ type: 'audio', seq: this.#seq, offset: this.#offset, data, restart });
          this.#seq += 1;
          this.#offset += data.length;
          this.chunks += 1;
          if (this.firstChunkAt === undefined) {
            this.firstChunkAt = Date.now();
            this.#onFirstChunk?.();
          }
        }
      }
    } catch (err) {
      this.#error = err as Error;
    } finally {
      this.#inFlight = undefined;
    }
    // Bytes that came in during the last XADD but are not due yet: hold them.
    if (!this.#error) this.#kick();
  }

  onFirstChunk(fn: () => void): void {
    if (this.firstChunkAt !== undefined) fn();
    else this.#onFirstChunk = fn;
  }

  /** Waits until everything pushed so far is on the stream. */
  async drain(): Promise<void> {
    this.#draining = true;
    try {
      this.#kick();
      while (this.#inFlight) await this.#inFlight;
    } finally {
      this.#draining = false;
    }
    if (this.#error) throw this.#error;
  }

  async end(info: { durationS: number; chars: number }): Promise<void> {
    await this.drain();
    await this.#append({ type: 'end', seq: this.#seq++, bytes: this.#offset, durationS: info.durationS, chars: info.chars });
  }

  async fail(code: string, message: string, param?: string): Promise<void> {
    this.#pending = [];
    this.#pendingBytes = 0;
    clearTimeout(this.#holdTimer);
    this.#holdTimer = undefined;
    try {
      await this.drain();
    } catch {
      // the error record matters more than the audio that failed to go out
    }
    await this.#append({ type: 'error', seq: this.#seq++, code, message, param });
  }

  /**
   * This attempt stops writing (it will be retried): later pushes are dropped and the XADD in flight is waited
   * for, so the next attempt reads a stream position that no late write of this one can change.
   */
  async abandon(): Promise<void> {
    this.#abandoned = true;
    this.#pending = [];
    this.#pendingBytes = 0;
    clearTimeout(this.#holdTimer);
    this.#holdTimer = undefined;
    while (this.#inFlight) await this.#inFlight;
  }

  get bytes(): number {
    return this.#offset;
  }

  async #append(record: StreamRecord): Promise<void> {
    await this.#redis.eval(APPEND, 1, this.#key, this.#ttlS, ...encodeRecord(record));
  }
}
