import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import OpenAI, { toFile } from 'openai';
import type { Batch } from 'openai/resources/batches';
import { BATCH_LIFECYCLE_QUEUE, batchItemJobId, liveWorkers, RedisKeys, speechQueueName } from '@chorus/shared';
import { freePort } from '@chorus/shared/free-port';
import { deletePrefixKeys, spawnApi, spawnWorker, type WorkerProcess } from './helpers/stack.ts';

/*
 * The API process validating a batch is SIGKILLed mid-file. Validation is a BullMQ job on the lifecycle queue, so
 * another API process (started after the kill, like a replacement replica) takes it over by stall recovery and
 * validates and queues the batch: it reaches `in_progress` with every item queued exactly once (job ids come from
 * the batch id and the line). The batch is then cancelled so the test need not run thousands of items.
 */

const ITEMS = 4000;
/**
 * BATCH_LIFECYCLE_LOCK_MS for both APIs: the dead one's validate job is taken over at the first stall check (every
 * 2 s) after its lock expired, within ~6 s of the kill instead of the default's ~30 s. Still BullMQ's stall recovery.
 */
const LIFECYCLE_LOCK_MS = 4000;

let dataDir: string;
let redis: Redis;
let lifecycle: Queue;
let lane: Queue;
let keys: RedisKeys;
let worker: WorkerProcess;
const apis: Awaited<ReturnType<typeof spawnApi>>[] = [];
let env: Record<string, string>;

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'chorus-takeover-'));
  const prefix = `t${randomUUID().replace(/-/g, '').slice(0, 12)}`;
  keys = new RedisKeys(prefix);
  env = {
    REDIS_URL: inject('redisUrl'), REDIS_PREFIX: prefix, LOG_LEVEL: 'warn', DATA_DIR: dataDir,
    BATCH_LIFECYCLE_LOCK_MS: String(LIFECYCLE_LOCK_MS),
  };
  redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
  lifecycle = new Queue(BATCH_LIFECYCLE_QUEUE, { connection: redis, prefix: keys.bullPrefix() });
  lane = new Queue(speechQueueName('espeak', 'batch'), { connection: redis, prefix: keys.bullPrefix() });
  worker = spawnWorker({ ...env, HEARTBEAT_INTERVAL_MS: '500', WORKER_BATCH_CONCURRENCY: '1' });
  const deadline = Date.now() + 30_000;
  while ((await liveWorkers(redis, keys)).length < 1) {
    if (Date.now() > deadline) throw new Error(`worker did not start:\n${worker.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
});

afterAll(async () => {
  for (const api of apis) api.process.kill('SIGKILL');
  await worker?.stop('SIGKILL');
  await lifecycle?.close();
  await lane?.close();
  if (redis) {
    await deletePrefixKeys(redis, keys.prefix);
    redis.disconnect();
  }
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

const client = (baseUrl: string) => new OpenAI({ baseURL: `${baseUrl}/v1`, apiKey: 'unused', maxRetries: 0 });

describe('an API killed while it validates a batch', () => {
  it('another API takes the validation over: the batch goes in_progress with every item queued exactly once', async () => {
    const first = await spawnApi(env, await freePort());
    apis.push(first);
    const lines = Array.from({ length: ITEMS }, (_, i) =>
      JSON.stringify({ custom_id: `t-${i}`, method: 'POST', url: '/v1/audio/speech', body: { model: 'tts-1', voice: 'alloy', input: `Item ${i}.` } }));
    const a = client(first.baseUrl);
    const file = await a.files.create({ file: await toFile(Buffer.from(lines.join('\n')), 'in.jsonl'), purpose: 'batch' });
    const created = await a.batches.create({ input_file_id: file.id, endpoint: '/v1/audio/speech' as never, completion_window: '24h' });
    expect(created.status).toBe('validating');

    // Kill it while its lifecycle worker holds the validate job (before the items are all queued).
    const seen = Date.now();
    for (;;) {
      if ((await lifecycle.getActiveCount()) > 0) break;
      const h = await redis.hgetall(keys.batch(created.id));
      if (h.enqueued) throw new Error('validation finished before the test saw it running; make the file longer');
      if (Date.now() - seen > 30_000) throw new Error(`validation never started:\n${first.output()}`);
      await new Promise((r) => setTimeout(r, 5));
    }
    first.process.kill('SIGKILL');
    await new Promise((r) => first.process.once('exit', r));
    const at = await redis.hgetall(keys.batch(created.id));
    expect(at.enqueued).toBeUndefined(); // killed mid-way, in the first pass or the second
    const queuedAtKill = (await lane.getJobCountByTypes('waiting', 'prioritized', 'active', 'completed', 'failed', 'delayed'));
    console.log(`killed the validating API with the batch ${at.status}, ${queuedAtKill} of ${ITEMS} items queued`);

    // A replacement API: its lifecycle worker finds the stalled job (lock LIFECYCLE_LOCK_MS, checks every half of it)
    // and redoes it.
    const second = await spawnApi(env, await freePort());
    apis.push(second);
    const b = client(second.baseUrl);
    const deadline = Date.now() + 120_000;
    let batch: Batch;
    for (;;) {
      batch = await b.batches.retrieve(created.id);
      if (batch.status === 'in_progress' && (await redis.hget(keys.batch(created.id), 'enqueued'))) break;
      if (Date.now() > deadline) throw new Error(`batch still ${batch.status} after the takeover:\n${second.output()}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(batch.request_counts?.total).toBe(ITEMS);

    // Every item queued once: each derived job id exists (or already ran and has its outcome), nothing else does.
    const ids = new Set<string>();
    for (const state of ['waiting', 'prioritized', 'active', 'completed', 'failed', 'delayed'] as const) {
      for (const j of await lane.getJobs([state], 0, -1)) ids.add(j.id!);
    }
    const outcomes = await redis.hkeys(keys.batchOutcomes(created.id));
    for (let i = 0; i < ITEMS; i++) {
      if (!ids.has(batchItemJobId(created.id, i))) expect(outcomes).toContain(`t-${i}`);
    }
    expect([...ids].every((id) => /^batch_\w+-\d+$/.test(id) && Number(id.split('-')[1]) < ITEMS)).toBe(true);
    expect(await lane.count()).toBeLessThanOrEqual(ITEMS);

    // Cancel: every item ends with exactly one outcome.
    await b.batches.cancel(created.id);
    const end = Date.now() + 120_000;
    while ((batch = await b.batches.retrieve(created.id)).status !== 'cancelled') {
      if (Date.now() > end) throw new Error(`batch still ${batch.status}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(await redis.hlen(keys.batchOutcomes(created.id))).toBe(ITEMS);
    expect(batch.request_counts!.total).toBe(ITEMS);
    expect(batch.request_counts!.failed).toBe(0);
  });
});
