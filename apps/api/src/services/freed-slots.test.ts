import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FINISHING_MS, FreedSlots } from './queue-admission.ts';

beforeEach(() => vi.useFakeTimers({ toFake: ['performance', 'Date', 'setTimeout', 'clearTimeout'] }));
afterEach(() => vi.useRealTimers());

/** Requests arriving every `gapMs`, `n` of them; the last one's arrival time. */
function arrivals(slots: FreedSlots, n: number, gapMs: number): number {
  let at = 0;
  for (let i = 0; i < n; i++) {
    if (i > 0) vi.advanceTimersByTime(gapMs);
    at = slots.arrived();
  }
  return at;
}

describe('FreedSlots', () => {
  it('hands a freed slot to the newest waiter; a newer one displaces an older', async () => {
    const slots = new FreedSlots();
    const at = arrivals(slots, 20, 20);
    const older = slots.wait(FINISHING_MS, at);
    vi.advanceTimersByTime(2);
    const newer = slots.wait(FINISHING_MS, slots.arrived());
    await expect(older).resolves.toEqual({ outcome: 'displaced' });
    vi.advanceTimersByTime(3);
    slots.freed('job-1');
    await expect(newer).resolves.toEqual({ outcome: 'granted', jobId: 'job-1' });
    expect(slots.take()).toBeUndefined();
  });

  it('keeps the slot for the next arrival when the waiter has waited over a quarter of the usual gap', async () => {
    const slots = new FreedSlots();
    const at = arrivals(slots, 20, 20); // one request every 20 ms: the next is due 20 ms after the last
    const waiter = slots.wait(FINISHING_MS, at);
    vi.advanceTimersByTime(7); // over 5 ms (a quarter), under 10 (half)
    slots.freed('job-1');
    await expect(waiter).resolves.toEqual({ outcome: 'displaced' });
    vi.advanceTimersByTime(13);
    slots.arrived();
    expect(slots.take()).toBe('job-1'); // the next request finds it kept
  });

  it('gives the slot to a waiter that has waited under a quarter of the usual gap', async () => {
    const slots = new FreedSlots();
    const at = arrivals(slots, 20, 20);
    const waiter = slots.wait(FINISHING_MS, at);
    vi.advanceTimersByTime(4);
    slots.freed('job-1');
    await expect(waiter).resolves.toEqual({ outcome: 'granted', jobId: 'job-1' });
  });

  it('gives the slot to a waiter of any age when requests come further apart than FINISHING_MS', async () => {
    const slots = new FreedSlots();
    const at = arrivals(slots, 20, 3 * FINISHING_MS);
    const waiter = slots.wait(FINISHING_MS, at);
    vi.advanceTimersByTime(FINISHING_MS - 5);
    slots.freed('job-1');
    await expect(waiter).resolves.toEqual({ outcome: 'granted', jobId: 'job-1' });
  });

  it('follows a burst after a long pause within ~20 requests', async () => {
    const slots = new FreedSlots();
    slots.arrived();
    vi.advanceTimersByTime(3_600_000);
    let at = arrivals(slots, 5, 20);
    const early = slots.wait(FINISHING_MS, at);
    vi.advanceTimersByTime(15);
    slots.freed('job-1'); // the mean gap still remembers the pause: granted
    await expect(early).resolves.toEqual({ outcome: 'granted', jobId: 'job-1' });
    vi.advanceTimersByTime(5);
    at = arrivals(slots, 20, 20);
    const later = slots.wait(FINISHING_MS, at);
    vi.advanceTimersByTime(15);
    slots.freed('job-2');
    await expect(later).resolves.toEqual({ outcome: 'displaced' });
  });

  it('keeps a slot freed with nobody waiting for FINISHING_MS only', () => {
    const slots = new FreedSlots();
    slots.freed('job-1');
    vi.advanceTimersByTime(FINISHING_MS + 1);
    expect(slots.take()).toBeUndefined();
    slots.freed('job-2');
    vi.advanceTimersByTime(FINISHING_MS - 10);
    expect(slots.take()).toBe('job-2');
  });

  it('a slot taken through the counts before its terminal record came is not freed again by that record', async () => {
    const slots = new FreedSlots();
    slots.takeSeen(); // admitted into a slot the counts showed free; nothing kept here yet
    slots.freed('job-1'); // that slot's record, late
    expect(slots.take()).toBeUndefined();
    const at = arrivals(slots, 1, 0);
    const waiter = slots.wait(FINISHING_MS, at);
    slots.freed('job-2'); // the next one frees a slot again
    await expect(waiter).resolves.toEqual({ outcome: 'granted', jobId: 'job-2' });

    slots.takeSeen(); // a debt no record pays (a slot another replica's job freed) lapses after FINISHING_MS
    vi.advanceTimersByTime(FINISHING_MS + 1);
    slots.freed('job-3');
    expect(slots.take()).toBe('job-3');
  });
});
