import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import OpenAI from 'openai';
import type { Batch } from 'openai/resources/batches';
import { startStack, type Stack } from './helpers/stack.ts';
import { decodedDuration } from './helpers/audio.ts';
import { batchLine, jsonlFile, submitBatch, untilBatch } from './helpers/batches.ts';

/*
 * A batch's life outside the happy path: validation in the background (`validating` until a replica's lifecycle
 * worker reads the file), a cancel that comes while it validates, the completion window closing on a batch that is
 * still running (`expired`, with `batch_expired` error lines), and the per-key limits (MAX_OPEN_BATCHES,
 * MAX_BATCH_ITEMS). Pausing the lifecycle queue (BullMQ's own pause: no replica takes its jobs) stands for "no API
 * replica has got to it yet", which makes `validating` last as long as a test needs.
 */

const line = batchLine;

let stack: Stack;
let dataDir: string;
let a: OpenAI;
let b: OpenAI;
beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'chorus-batch-life-'));
  stack = await startStack({
    redisUrl: inject('redisUrl'),
    apiEnv: { API_KEYS: 'sk-a,sk-b', DATA_DIR: dataDir, MAX_OPEN_BATCHES: '2', MAX_BATCH_ITEMS: '150' },
    workerEnv: { DATA_DIR: dataDir, WORKER_BATCH_CONCURRENCY: '1' },
  });
  [a, b] = ['sk-a', 'sk-b'].map((k) => new OpenAI({ baseURL: `${stack.baseUrl}/v1`, apiKey: k, maxRetries: 0 })) as [OpenAI, OpenAI];
});
afterAll(async () => {
  await stack?.app.batches.lifecycle.resume().catch(() => {});
  await stack?.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

const submit = (client: OpenAI, lines: string[], window = '24h') => submitBatch(client, lines, { window });

const until = (client: OpenAI, id: string, done: (b: Batch) => boolean, timeoutMs = 60_000) => untilBatch(client, id, done, timeoutMs);

const jsonl = jsonlFile;

/** Jobs of `batchId` still on the espeak batch lane (waiting, prioritized, delayed or active). */
async function queuedItems(batchId: string): Promise<number> {
  const lane = stack.app.speech.queue('espeak', 'batch');
  const jobs = await lane.getJobs(['waiting', 'prioritized', 'delayed', 'active']);
  return jobs.filter((j) => j.id?.startsWith(batchId)).length;
}

describe('batch lifecycle', () => {
  it('stays validating until a replica reads the file; a cancel then ends it cancelled with nothing queued', async () => {
    await stack.app.batches.lifecycle.pause();
    let batch: Batch;
    try {
      batch = await submit(a, Array.from({ length: 5 }, (_, i) => line(`v-${i}`, { input: `Item ${i}.` })));
      expect(batch.status).toBe('validating');
      await new Promise((r) => setTimeout(r, 500));
      expect((await a.batches.retrieve(batch.id)).status).toBe('validating');
      const cancelling = await a.batches.cancel(batch.id);
      expect(cancelling.status).toBe('cancelling');
      expect(cancelling.cancelling_at).not.toBeNull();
    } finally {
      await stack.app.batches.lifecycle.resume();
    }
    const done = await until(a, batch.id, (x) => x.status === 'cancelled');
    expect(done.in_progress_at).toBeNull();
    expect(done.request_counts).toEqual({ total: 0, completed: 0, failed: 0 });
    expect(await queuedItems(batch.id)).toBe(0);
    expect(await stack.redis.exists(stack.keys.batchOutcomes(batch.id))).toBe(0);
  });

  it('the completion window closes mid-batch: waiting items become batch_expired error lines, finished ones stay in the output; the batch ends expired', async () => {
    // 120 items of ~5 s of speech each on one batch slot: far more than fits in 3 s on any machine.
    const long = 'An item long enough that one worker cannot speak them all before the window closes. '.repeat(4);
    const lines = Array.from({ length: 120 }, (_, i) => line(`e-${i}`, { input: `${i}. ${long}`, response_format: 'mp3' }));
    const created = await submit(a, lines, '3s');
    expect(created.completion_window).toBe('3s');
    expect(created.expires_at).toBe(created.created_at + 3);
    const done = await until(a, created.id, (x) => ['expired', 'completed', 'failed'].includes(x.status));
    expect(done.status).toBe('expired');
    expect(done.expired_at).toBeGreaterThanOrEqual(created.created_at + 3);
    expect(done.in_progress_at).not.toBeNull();
    const { total, completed, failed } = done.request_counts!;
    expect(total).toBe(120);
    expect(completed + failed).toBe(120);
    expect(failed).toBeGreaterThan(0);

    const errors = await jsonl<{ custom_id: string; response: null; error: { code: string; message: string } }>(a, done.error_file_id!);
    expect(errors.length).toBe(failed);
    for (const e of errors) {
      expect(e.response).toBeNull();
      expect(e.error.code).toBe('batch_expired');
      expect(e.error.message).toMatch(/completion window expired/);
    }
    const ids = new Set(errors.map((e) => e.custom_id));
    if (completed > 0) {
      const out = await jsonl<{ custom_id: string; response: { body: { file_id: string; duration_s: number } } }>(a, done.output_file_id!);
      expect(out.length).toBe(completed);
      for (const l of out) ids.add(l.custom_id);
      const audio = Buffer.from(await (await a.files.content(out[0]!.response.body.file_id)).arrayBuffer());
      expect(Math.abs((await decodedDuration(audio)) - out[0]!.response.body.duration_s)).toBeLessThan(0.1);
    }
    expect(ids.size).toBe(120); // every item accounted for once, in one file or the other
    expect(await queuedItems(created.id)).toBe(0);
  });

  it('MAX_OPEN_BATCHES per key: the next create is a 429 until one ends; other keys are not held back', async () => {
    await stack.app.batches.lifecycle.pause();
    const open: Batch[] = [];
    try {
      for (let i = 0; i < 2; i++) open.push(await submit(b, [line(`o-${i}`, { input: 'Open.' })]));
      const err = await submit(b, [line('o-3', { input: 'One too many.' })]).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OpenAI.APIError);
      expect(err).toMatchObject({ status: 429, type: 'rate_limit_error', code: 'too_many_open_batches', param: null });
      expect((err as InstanceType<typeof OpenAI.APIError>).headers?.get('retry-after')).toBeTruthy();
      // Another key has its own count.
      const other = await submit(a, [line('other', { input: 'Mine.' })]);
      expect(other.status).toBe('validating');
      await a.batches.cancel(other.id);
      // A cancel that is still settling keeps its slot (the batch is open until it ends).
      await b.batches.cancel(open[0]!.id);
      await expect(submit(b, [line('o-4', { input: 'Still too many.' })])).rejects.toMatchObject({ status: 429 });
    } finally {
      await stack.app.batches.lifecycle.resume();
    }
    await until(b, open[0]!.id, (x) => x.status === 'cancelled');
    const next = await submit(b, [line('o-5', { input: 'Room again.' })]);
    expect(next.status).toBe('validating');
    for (const x of [open[1]!, next]) await until(b, x.id, (y) => y.status === 'completed');
  });

  it('MAX_BATCH_ITEMS: a file with more requests fails validation at the first one over', async () => {
    const lines = Array.from({ length: 151 }, (_, i) => line(`m-${i}`, { input: 'x' }));
    const batch = await until(a, (await submit(a, lines)).id, (x) => x.status !== 'validating');
    expect(batch.status).toBe('failed');
    expect(batch.errors?.data).toEqual([
      expect.objectContaining({ line: 151, code: 'too_many_requests', message: expect.stringContaining('at most 150') }),
    ]);
    expect(batch.request_counts?.total).toBe(0);
  });
});
