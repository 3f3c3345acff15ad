import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { decodeRecord } from '@chorus/shared/stream-protocol';
import { StreamWriter, readStreamPosition } from '../apps/worker/src/stream/stream-writer.ts';

const redis = new Redis(inject('redisUrl'));
afterAll(() => redis.quit());

describe('StreamWriter (real Redis)', () => {
  it('publishes audio records in order with the stream TTL, then the end record', async () => {
    const key = `test:stream-writer:${randomUUID()}`;
    const writer = new StreamWriter(redis, key, 120, { seq: 0, bytes: 0, finished: false });
    const audio = Buffer.from(Array.from({ length: 40_000 }, (_, i) => i % 251));
    for (let at = 0; at < audio.length; at += 3_000) writer.push(audio.subarray(at, at + 3_000));
    await writer.end({ durationS: 1.5, chars: 12 });

    const records = (await redis.xrangeBuffer(key, '-', '+')).map(([, fields]) => decodeRecord(fields));
    expect(records.map((r) => r.seq)).toEqual(records.map((_, i) => i));
    const bytes = Buffer.concat(records.flatMap((r) => (r.type === 'audio' ? [r.data] : [])));
    expect(bytes.equals(audio)).toBe(true);
    expect(records.at(-1)).toMatchObject({ type: 'end', bytes: audio.length, durationS: 1.5, chars: 12 });
    const ttl = await redis.ttl(key);
    expect(ttl).toBeGreaterThan(100);
    expect(ttl).toBeLessThanOrEqual(120);
    expect(await readStreamPosition(redis, key)).toEqual({ seq: records.length, bytes: audio.length, finished: true });
    await redis.del(key);
  });

  it('carries the latest restart point its bytes reached; a later attempt resumes there and publishes only what is new', async () => {
    const key = `test:stream-writer:${randomUUID()}`;
    const file = Buffer.from(Array.from({ length: 30_000 }, (_, i) => (i * 7) % 253));
    const first = new StreamWriter(redis, key, 120, { seq: 0, bytes: 0, finished: false });
    first.push(file.subarray(0, 9_000));
    await first.drain();
    first.restartPoint({ sample: 1_000, bytes: 9_000 }); // a piece ended at byte 9,000
    first.push(file.subarray(9_000, 12_000));
    await first.drain();
    first.restartPoint({ sample: 2_000, bytes: 15_000 }); // bytes not out yet: no record may carry it
    first.push(file.subarray(12_000, 14_000));
    await first.drain();
    const records = (await redis.xrangeBuffer(key, '-', '+')).map(([, fields]) => decodeRecord(fields));
    expect(records.map((r) => (r.type === 'audio' ? r.restart : 'terminal'))).toEqual([
      undefined,
      { sample: 1_000, bytes: 9_000 },
      { sample: 1_000, bytes: 9_000 },
    ]);

    // The crashed attempt left 14,000 bytes; the next one re-encodes from byte 9,000 on.
    const position = await readStreamPosition(redis, key);
    expect(position).toEqual({ seq: 3, bytes: 14_000, finished: false, restart: { sample: 1_000, bytes: 9_000 } });
    const second = new StreamWriter(redis, key, 120, position, position.restart!.bytes);
    for (let at = 9_000; at < file.length; at += 2_500) second.push(file.subarray(at, at + 2_500));
    await second.end({ durationS: 1, chars: 1 });
    const all = (await redis.xrangeBuffer(key, '-', '+')).map(([, fields]) => decodeRecord(fields));
    const bytes = Buffer.concat(all.flatMap((r) => (r.type === 'audio' ? [r.data] : [])));
    expect(bytes.equals(file)).toBe(true);
    expect(all.at(-1)).toMatchObject({ type: 'end', bytes: file.length });
    // It keeps carrying the point it resumed from.
    expect(all.slice(3, -1).every((r) => r.type === 'audio' && r.restart?.bytes === 9_000)).toBe(true);
    await redis.del(key);
  });
});
