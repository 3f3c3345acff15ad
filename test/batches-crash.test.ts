import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { toFile } from 'openai';
import { startStack, type Stack } from './helpers/stack.ts';
import { decodedDuration } from './helpers/audio.ts';

/*
 * A worker SIGKILLed mid-batch: its active items are recovered by stall recovery on the other worker and rewrite
 * their files from the start; the batch completes with every item exactly once (one outcome, one output line,
 * counters equal to the item count, every file whole).
 */

const ITEMS = 24;

let stack: Stack;
let dataDir: string;
beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'chorus-batch-crash-'));
  stack = await startStack({
    redisUrl: inject('redisUrl'), workers: 2,
    apiEnv: { DATA_DIR: dataDir },
    workerEnv: { DATA_DIR: dataDir, WORKER_BATCH_CONCURRENCY: '2' },
  });
});
afterAll(async () => {
  await stack?.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

describe('batch survives a worker SIGKILL', () => {
  it('completes with every item exactly once, every file whole', async () => {
    const long = 'This batch item speaks for several seconds so that a worker dies while it is writing. '.repeat(5);
    const lines = Array.from({ length: ITEMS }, (_, i) =>
      JSON.stringify({ custom_id: `k-${i}`, method: 'POST', url: '/v1/audio/speech', body: { model: 'tts-1', voice: 'alloy', input: `${i}. ${long}`, response_format: i % 2 ? 'mp3' : 'wav' } }));
    const client = stack.client;
    const file = await client.files.create({ file: await toFile(Buffer.from(lines.join('\n')), 'in.jsonl'), purpose: 'batch' });
    const batch = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/audio/speech' as never, completion_window: '24h' });

    // Kill the first worker while it holds batch items (some items done, the batch far from over).
    const lane = stack.app.speech.queue('espeak', 'batch');
    const deadline = Date.now() + 30_000;
    for (;;) {
      const b = await client.batches.retrieve(batch.id);
      if (b.request_counts!.completed >= 2 && (await lane.getActiveCount()) >= 3) break;
      if (Date.now() > deadline) throw new Error('batch did not get going');
      await new Promise((r) => setTimeout(r, 50));
    }
    await stack.workers[0]!.stop('SIGKILL');

    let done = await client.batches.retrieve(batch.id);
    const end = Date.now() + 50_000;
    while (done.status !== 'completed' && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 250));
      done = await client.batches.retrieve(batch.id);
    }
    expect(done.status).toBe('completed');
    expect(done.request_counts).toEqual({ total: ITEMS, completed: ITEMS, failed: 0 });
    expect(await stack.redis.hlen(stack.keys.batchOutcomes(batch.id))).toBe(ITEMS);
    // Some item really was recovered from the dead worker.
    const jobs = await lane.getJobs(['completed']);
    expect(jobs.filter((j) => j.id!.startsWith(batch.id) && j.attemptsStarted > 1).length).toBeGreaterThan(0);

    const text = await (await client.files.content(done.output_file_id!)).text();
    const out = text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as {
      custom_id: string; response: { body: { file_id: string; bytes: number; duration_s: number } };
    });
    expect(out.map((l) => l.custom_id).sort()).toEqual(Array.from({ length: ITEMS }, (_, i) => `k-${i}`).sort());
    for (const l of out) {
      const audio = Buffer.from(await (await client.files.content(l.response.body.file_id)).arrayBuffer());
      expect(audio.length).toBe(l.response.body.bytes);
      // A retried item's file is its own audio once: not appended to a partial first attempt.
      expect(Math.abs((await decodedDuration(audio)) - l.response.body.duration_s), l.custom_id).toBeLessThan(0.1);
    }
  });
});
