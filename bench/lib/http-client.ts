import http from 'node:http';

/**
 * One agent for every benchmark request: keep-alive (no TCP handshake inside the timings) and no pooling limit,
 * so N concurrent requests really are N concurrent connections (Node's default agent would queue them).
 */
export const AGENT = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 2048 });

export interface ChunkArrival {
  /** ms since the request was sent. */
  t: number;
  bytes: number;
}

export interface SpeechResult {
  status: number;
  /** ms from sending the request to the first body byte (NaN when none arrived). */
  ttfbMs: number;
  /** ms from sending the request to the end of the body. */
  totalMs: number;
  bytes: number;
  chunks: ChunkArrival[];
  jobId?: string;
  error?: string;
  /** Start time (performance.now()) — lets a benchmark line requests up with server-side timestamps. */
  startedAt: number;
  /** Date.now() when the request was sent. */
  sentAtEpochMs: number;
  /** The `retry-after-ms` header of a refusal (429/503), when it had one. */
  retryAfterMs?: number;
  /** `error.code` of a JSON error body (a non-200 answer). */
  errorCode?: string;
  /** The body, when asked for (keepBody). */
  body?: Buffer;
}

export interface SpeechRequestOptions {
  /**
   * Read no faster than this many bytes per second after the first byte (a player that consumes audio in
   * real time): the socket is paused while the client is ahead, so TCP backpressure reaches the server.
   */
  readBytesPerSec?: number;
  /** Keep every chunk's arrival (for underrun); otherwise only counts. @defaultValue true */
  keepChunks?: boolean;
  timeoutMs?: number;
  /** Keep the body bytes (result.body), e.g. to compare with a reference run. */
  keepBody?: boolean;
  /** Called once the response headers are in, with the result object that then fills up as chunks arrive. */
  onResponse?: (result: SpeechResult) => void;
}

/** POST /v1/audio/speech over raw http.request; resolves (never rejects) with timings and any error. */
export function speech(baseUrl: string, body: Record<string, unknown>, opts: SpeechRequestOptions = {}): Promise<SpeechResult> {
  const payload = JSON.stringify(body);
  const url = new URL('/v1/audio/speech', baseUrl);
  return new Promise((resolve) => {
    const startedAt = performance.now();
    const result: SpeechResult = {
      status: 0, ttfbMs: Number.NaN, totalMs: Number.NaN, bytes: 0, chunks: [], startedAt, sentAtEpochMs: Date.now(),
    };
    let settled = false;
    const parts: Buffer[] = [];
    const finish = (error?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      result.totalMs = performance.now() - startedAt;
      if (error) result.error = error;
      resolve(result);
    };
    const req = http.request(url, {
      method: 'POST',
      agent: AGENT,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
    });
    const timer = setTimeout(() => {
      req.destroy();
      finish('timeout');
    }, opts.timeoutMs ?? 120_000);
    req.on('error', (err) => finish(err.message));
    req.on('response', (res) => {
      result.status = res.statusCode ?? 0;
      const jobId = res.headers['x-job-id'];
      if (typeof jobId === 'string') result.jobId = jobId;
      const retryAfterMs = Number(res.headers['retry-after-ms']);
      if (Number.isFinite(retryAfterMs)) result.retryAfterMs = retryAfterMs;
      const errorBody: Buffer[] = [];
      if (result.status !== 200) {
        res.on('data', (chunk: Buffer) => errorBody.push(chunk));
        res.on('end', () => {
          try {
            result.errorCode = (JSON.parse(Buffer.concat(errorBody).toString()) as { error?: { code?: string } }).error?.code;
          } catch {
            // not JSON
          }
        });
      }
      opts.onResponse?.(result);
      let firstAt = 0;
      res.on('data', (chunk: Buffer) => {
        const t = performance.now() - startedAt;
        if (result.bytes === 0) {
          result.ttfbMs = t;
          firstAt = t;
        }
        result.bytes += chunk.length;
        if (opts.keepBody) parts.push(chunk);
        if (opts.keepChunks !== false) result.chunks.push({ t, bytes: chunk.length });
        if (opts.readBytesPerSec) {
          // How far ahead of a real-time reader we are; pause the socket until it catches up.
          const dueMs = (result.bytes / opts.readBytesPerSec) * 1000 - (t - firstAt);
          if (dueMs > 20) {
            res.pause();
            setTimeout(() => res.resume(), dueMs);
          }
        }
      });
      res.on('end', () => {
        if (opts.keepBody) result.body = Buffer.concat(parts);
      });
      res.on('end', () => finish(result.status === 200 ? undefined : `status ${result.status}`));
      res.on('error', (err) => finish(err.message));
      res.on('aborted', () => finish('aborted'));
      res.on('close', () => finish(res.complete ? undefined : 'closed before the end of the body'));
    });
    req.end(payload);
  });
}

/** The speech body every benchmark sends, with its own model/format/input. */
export function speechBody(input: string, format: string, model = 'tts-1'): Record<string, unknown> {
  return { model, voice: 'alloy', input, response_format: format };
}
