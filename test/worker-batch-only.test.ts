import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { APIError } from 'openai';
import { liveWorkers, loadWorkerConfig, speechQueueName } from '@chorus/shared';
import { startStack, type Stack } from './helpers/stack.ts';
import { batchLine, submitBatch, untilBatch } from './helpers/batches.ts';

/*
 * WORKER_CONCURRENCY=0 is a batch-only worker (no realtime lane), as WORKER_BATCH_CONCURRENCY=0 is a realtime-only
 * one: what lets Kubernetes run a batch pool that KEDA scales to zero on the batch backlog (deploy/kubernetes). The
 * API must not route realtime requests to it (nobody would take them), while batches still run on it.
 */

describe('WORKER_CONCURRENCY=0 in the configuration', () => {
  it('means no realtime lane; with WORKER_BATCH_CONCURRENCY=0 too the worker is refused', () => {
    const cfg = loadWorkerConfig({ WORKER_CONCURRENCY: '0', WORKER_BATCH_CONCURRENCY: '3' });
    expect(cfg.concurrency).toBe(0);
    expect(cfg.batchConcurrency).toBe(3);
    expect(() => loadWorkerConfig({ WORKER_CONCURRENCY: '0', WORKER_BATCH_CONCURRENCY: '0' })).toThrow(/no lane/);
    expect(() => loadWorkerConfig({ WORKER_CONCURRENCY: '-1' })).toThrow(/WORKER_CONCURRENCY/);
  });
});

describe('a batch-only worker', { timeout: 120_000 }, () => {
  let stack: Stack;
  let dataDir: string;
  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'chorus-batch-only-'));
    stack = await startStack({
      redisUrl: inject('redisUrl'),
      // A short queue timeout: were a realtime job queued for this worker, the test would see queue_timeout soon.
      apiEnv: { DATA_DIR: dataDir, QUEUE_TIMEOUT_S: '5' },
      workerEnv: { DATA_DIR: dataDir, WORKER_CONCURRENCY: '0', WORKER_BATCH_CONCURRENCY: '2' },
    });
  });
  afterAll(async () => {
    await stack?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('announces no realtime slots, and realtime requests are refused at once rather than queued for nobody', async () => {
    const [info] = await liveWorkers(stack.redis, stack.keys);
    expect(info).toMatchObject({ engines: ['espeak'], concurrency: 0, batchConcurrency: 2 });

    const err = await stack.client.audio.speech
      .create({ model: 'tts-1', voice: 'alloy', input: 'Nobody takes realtime jobs here.' })
      .then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(APIError);
    expect((err as APIError).status).toBe(503);
    expect((err as APIError).code).toBe('model_unavailable');
    expect(await stack.redis.exists(`${stack.keys.bullPrefix()}:${speechQueueName('espeak')}:id`)).toBe(0);
    // Discovery lists what realtime requests can use.
    const models = await stack.client.models.list();
    expect(models.data).toEqual([]);
  });

  it('runs batch items', async () => {
    const batch = await submitBatch(stack.client, [
      batchLine('one', { input: 'First item of a batch-only pool.' }),
      batchLine('two', { input: 'Second item.', response_format: 'wav' }),
    ]);
    const done = await untilBatch(stack.client, batch.id, (b) => ['completed', 'failed', 'expired', 'cancelled'].includes(b.status), 90_000);
    expect(done.status).toBe('completed');
    expect(done.request_counts).toMatchObject({ total: 2, completed: 2, failed: 0 });
  });
});
