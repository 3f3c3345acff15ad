import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { ESPEAK_FIRST_RECORD_HOLD, runEspeak } from './espeak-engine.ts';
import { JobPriority } from '../processors/job-priority.ts';

/*
 * A realtime job's espeak-ng is stopped after its first 0.5 s of audio until the job's first record is out (real
 * espeak-ng; the process state is read from /proc). The cap is lengthened here so the stop can be seen on a busy
 * machine; the worker's is 20 ms.
 */

const ARGS = ['--stdout', '-b', '1', '-v', 'en-us', '-s', '175'];
const LONG = 'This sentence keeps espeak-ng busy for a good while longer. '.repeat(40);
const state = (pid: number) => readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0];

class Recording extends JobPriority {
  readonly pids: number[] = [];
  override adopt(pid: number | undefined): () => void {
    if (pid) this.pids.push(pid);
    return super.adopt(pid);
  }
}

const savedMaxMs = ESPEAK_FIRST_RECORD_HOLD.maxMs;
afterEach(() => {
  ESPEAK_FIRST_RECORD_HOLD.maxMs = savedMaxMs;
});

async function collect(chunks: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const pcm of chunks) parts.push(pcm);
  return Buffer.concat(parts);
}

describe('espeak-ng held until the first record is out', () => {
  it('is stopped after 0.5 s of audio while the first record is not out, continued when it is, same audio', async () => {
    ESPEAK_FIRST_RECORD_HOLD.maxMs = 60_000;
    let out = () => {};
    const firstRecordOut = new Promise<void>((resolve) => (out = resolve));
    const priority = new Recording();
    const run = runEspeak('espeak-ng', ARGS, LONG, new AbortController().signal, priority, undefined, firstRecordOut);
    const parts: Buffer[] = [];
    let bytes = 0;
    // Read up to the threshold; the next read starts the hold (espeak-ng had made far more already: it is buffered).
    while (bytes < ESPEAK_FIRST_RECORD_HOLD.afterSamples * 2) {
      const r = await run.next();
      expect(r.done).toBe(false);
      parts.push(r.value as Buffer);
      bytes += (r.value as Buffer).length;
    }
    const next = run.next();
    const pid = priority.pids[0]!;
    await expect.poll(() => state(pid), { timeout: 10_000 }).toBe('T');
    out(); // the first record is out
    await expect.poll(() => state(pid) !== 'T', { timeout: 10_000 }).toBe(true);
    const r = await next;
    if (!r.done) parts.push(r.value as Buffer);
    parts.push(await collect({ [Symbol.asyncIterator]: () => run }));
    const reference = await collect(runEspeak('espeak-ng', ARGS, LONG, new AbortController().signal));
    expect(Buffer.concat(parts).equals(reference)).toBe(true);
  });

  it('continues on its own after the cap when the first record never comes out', async () => {
    ESPEAK_FIRST_RECORD_HOLD.maxMs = 300;
    const audio = await collect(runEspeak('espeak-ng', ARGS, LONG, new AbortController().signal, undefined, undefined, new Promise(() => {})));
    const reference = await collect(runEspeak('espeak-ng', ARGS, LONG, new AbortController().signal));
    expect(audio.equals(reference)).toBe(true);
  });
});
