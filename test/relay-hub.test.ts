import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { encodeRecord, type StreamRecord } from '@chorus/shared';
import { StreamHub } from '../apps/api/src/relay/stream-hub.ts';
import type { JobStream } from '../apps/api/src/relay/job-stream.ts';

/*
 * The shared relay reader against a real Redis. Regression: a reader that subscribed to a stream another reader
 * was already following got the in-flight XREAD's entries (which start after the first reader's position) and
 * silently lost everything before them.
 */

const clients: Redis[] = [];
let hub: StreamHub | undefined;
afterEach(async () => {
  await hub?.close();
  hub = undefined;
  for (const c of clients.splice(0)) c.disconnect();
});

function audio(seq: number): StreamRecord {
  return { type: 'audio', seq, offset: seq * 4, data: Buffer.from([seq, seq, seq, seq]) };
}

async function collect(stream: JobStream): Promise<number[]> {
  const seqs: number[] = [];
  for await (const { record } of stream) seqs.push(record.seq);
  return seqs;
}

describe('StreamHub', () => {
  it('a second reader of a stream gets every record from the start, even while a read is in flight', async () => {
    const url = inject('redisUrl');
    const command = new Redis(url);
    const blocking = new Redis(url, { maxRetriesPerRequest: null });
    clients.push(command, blocking);
    const prefix = `hubtest-${randomUUID()}`;
    const key = `${prefix}:audio:{r}:job`;
    hub = new StreamHub(blocking, command, `${prefix}:wake:{r}`, pino({ level: 'silent' }));
    hub.start();
    const add = (r: StreamRecord) => command.xadd(key, '*', ...(encodeRecord(r) as string[]));

    for (let i = 0; i < 5; i++) await add(audio(i));
    const first = hub.subscribe(key);
    for (let i = 0; i < 5; i++) expect((await first.next())!.record.seq).toBe(i);
    // The hub now blocks reading after record 4. Subscribe a second reader and, in the same tick (before the
    // hub's wake-up goes out), add record 5: the blocked read returns it while the second reader is registered.
    const second = hub.subscribe(key);
    const added = add(audio(5));
    await added;
    await add({ type: 'end', seq: 6, bytes: 24, durationS: 0, chars: 1 });
    expect(await collect(second)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(await collect(first)).toEqual([5, 6]);
    await command.del(key, `${prefix}:wake:{r}`);
  });
});
