import { afterEach, describe, expect, it } from 'vitest';
import { EncoderPool } from './encoder-pool.ts';

const RATE = 22_050;
let pool: EncoderPool | undefined;

afterEach(() => pool?.close());

/** Until `check` holds (refills run a turn after the taker's first output, or 100 ms after it took one). */
async function until(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not reached in 30 s');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('EncoderPool (real lame and ffmpeg)', () => {
  it('keeps one idle encoder per format until realtime work uses it, then `size`', async () => {
    pool = new EncoderPool(3);
    pool.warm([RATE]);
    expect(['mp3', 'opus', 'aac', 'flac'].map((f) => pool!.idleCount(f as 'mp3', RATE))).toEqual([1, 1, 1, 1]);

    const encoder = pool.acquire('mp3', false, RATE);
    const out: Buffer[] = [];
    encoder.attach((chunk) => out.push(chunk));
    await encoder.write(Buffer.alloc(RATE * 2)); // a second of silence
    await encoder.finish();
    expect(Buffer.concat(out).length).toBeGreaterThan(0);

    // mp3 is in use now: refilled to three. The formats nobody asked for stay at one.
    await until(() => pool!.idleCount('mp3', RATE) === 3);
    expect(['opus', 'aac', 'flac'].map((f) => pool!.idleCount(f as 'opus', RATE))).toEqual([1, 1, 1]);
    // Batch work starts its own and leaves the idle ones, and does not mark a format as used.
    pool.acquire('opus', true, RATE).destroy();
    await new Promise((r) => setTimeout(r, 200));
    expect(pool.idleCount('opus', RATE)).toBe(1);
  });

  it('keeps none with size 0', () => {
    pool = new EncoderPool(0);
    pool.warm([RATE]);
    expect(pool.idleCount('mp3', RATE)).toBe(0);
  });
});
