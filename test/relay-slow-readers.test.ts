import http from 'node:http';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { startStack, postJson, type Stack } from './helpers/stack.ts';
import { decodedDuration } from './helpers/audio.ts';

/*
 * Issue 9, findings 6 and 10. STREAM_TTL_S is the configured minimum (10 s) so a reader can pause past it: the
 * worker's TTL counts from its last write, and a slow reader must still get the rest of its audio. Every relay
 * route ends with a terminal event, also when the stream vanished or Last-Event-ID is at the end.
 */

const TTL_S = 10;
/** ~4,000 characters: about 12 MB of wav, far more than socket buffers and the relay's high-water mark hold. */
const LONG = 'A reader that plays in real time is slower than the stream expiry, and must still hear every word. '.repeat(40);
let stack: Stack;

beforeAll(async () => {
  const ttl = { STREAM_TTL_S: String(TTL_S) };
  stack = await startStack({ redisUrl: inject('redisUrl'), apiEnv: ttl, workerEnv: ttl });
});
afterAll(async () => {
  await stack?.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitCompleted(jobId: string) {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const job = await stack.queue('espeak').getJob(jobId);
    if (job && (await job.getState()) === 'completed') return;
    if (Date.now() > deadline) throw new Error(`job ${jobId} did not complete`);
    await sleep(200);
  }
}

interface PausedRead {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** Reads everything left; rejects when nothing ends the response within `ms` (a hang). */
  rest(ms: number): Promise<Buffer>;
  first: Buffer;
}

/** Makes a request, takes its first chunk of body, and stops reading (the socket's buffers fill up). */
function pausedRead(url: string, init: { method?: string; headers?: Record<string, string>; body?: string }) {
  return new Promise<PausedRead>((resolve, reject) => {
    const req = http.request(url, { method: init.method ?? 'GET', headers: init.headers }, (res) => {
      res.once('data', (first: Buffer) => {
        res.pause();
        resolve({
          status: res.statusCode!, headers: res.headers, first,
          rest: (ms) => new Promise<Buffer>((done, fail) => {
            const parts: Buffer[] = [first];
            const timer = setTimeout(() => {
              req.destroy();
              fail(new Error(`response did not end within ${ms} ms (${Buffer.concat(parts).length} bytes read)`));
            }, ms);
            res.on('data', (d: Buffer) => parts.push(d));
            res.on('end', () => {
              clearTimeout(timer);
              done(Buffer.concat(parts));
            });
            res.on('error', (err) => {
              clearTimeout(timer);
              fail(err);
            });
            res.resume();
          }),
        });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(init.body);
  });
}

function sseEvents(text: string): EventSourceMessage[] {
  const events: EventSourceMessage[] = [];
  createParser({ onEvent: (e) => events.push(e) }).feed(text);
  return events;
}

describe('finding 6: a reader slower than STREAM_TTL_S keeps its stream', () => {
  it('raw audio stream and events replay, both paused past the TTL after the job finished, get every byte', async () => {
    const raw = await pausedRead(`${stack.baseUrl}/v1/audio/speech`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tts-1', voice: 'alloy', input: LONG, response_format: 'wav' }),
    });
    expect(raw.status).toBe(200);
    const jobId = String(raw.headers['x-job-id']);
    await waitCompleted(jobId);
    const replay = await pausedRead(`${stack.baseUrl}/api/jobs/${jobId}/events`, {});
    expect(replay.status).toBe(200);
    // The worker's last write is over (before its job completed); without a reader keeping it, the stream expires
    // TTL_S after it. Redis checks a key's TTL on every access, so 2 s past it is past for sure.
    await sleep((TTL_S + 2) * 1000);

    const [audio, sseBody] = await Promise.all([raw.rest(30_000), replay.rest(30_000)]);
    expect(audio.length).toBeGreaterThan(8_000_000);
    expect(await decodedDuration(audio, 'wav')).toBeCloseTo((audio.length - 44) / 48_000, 1);

    const events = sseEvents(sseBody.toString('utf8')).map((e) => ({ id: e.id, ...JSON.parse(e.data) }));
    const done = events.at(-1);
    expect(done?.type).toBe('done');
    expect(done.bytes).toBe(audio.length);
    const chunks = events.filter((e) => e.type === 'audio').map((e) => Buffer.from(e.audio, 'base64'));
    expect(Buffer.concat(chunks).equals(audio)).toBe(true);
  });

  it('a stream that vanishes under a paused reader ends its events with an error event, not a hang', async () => {
    // Its own finished long job (wav: a few MB, more than the relay and the socket hold for a paused reader).
    const res = await postJson(stack, '/v1/audio/speech', { model: 'tts-1', voice: 'alloy', input: LONG, response_format: 'wav' });
    expect(res.status).toBe(200);
    expect((await res.arrayBuffer()).byteLength).toBeGreaterThan(8_000_000);
    const jobId = res.headers.get('x-job-id')!;
    await waitCompleted(jobId);
    const paused = await pausedRead(`${stack.baseUrl}/api/jobs/${jobId}/events`, {});
    expect(paused.status).toBe(200);
    expect(await stack.redis.del(await streamKeyOf(jobId))).toBe(1);
    const text = (await paused.rest(40_000)).toString('utf8');
    const last = JSON.parse(sseEvents(text).at(-1)!.data) as { type: string; code: string };
    expect(last.type).toBe('error');
    expect(last.code).toBe('internal_error');
  });
});

async function streamKeyOf(jobId: string): Promise<string> {
  const job = await stack.queue('espeak').getJob(jobId);
  return (job!.data as { streamKey: string }).streamKey;
}

describe('finding 10: Last-Event-ID at or past the end', () => {
  it('answers with the terminal event and its id, whatever the id past it', async () => {
    const res = await postJson(stack, '/api/generate_tts/stream', { text: 'Short and done.', format: 'mp3' });
    const events = sseEvents(await res.text());
    const done = events.at(-1)!;
    expect(JSON.parse(done.data).type).toBe('done');
    const jobId = res.headers.get('x-job-id')!;
    await waitCompleted(jobId);
    for (const after of [Number(done.id), Number(done.id) + 7]) {
      const replay = await fetch(`${stack.baseUrl}/api/jobs/${jobId}/events`, {
        headers: { 'last-event-id': String(after) },
        signal: AbortSignal.timeout(20_000),
      });
      expect(replay.status).toBe(200);
      const got = sseEvents(await replay.text());
      expect(got.map((e) => e.id)).toEqual([done.id]);
      expect(JSON.parse(got[0]!.data)).toEqual(JSON.parse(done.data));
    }
  });
});
