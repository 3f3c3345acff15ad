import { describe, expect, it } from 'vitest';
import type { StreamRecord } from '@chorus/shared/stream-protocol';
import { JobStream, type StreamEntry } from './job-stream.ts';

function audio(id: number, seq: number, offset: number, text: string): StreamEntry {
  return { id: `${id}-0`, record: { type: 'audio', seq, offset, data: Buffer.from(text) } };
}
function end(id: number, seq: number, bytes: number): StreamEntry {
  return { id: `${id}-0`, record: { type: 'end', seq, bytes, durationS: 1, chars: 1 } as StreamRecord };
}

async function drain(stream: JobStream): Promise<string> {
  let out = '';
  for await (const { record } of stream) if (record.type === 'audio') out += record.data.toString();
  return out;
}

describe('JobStream byte offsets (failover safety)', () => {
  const make = () => new JobStream('k', '0-0', () => {}, () => {});

  it('trims bytes a retried attempt published again under newer entry ids', async () => {
    const s = make();
    s.deliver([audio(1, 0, 0, 'hello '), audio(2, 1, 6, 'wor')]);
    // A new attempt after a failover lost entry 2 on the new master: it republishes from offset 6.
    s.deliver([audio(3, 1, 6, 'world'), audio(4, 2, 11, '!'), end(5, 3, 12)]);
    expect(await drain(s)).toBe('hello world!');
  });

  it('fails instead of relaying audio with a hole in it', async () => {
    const s = make();
    s.deliver([audio(1, 0, 0, 'hello '), audio(3, 2, 11, '!')]);
    const first = await s.next();
    expect(first?.record.type).toBe('audio');
    await expect(s.next()).rejects.toThrow(/lost in a backend failover/);
    expect(s.wantsData).toBe(false);
  });

  it('a reader that started mid-stream takes offsets as they come', async () => {
    const s = new JobStream('k', '5-0', () => {}, () => {});
    s.deliver([audio(6, 3, 100, 'tail'), end(7, 4, 104)]);
    expect(await drain(s)).toBe('tail');
  });
});
