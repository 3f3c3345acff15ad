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
});
