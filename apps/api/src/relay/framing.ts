import { ChorusError } from '@chorus/shared';
import type { EndRecord } from '@chorus/shared/stream-protocol';
import { errorFromRecord } from './first-record.ts';
import type { JobStream, StreamEntry } from './job-stream.ts';

/*
 * How the relay frames one job's records for each dialect. All framings read the same records, so the bytes are
 * the same whichever way a client asks.
 */

export interface RelayHooks {
  /** Called once, when the first audio bytes are handed to the socket. */
  onFirstAudio?: () => void;
  /** Called with the end record when the job finished. */
  onEnd?: (end: EndRecord) => void;
  /** Called when the job failed after audio had started flowing (the client already has a 200). */
  onError?: (code: string) => void;
}

/** Raw container bytes. A failure after the first byte rejects, which closes the connection mid-transfer. */
export async function* rawAudio(first: StreamEntry, stream: JobStream, hooks: RelayHooks = {}): AsyncGenerator<Buffer> {
  let entry: StreamEntry | undefined = first;
  let sent = false;
  while (entry) {
    const r = entry.record;
    if (r.type === 'audio') {
      if (!sent) hooks.onFirstAudio?.();
      sent = true;
      yield r.data;
    } else if (r.type === 'end') {
      hooks.onEnd?.(r);
      return;
    } else {
      if (sent) hooks.onError?.(r.code);
      throw errorFromRecord(r.code, r.message, r.param);
    }
    entry = await stream.next();
  }
  throw new Error('job stream closed before its end record');
}

/** `input_tokens` = input characters, `output_tokens` = audio duration in 20 ms frames (documented). */
export function usageFor(chars: number, durationS: number) {
  const output = Math.round(durationS / 0.02);
  return { input_tokens: chars, output_tokens: output, total_tokens: chars + output };
}

function sse(data: unknown): string {
  return `data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`;
}

/** OpenAI speech SSE: `speech.audio.delta`…, `speech.audio.done` with usage, `[DONE]`; errors in-band. */
export async function* openaiSse(
  first: StreamEntry,
  stream: JobStream,
  chars: number,
  hooks: RelayHooks = {},
): AsyncGenerator<string> {
  let end: EndRecord | undefined;
  try {
    for await (const chunk of rawAudio(first, stream, { ...hooks, onEnd: (e) => { end = e; hooks.onEnd?.(e); } })) {
      yield sse({ type: 'speech.audio.delta', audio: chunk.toString('base64') });
    }
  } catch (err) {
    const e = err as { message?: string; type?: string; code?: string };
    yield sse({
      type: 'speech.audio.error',
      error: { message: e.message ?? 'synthesis failed', type: e.type ?? 'server_error', code: e.code ?? 'internal_error' },
    });
    yield sse('[DONE]');
    return;
  }
  yield sse({ type: 'speech.audio.done', usage: usageFor(chars, end?.durationS ?? 0) });
  yield sse('[DONE]');
}

/**
 * Whole files (`stream: false`, `/api/generate_tts`) are served without holding them: {@link awaitEnd} follows the
 * job's stream, dropping its bytes, until the end record gives the exact size for `Content-Length`; then
 * {@link replayFile} relays the stream again from its first entry (the stream is retained STREAM_TTL_S after its
 * last write, and the hub keeps renewing that while it has readers), patching a streamed WAV header's sizes on
 * the way. API memory per whole-file request is the relay's bound per reader, not the file: at most
 * HIGH_WATER_BYTES buffered plus one XREAD batch (COUNT_PER_STREAM records of at most 256 KiB, the worker's
 * MAX_RECORD_BYTES), about 2.5 MiB, plus the socket's buffers. The cost: the audio crosses from Redis twice.
 */
export async function awaitEnd(first: StreamEntry, stream: JobStream, hooks: RelayHooks = {}): Promise<EndRecord> {
  let end: EndRecord | undefined;
  for await (const chunk of rawAudio(first, stream, { ...hooks, onEnd: (e) => { end = e; hooks.onEnd?.(e); } })) {
    void chunk; // dropped: replayFile reads these bytes again
  }
  return end!;
}

/** WAV header bytes this relay patches (RIFF size at 4, data size at 40). */
const WAV_HEADER_BYTES = 44;

/** Relays a finished stream from its start (see {@link awaitEnd}); fails if it does not add up to `end.bytes`. */
export async function* replayFile(stream: JobStream, end: EndRecord, wav: boolean): AsyncGenerator<Buffer> {
  let sent = 0;
  // Held back until the whole WAV header is there (at most 44 bytes plus one record), then patched as one copy:
  // records are shared with other readers of the same stream and are never written to.
  let head: Buffer[] | undefined = wav ? [] : undefined;
  let headBytes = 0;
  for await (const { record: r } of stream) {
    if (r.type === 'error') throw errorFromRecord(r.code, r.message, r.param);
    if (r.type === 'end') break;
    sent += r.data.length;
    if (!head) {
      yield r.data;
      continue;
    }
    head.push(r.data);
    headBytes += r.data.length;
    if (headBytes < WAV_HEADER_BYTES) continue;
    const patched = fixWavSizes(Buffer.concat(head), end.bytes);
    head = undefined;
    yield patched;
  }
  if (head && headBytes > 0) yield Buffer.concat(head);
  if (sent !== end.bytes) throw new Error(`replayed ${sent} of ${end.bytes} bytes`);
}

/** Rewrites the 0xFFFFFFFF size fields of a streamed 44-byte WAV header in place; `total` = whole file size. */
export function fixWavSizes(wav: Buffer, total = wav.length): Buffer {
  if (wav.length >= 44 && wav.toString('ascii', 0, 4) === 'RIFF' && wav.toString('ascii', 36, 40) === 'data') {
    wav.writeUInt32LE(total - 8, 4);
    wav.writeUInt32LE(total - 44, 40);
  }
  return wav;
}

export interface LegacySseOptions {
  jobId: string;
  format: string;
  sampleRate: number;
  /** Records with seq ≤ this were already delivered (Last-Event-ID); undefined = from the start. */
  afterSeq?: number;
}

function legacyEvent(data: unknown, id?: number): string {
  return `${id === undefined ? '' : `id: ${id}\n`}data: ${JSON.stringify(data)}\n\n`;
}

/**
 * Legacy SSE: `start` (only when not resuming), one `audio` event per record with `id: <seq>`, then `done` or
 * `error` with the terminal record's seq as id. A client that reconnects with `Last-Event-ID: k` gets exactly the
 * records after k, and always the terminal event (also when k is at or past it): an EventSource that got no
 * terminal event reconnects forever. A stream that fails (vanished, Redis lost) ends with an `error` event
 * without an id, never with a silent close or a hang.
 */
export async function* legacySse(
  entries: AsyncIterable<StreamEntry>,
  opts: LegacySseOptions,
  hooks: RelayHooks = {},
): AsyncGenerator<string> {
  if (opts.afterSeq === undefined) {
    yield legacyEvent({ type: 'start', job_id: opts.jobId, format: opts.format, sample_rate: opts.sampleRate });
  }
  let sent = false;
  try {
    for await (const { record: r } of entries) {
      if (opts.afterSeq !== undefined && r.seq <= opts.afterSeq && r.type === 'audio') continue;
      if (r.type === 'audio') {
        if (!sent) hooks.onFirstAudio?.();
        sent = true;
        yield legacyEvent({ type: 'audio', seq: r.seq, audio: r.data.toString('base64') }, r.seq);
      } else if (r.type === 'end') {
        hooks.onEnd?.(r);
        yield legacyEvent(
          { type: 'done', job_id: opts.jobId, duration_s: r.durationS, bytes: r.bytes, chars: r.chars },
          r.seq,
        );
        return;
      } else {
        if (sent) hooks.onError?.(r.code);
        const e = errorFromRecord(r.code, r.message, r.param);
        yield legacyEvent({ type: 'error', message: e.message, code: e.code }, r.seq);
        return;
      }
    }
  } catch (err) {
    const e = err instanceof ChorusError ? err : new ChorusError('TTS_ERR_INTERNAL', 'The audio stream failed.');
    if (sent) hooks.onError?.(e.code);
    yield legacyEvent({ type: 'error', message: e.message, code: e.code });
    return;
  }
  // Closed by its reader (the client went away): nothing is listening any more.
}

/** Prepends an already-read entry to the rest of a stream. */
export async function* withFirst(first: StreamEntry, stream: JobStream): AsyncGenerator<StreamEntry> {
  yield first;
  for await (const entry of stream) yield entry;
}
