import http from 'node:http';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { encodeRecord, publishHeartbeat, type StreamRecord, type StreamJob } from '@chorus/shared';
import { startStack, postJson, type Stack } from './helpers/stack.ts';

/*
 * Failures after audio has started, for each framing. The test plays the worker at the stream-protocol seam: it
 * registers a heartbeat, takes the job from the queue and XADDs records itself, so the failure lands exactly
 * between two chunks.
 */

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ redisUrl: inject('redisUrl'), workers: 0 });
  await publishHeartbeat(stack.redis, stack.keys, {
    id: 'fake-worker', engines: ['espeak'], concurrency: 1, host: 'test', pid: process.pid, startedAt: Date.now(), accepting: true,
  }, 60_000);
  await stack.app.directory.refresh();
});
afterAll(async () => {
  await stack?.stop();
});

/** Waits for the job the request enqueued, then publishes one audio chunk and an error record. */
async function failAfterFirstChunk(chunk: Buffer) {
  const deadline = Date.now() + 30_000; // generous: a loaded machine takes its time to enqueue
  while (Date.now() < deadline) {
    const [job] = await stack.queue().getJobs(['prioritized', 'waiting']);
    if (job) {
      const data = job.data as StreamJob;
      const add = (r: StreamRecord) => stack.redis.xadd(data.streamKey, '*', ...(encodeRecord(r) as string[]));
      await add({ type: 'audio', seq: 0, offset: 0, data: chunk });
      await new Promise((r) => setTimeout(r, 100));
      await add({ type: 'error', seq: 1, code: 'engine_error', message: 'engine crashed' });
      await job.remove();
      return;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('no job appeared');
}

/** chorus_stream_failures_total{code="engine_error"} on the API, 0 before the first failure. */
async function engineFailuresCounted(): Promise<number> {
  const text = await (await fetch(`${stack.baseUrl}/metrics`)).text();
  return Number(/^chorus_stream_failures_total\{code="engine_error"\} (\d+)$/m.exec(text)?.[1] ?? 0);
}

/** Each failure is counted once: asserted per test as a delta, so every test stands alone (or under -t). */
async function expectCountedOnce(before: number) {
  await expect.poll(engineFailuresCounted, { timeout: 10_000 }).toBeGreaterThan(before);
  expect(await engineFailuresCounted()).toBe(before + 1);
}

describe('a failure after the stream started (each counted once in chorus_stream_failures_total)', () => {
  it('raw audio: the connection closes without the final chunk (truncated transfer)', async () => {
    const counted = await engineFailuresCounted();
    const outcome = new Promise<{ bytes: number; error?: string; complete: boolean }>((resolve) => {
      const req = http.request(`${stack.baseUrl}/v1/audio/speech`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
        let bytes = 0;
        res.on('data', (d: Buffer) => (bytes += d.length));
        res.on('error', (err) => resolve({ bytes, error: err.message, complete: res.complete }));
        res.on('close', () => resolve({ bytes, complete: res.complete }));
      });
      req.end(JSON.stringify({ model: 'tts-1', voice: 'alloy', input: 'Hello.', response_format: 'pcm' }));
    });
    await failAfterFirstChunk(Buffer.alloc(4800, 1));
    const r = await outcome;
    expect(r.bytes).toBe(4800);
    expect(r.complete).toBe(false);
    await expectCountedOnce(counted);
  });

  it('OpenAI SSE: speech.audio.error then [DONE]', async () => {
    const counted = await engineFailuresCounted();
    const res = postJson(stack, '/v1/audio/speech', {
      model: 'tts-1', voice: 'alloy', input: 'Hello.', response_format: 'pcm', stream_format: 'sse',
    });
    await failAfterFirstChunk(Buffer.alloc(480, 2));
    const events: EventSourceMessage[] = [];
    createParser({ onEvent: (e) => events.push(e) }).feed(await (await res).text());
    expect(events.map((e) => e.data).at(-1)).toBe('[DONE]');
    const json = events.slice(0, -1).map((e) => JSON.parse(e.data) as Record<string, unknown>);
    expect(json[0]).toMatchObject({ type: 'speech.audio.delta', audio: Buffer.alloc(480, 2).toString('base64') });
    expect(json[1]).toEqual({
      type: 'speech.audio.error',
      error: { message: 'engine crashed', type: 'server_error', code: 'engine_error' },
    });
    await expectCountedOnce(counted);
  });

  it('legacy SSE: an error event with the record seq as id', async () => {
    const counted = await engineFailuresCounted();
    const res = postJson(stack, '/api/generate_tts/stream', { text: 'Hello.', format: 'pcm' });
    await failAfterFirstChunk(Buffer.alloc(480, 3));
    const events: EventSourceMessage[] = [];
    createParser({ onEvent: (e) => events.push(e) }).feed(await (await res).text());
    const json = events.map((e) => JSON.parse(e.data) as Record<string, unknown>);
    expect(json.map((j) => j.type)).toEqual(['start', 'audio', 'error']);
    expect(json[2]).toEqual({ type: 'error', message: 'engine crashed', code: 'engine_error' });
    expect(events[2]!.id).toBe('1');
    await expectCountedOnce(counted);
  });

  it('a failure before any audio is a JSON error with its status', async () => {
    const res = postJson(stack, '/v1/audio/speech', { model: 'tts-1', voice: 'alloy', input: 'Hello.' });
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      const [job] = await stack.queue().getJobs(['prioritized', 'waiting']);
      if (job) {
        const data = job.data as StreamJob;
        await stack.redis.xadd(data.streamKey, '*', ...(encodeRecord({ type: 'error', seq: 0, code: 'engine_error', message: 'no voice data' }) as string[]));
        await job.remove();
        break;
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    const r = await res;
    expect(r.status).toBe(500);
    expect(await r.json()).toEqual({ error: { message: 'no voice data', type: 'server_error', param: null, code: 'engine_error' } });
  });
});
