import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Queue } from 'bullmq';
import {
  JOB_CATALOG, JOB_NAMES, newJobId, PRIORITY, speechQueueName, TtsJob, VoiceCatalog, type TtsJobInput,
} from '@chorus/shared';
import { startStack, type Stack } from './helpers/stack.ts';

/*
 * Realtime requests and batch items run in separate lanes (queues) with their own worker slots: a batch backlog
 * cannot take the slot a realtime request needs. One realtime slot and one batch slot here, 30 long batch items.
 */

let stack: Stack;
let batch: Queue;
beforeAll(async () => {
  stack = await startStack({
    redisUrl: inject('redisUrl'),
    workerEnv: { WORKER_CONCURRENCY: '1', WORKER_BATCH_CONCURRENCY: '1' },
  });
  batch = new Queue(speechQueueName('espeak', 'batch'), { connection: stack.redis, prefix: stack.keys.bullPrefix() });
});
afterAll(async () => {
  await batch?.obliterate({ force: true }).catch(() => {});
  await batch?.close();
  await stack?.stop();
});

function batchJob(text: string) {
  const jobId = newJobId();
  const data: TtsJobInput = {
    v: 1, requestId: `req_${randomBytes(16).toString('hex')}`, streamKey: stack.keys.audioStream('batchtest', jobId),
    engine: 'espeak', model: 'tts-1', text, speaker: VoiceCatalog.load().resolve('alloy')!, format: 'mp3', speed: 1,
    route: 'batch', priority: 'batch', enqueuedAt: Date.now(),
  };
  return {
    name: JOB_NAMES.synthesize,
    data: TtsJob.parse(data),
    opts: { ...JOB_CATALOG[JOB_NAMES.synthesize].options, jobId, priority: PRIORITY.batch },
  };
}

describe('batch lane', () => {
  it('a realtime request is served at once while a batch backlog runs in its own slot', { timeout: 180_000 }, async () => {
    // ~12,000 characters: several seconds of work per item, so a realtime request queued behind one would show.
    const long = 'A long batch item keeps its worker slot busy for a while, sentence after sentence. '.repeat(145);
    await batch.addBulk(Array.from({ length: 30 }, () => batchJob(long)));
    await expect.poll(() => batch.getActiveCount(), { timeout: 30_000 }).toBe(1);

    const t0 = performance.now();
    const res = await stack.client.audio.speech.create({ model: 'tts-1', voice: 'alloy', input: 'Realtime first.', response_format: 'pcm' });
    const audio = Buffer.from(await res.arrayBuffer());
    const elapsedMs = performance.now() - t0;
    expect(audio.length).toBeGreaterThan(24_000);
    expect(await batch.getPrioritizedCount()).toBeGreaterThan(20);

    // The batch lane makes progress too.
    await expect.poll(() => batch.getCompletedCount(), { timeout: 120_000 }).toBeGreaterThan(0);
    const [done] = await batch.getCompleted(0, 0);
    const itemMs = done!.finishedOn! - done!.processedOn!;
    console.log(`batch lane: realtime request served in ${elapsedMs.toFixed(0)} ms; one batch item took ${itemMs} ms`);
    // Sooner than one batch item takes, let alone the backlog behind it: measured as a ratio (both stretch alike on
    // a loaded machine). A realtime request queued behind the active item would wait for most of it.
    expect(elapsedMs).toBeLessThan(itemMs / 3);
  });
});
