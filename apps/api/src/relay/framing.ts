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
      throw errorFromRecord(r.code, r.message);
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

/** The whole file, for `stream: false`. A streamed WAV header gets its exact sizes. */
export async function collectAll(first: StreamEntry, stream: JobStream, hooks: RelayHooks = {}) {
  const parts: Buffer[] = [];
  let end: EndRecord | undefined;
  for await (const chunk of rawAudio(first, stream, { ...hooks, onEnd: (e) => { end = e; hooks.onEnd?.(e); } })) {
    parts.push(chunk);
  }
  const body = Buffer.concat(parts);
  return { body, end: end! };
}

/** Rewrites the 0xFFFFFFFF size fields of a streamed 44-byte WAV header in place. */
export function fixWavSizes(wav: Buffer): Buffer {
  if (wav.length >= 44 && wav.toString('ascii', 0, 4) === 'RIFF' && wav.toString('ascii', 36, 40) === 'data') {
    wav.writeUInt32LE(wav.length - 8, 4);
    wav.writeUInt32LE(wav.length - 44, 40);
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
 * records after k.
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
  for await (const { record: r } of entries) {
    if (opts.afterSeq !== undefined && r.seq <= opts.afterSeq) continue;
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
      const e = errorFromRecord(r.code, r.message);
      yield legacyEvent({ type: 'error', message: e.message, code: e.code }, r.seq);
      return;
    }
  }
}

/** Prepends an already-read entry to the rest of a stream. */
export async function* withFirst(first: StreamEntry, stream: JobStream): AsyncGenerator<StreamEntry> {
  yield first;
  for await (const entry of stream) yield entry;
}
