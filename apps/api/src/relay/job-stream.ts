import { ChorusError } from '@chorus/shared';
import { isTerminal, type StreamRecord } from '@chorus/shared/stream-protocol';

export interface StreamEntry {
  /** Redis Stream entry id. */
  id: string;
  record: StreamRecord;
}

/** Buffered bytes above which the hub stops reading this stream until the client catches up. */
export const HIGH_WATER_BYTES = 512 * 1024;
const LOW_WATER_BYTES = 128 * 1024;

/**
 * One reader's view of a job's stream, fed by the StreamHub. Iterating it yields records in order and ends
 * after the terminal record. A slow reader pauses its stream in the hub (no unbounded buffering).
 */
export class JobStream implements AsyncIterable<StreamEntry> {
  readonly key: string;
  lastId: string;
  /** When the hub last delivered a record (the job watchdog looks at streams that went quiet). */
  lastDeliveryAt = Date.now();
  /** The stream is known to exist (a replay): the hub fails this reader when it vanishes, see StreamHub.refreshTtls. */
  mustExist = false;
  #buffer: StreamEntry[] = [];
  #bufferedBytes = 0;
  #waiter: (() => void) | undefined;
  #ended = false;
  #failure: Error | undefined;
  #closed = false;
  /** Left out of the hub's reads until the reader drains below LOW_WATER_BYTES (hysteresis). */
  #paused = false;
  /** Container offset of the next byte this reader needs; undefined when it did not read from the start. */
  #nextOffset: number | undefined;
  #onEnded: (() => void) | undefined;
  readonly #onClose: (s: JobStream) => void;
  readonly #onDrained: () => void;

  constructor(key: string, fromId: string, onClose: (s: JobStream) => void, onDrained: () => void) {
    this.key = key;
    this.lastId = fromId;
    this.#nextOffset = fromId === '0-0' ? 0 : undefined;
    this.#onClose = onClose;
    this.#onDrained = onDrained;
  }

  /** Whether the hub should include this stream in its next XREAD. */
  get wantsData(): boolean {
    return !this.#ended && !this.#closed && !this.#paused && this.#failure === undefined;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Terminal record received, failed, or closed by its reader: nothing more will come. */
  get settled(): boolean {
    return this.#ended || this.#closed || this.#failure !== undefined;
  }

  /** `fn` runs once when the terminal record arrives (not when the reader closes the stream or it fails). */
  onEnded(fn: () => void): void {
    this.#onEnded = fn;
  }

  /** Called by the hub with entries newer than `lastId`. */
  deliver(entries: StreamEntry[]): void {
    for (let entry of entries) {
      if (this.#ended || this.#closed || this.#failure) break;
      if (compareIds(entry.id, this.lastId) <= 0) continue;
      this.lastId = entry.id;
      this.lastDeliveryAt = Date.now();
      const r = entry.record;
      if (r.type === 'audio' && this.#nextOffset !== undefined) {
        // Byte offsets, not entry ids, say what the reader already has. They differ only after a Sentinel
        // failover lost writes the relay had (or had not) read: a retried attempt then republishes bytes we
        // already relayed (trimmed here), or bytes are missing (fail: a truncated transfer, not corrupt audio).
        const end = r.offset + r.data.length;
        if (end <= this.#nextOffset) continue;
        if (r.offset > this.#nextOffset) {
          this.#failure = new ChorusError('TTS_ERR_INTERNAL', 'Audio was lost in a backend failover; retry the request.');
          break;
        }
        if (r.offset < this.#nextOffset) {
          entry = { id: entry.id, record: { ...r, offset: this.#nextOffset, data: r.data.subarray(this.#nextOffset - r.offset) } };
        }
        this.#nextOffset = end;
      }
      this.#buffer.push(entry);
      if (entry.record.type === 'audio') this.#bufferedBytes += entry.record.data.length;
      if (isTerminal(entry.record)) {
        this.#ended = true;
        this.#onEnded?.();
      }
    }
    if (this.#bufferedBytes >= HIGH_WATER_BYTES) this.#paused = true;
    this.#wake();
  }

  /** The hub lost Redis for good or is closing. */
  fail(err: Error): void {
    this.#failure = err;
    this.#wake();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#buffer = [];
    this.#wake();
    this.#onClose(this);
  }

  /** Next entry, or undefined when the stream ended or was closed. */
  async next(): Promise<StreamEntry | undefined> {
    for (;;) {
      const entry = this.#buffer.shift();
      if (entry) {
        if (entry.record.type === 'audio') {
          this.#bufferedBytes -= entry.record.data.length;
          if (this.#paused && this.#bufferedBytes < LOW_WATER_BYTES) {
            this.#paused = false;
            this.#onDrained();
          }
        }
        return entry;
      }
      if (this.#closed || this.#ended) return undefined;
      if (this.#failure) throw this.#failure;
      await new Promise<void>((resolve) => (this.#waiter = resolve));
    }
  }

  async *[Symbol.asyncIterator](): AsyncIterator<StreamEntry> {
    try {
      for (;;) {
        const entry = await this.next();
        if (!entry) return;
        yield entry;
      }
    } finally {
      this.close();
    }
  }

  #wake() {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.();
  }
}

/** Orders Redis Stream ids (`<ms>-<seq>`). */
export function compareIds(a: string, b: string): number {
  const [am = '0', as = '0'] = a.split('-');
  const [bm = '0', bs = '0'] = b.split('-');
  const d = BigInt(am) - BigInt(bm);
  if (d !== 0n) return d < 0n ? -1 : 1;
  const e = BigInt(as) - BigInt(bs);
  return e === 0n ? 0 : e < 0n ? -1 : 1;
}
