import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startStack, type Stack } from './helpers/stack.ts';
import { decodedDuration } from './helpers/audio.ts';

/*
 * Issue 9, finding 2 (API side): whole-file responses (`/api/generate_tts`, `stream: false`) are relayed from
 * the job's stream, not collected in API memory. The API runs in this process; what it retains is measured
 * after a forced GC (RSS alone mostly shows garbage the heap has not given back), in the middle of a download
 * whose client paused: a collected file would be held whole at that point.
 */

/** ~4,000 characters: about 11 MB of wav. */
const LONG = 'Whole files are relayed from the stream, never held in memory, however long the audio runs. '.repeat(44);

v8.setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Heap and Buffer memory still referenced, after a full GC. */
function retained(): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ redisUrl: inject('redisUrl') });
});
afterAll(async () => {
  await stack?.stop();
});

/** Retained memory once it holds still (what an earlier download left, e.g. a child's stdin still draining). */
async function settledRetained(): Promise<number> {
  let last = retained();
  for (let i = 0; i < 40; i++) {
    await new Promise((r) => setTimeout(r, 250));
    const now = retained();
    if (Math.abs(now - last) < 256 * 1024) return now;
    last = now;
  }
  return last;
}

/**
 * Starts a download, takes its first chunk, then pauses until the worker has produced the whole file (job
 * completed: a server that collected the file would now hold all of it, however slow the machine) and a moment
 * more, measures what the process retains over `base`, then reads the rest.
 */
async function pausedDownload(
  read: () => Promise<{ length: number; jobId: string; chunks: AsyncIterator<Uint8Array> }>,
): Promise<{ length: number; file: Buffer; heldMidway: number }> {
  const base = await settledRetained();
  const { length, jobId, chunks } = await read();
  const parts: Buffer[] = [];
  const first = await chunks.next();
  if (!first.done) parts.push(Buffer.from(first.value));
  await expect.poll(() => stack.queue().getJobState(jobId), { timeout: 60_000, interval: 100 }).toBe('completed');
  // A relay that read ahead without bound would fill up now: give it a moment (no event to wait for from here).
  await new Promise((r) => setTimeout(r, 1000));
  const heldMidway = retained() - base;
  for (;;) {
    const next = await chunks.next();
    if (next.done) break;
    parts.push(Buffer.from(next.value));
  }
  return { length, file: Buffer.concat(parts), heldMidway };
}

async function viaFetch(route: string, body: unknown) {
  const res = await fetch(`${stack.baseUrl}${route}`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  expect(res.status).toBe(200);
  return { length: Number(res.headers.get('content-length')), jobId: res.headers.get('x-job-id')!, chunks: res.body![Symbol.asyncIterator]() };
}

function expectExactWav(file: Buffer, reference: Buffer) {
  expect(file.length).toBe(reference.length);
  expect(file.readUInt32LE(4)).toBe(file.length - 8);
  expect(file.readUInt32LE(40)).toBe(file.length - 44);
  // Byte for byte the streamed file, apart from the two size fields a stream cannot know.
  expect(file.subarray(44).equals(reference.subarray(44))).toBe(true);
  expect(file.subarray(0, 4).equals(reference.subarray(0, 4))).toBe(true);
  expect(file.subarray(8, 40).equals(reference.subarray(8, 40))).toBe(true);
}

describe('finding 2: whole files are not held in API memory', () => {
  let reference: Buffer;
  beforeAll(async () => {
    const res = await stack.client.audio.speech.create({ model: 'tts-1', voice: 'alloy', input: LONG, response_format: 'wav' });
    reference = Buffer.from(await res.arrayBuffer());
    expect(reference.length).toBeGreaterThan(8_000_000);
  });

  it('legacy /api/generate_tts: an 11 MB wav, held far below its size midway, arrives exact', async () => {
    const got = await pausedDownload(() => viaFetch('/api/generate_tts', { text: LONG, speaker: 'alloy', format: 'wav' }));
    console.log(`legacy whole file: ${got.file.length} bytes; retained midway ${got.heldMidway} bytes`);
    expect(got.length).toBe(got.file.length);
    expectExactWav(got.file, reference);
    expect(await decodedDuration(got.file, 'wav')).toBeCloseTo((got.file.length - 44) / 48_000, 1);
    expect(got.heldMidway).toBeLessThan(got.file.length / 3);
  });

  it('OpenAI stream:false (SDK): same bound, exact file', async () => {
    const got = await pausedDownload(async () => {
      const res = await stack.client.audio.speech.create(
        { model: 'tts-1', voice: 'alloy', input: LONG, response_format: 'wav', stream: false } as never,
      );
      return { length: Number(res.headers.get('content-length')), jobId: res.headers.get('x-job-id')!, chunks: res.body![Symbol.asyncIterator]() };
    });
    console.log(`openai whole file: ${got.file.length} bytes; retained midway ${got.heldMidway} bytes`);
    expect(got.length).toBe(got.file.length);
    expectExactWav(got.file, reference);
    expect(got.heldMidway).toBeLessThan(got.file.length / 3);
  });

  it('mp3 whole file: Content-Length is the exact size', async () => {
    const res = await fetch(`${stack.baseUrl}/api/generate_tts`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ text: 'A short mp3 file.', format: 'mp3' }),
    });
    const file = Buffer.from(await res.arrayBuffer());
    expect(res.status).toBe(200);
    expect(Number(res.headers.get('content-length'))).toBe(file.length);
    expect(await decodedDuration(file, 'mp3')).toBeGreaterThan(0.5);
  });
});
