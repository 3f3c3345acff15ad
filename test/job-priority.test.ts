import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startStack, type Stack } from './helpers/stack.ts';
import { descendantsNamed, espeakProcesses, waitFor } from './helpers/processes.ts';

/*
 * Issue 12: a realtime job's child processes run at full CPU priority until its first audio is out, then at
 * niceness 5, behind jobs whose listeners have nothing yet (apps/worker/src/processors/job-priority.ts). Read from
 * /proc while a long request streams from a real worker.
 */

const LONG = Array.from({ length: 36 }, (_, i) =>
  `Sentence ${i + 1} of a long reading keeps the engine busy for a good while after the first words are out.`,
).join(' ');

describe('job CPU priority', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ redisUrl: inject('redisUrl'), workers: 1 });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('a streaming job\'s espeak-ng and encoder (lame, for mp3) yield once its first audio is out; idle warm processes do not', async () => {
    const worker = stack.workers[0]!.process.pid!;
    const res = await fetch(`${stack.baseUrl}/v1/audio/speech`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tts-1', voice: 'alloy', input: LONG, response_format: 'mp3', speed: 0.5 }),
    });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    expect((await reader.read()).done).toBe(false); // first audio is here

    // While the job still runs: its engine and its encoder at niceness 5.
    let seen = { espeak: false, lame: false };
    expect(await waitFor(() => {
      const espeak = descendantsNamed(worker, 'espeak-ng');
      const lame = descendantsNamed(worker, 'lame');
      seen = { espeak: espeak.some((p) => p.nice === 5), lame: lame.some((p) => p.nice === 5) };
      return seen.espeak && seen.lame;
    }, 30_000, 5), JSON.stringify(seen)).toBeGreaterThanOrEqual(0);
    // The warm pool's idle encoders (no job yet) keep full priority for the next request's first byte.
    expect(descendantsNamed(worker, 'lame').filter((p) => p.nice === 0).length).toBeGreaterThan(0);
    expect(descendantsNamed(worker, 'ffmpeg').filter((p) => p.nice === 0).length).toBeGreaterThan(0);
    // So does the warm espeak-ng started for the next request with these arguments once this job's audio was out.
    expect(await waitFor(() => espeakProcesses(worker).idle.some((p) => p.nice === 0), 30_000)).toBeGreaterThanOrEqual(0);

    let bytes = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      bytes += value.length;
    }
    expect(bytes).toBeGreaterThan(10_000);
  }, 120_000);
});
