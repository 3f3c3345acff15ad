import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeEach, describe, expect, inject, it, vi } from 'vitest';
import { RedisKeys } from '@chorus/shared';
// The suite's Redis (inject('redisUrl')): its type is declared with the global setup that provides it.
import type {} from '../../../../test/helpers/global-setup.ts';
import { FINISHING_MS, QueueAdmission, type AdmissionOutcome } from './queue-admission.ts';

const redis = new Redis(inject('redisUrl'));
const prefix = `test-admission-${randomUUID().slice(0, 8)}`;
const queue = new Queue('speech-espeak', { connection: redis.duplicate(), prefix });
// Admission's clock (performance.now()) stands still unless a test moves it: "moments ago" holds on a busy machine.
beforeEach(() => vi.useFakeTimers({ toFake: ['performance'] }));
afterEach(() => vi.useRealTimers());
afterAll(async () => {
  await queue.obliterate({ force: true });
  await queue.close();
  await redis.quit();
});

/** Admission on one slot of a real BullMQ queue (no worker: added jobs stay queued), with its reads counted. */
function oneSlot() {
  const outcomes: AdmissionOutcome[] = [];
  const admission = new QueueAdmission({
    redis, keys: new RedisKeys(prefix), maxDepth: 100, maxWaitMs: 50, queueTimeoutS: 30,
    slots: async () => 1, onOutcome: (o) => outcomes.push(o),
  });
  const looks = vi.spyOn(queue, 'getJobCounts');
  looks.mockClear();
  const admit = () => admission.admit(queue, 'espeak', 'tts-1', async () => 'enqueued');
  return { admission, outcomes, looks, admit };
}

describe('QueueAdmission (real Redis and BullMQ queue)', () => {
  it('takes a slot it saw come free moments ago without reading the counts, when nothing was queued', async () => {
    const { admission, outcomes, looks, admit } = oneSlot();
    await expect(admit()).resolves.toBe('enqueued'); // nothing active: a free slot, seen by a look
    expect(looks).toHaveBeenCalledTimes(1);
    admission.noteFreed(queue.name, 'job-0'); // the terminal record of the job whose slot that was
    admission.noteFreed(queue.name, 'job-1'); // another job's: its slot is kept for the next request
    await expect(admit()).resolves.toBe('enqueued');
    expect(looks).toHaveBeenCalledTimes(1); // no second read
    expect(outcomes).toEqual(['free_slot', 'freed_slot']);

    // Kept FINISHING_MS only; after that a request looks again.
    admission.noteFreed(queue.name, 'job-2');
    vi.advanceTimersByTime(FINISHING_MS + 1);
    await admit();
    expect(looks).toHaveBeenCalledTimes(2);
  });

  it('looks before taking a freed slot when its last look saw jobs queued', async () => {
    const { admission, looks, admit } = oneSlot();
    await queue.add('synthesize', { queued: true }); // a job waiting for the slot (another replica admitted it)
    await admit().catch(() => {}); // the look sees it queued
    expect(looks).toHaveBeenCalledTimes(1);
    admission.noteFreed(queue.name, 'job-3');
    await admit().catch(() => {});
    expect(looks.mock.calls.length).toBeGreaterThanOrEqual(2); // the freed slot is the queued job's: counts read first
    await queue.obliterate({ force: true });
  });

  it('does not take a freed slot without a look when a request took it through the counts before its record came', async () => {
    const { admission, looks, admit } = oneSlot();
    await admit(); // the counts show the slot free (BullMQ finished its job; its terminal record is still to come)
    admission.noteFreed(queue.name, 'job-4'); // the record: that slot is taken already
    await admit().catch(() => {});
    expect(looks).toHaveBeenCalledTimes(2); // looked, instead of taking the slot a second time
  });

  it('reads the counts before taking a freed slot while another replica relays starts on the queue', async () => {
    const other = oneSlot().admission; // a second API replica on the same queue
    other.noteStarted(queue.name);
    const starters = new RedisKeys(prefix).admissionStarters(queue.name);
    await expect.poll(() => redis.zcard(starters)).toBe(1);
    try {
      const { admission, looks, admit } = oneSlot();
      await admit(); // its look sees the other replica
      admission.noteFreed(queue.name, 'job-5'); // pays for the slot that look took
      admission.noteFreed(queue.name, 'job-6'); // kept
      await admit().catch(() => {});
      expect(looks).toHaveBeenCalledTimes(2); // the other replica may have admitted into it through the counts
    } finally {
      await redis.del(starters);
    }
  });
});
