import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { TempoStage } from './tempo-stage.ts';

/** `seconds` of a 24 kHz s16le tone (atempo keeps a tone a tone; silence would do as well). */
function tone(seconds: number): Buffer {
  const n = Math.round(seconds * 24_000);
  const pcm = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) pcm.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / 24_000)), i * 2);
  return pcm;
}

describe('TempoStage with a slow encoder behind it (real ffmpeg atempo)', () => {
  it('waits for each sink call and holds back writes, so stretched audio does not pile up in memory', async () => {
    const factor = 0.5; // output twice as long as input
    const input = tone(60); // 2.88 MB in, ~5.76 MB out
    let inFlight = 0;
    let maxInFlight = 0;
    let consumed = 0;
    let written = 0;
    let maxLag = 0; // stretched bytes written into the stage and not yet taken by the sink
    // An encoder takes its input in order at its own pace (~2 MB/s here, slower than atempo): calls queue.
    let encoder = Promise.resolve();
    const stage = new TempoStage(factor, (pcm) => {
      inFlight += 1;
      maxInFlight = Math.max(maxInFlight, inFlight);
      encoder = encoder.then(async () => {
        await sleep(Math.ceil(pcm.length / 16_384) * 8);
        consumed += pcm.length;
        inFlight -= 1;
      });
      return encoder;
    });
    const piece = 32 * 1024;
    for (let at = 0; at < input.length; at += piece) {
      const data = input.subarray(at, at + piece);
      await stage.write(data);
      written += data.length;
      maxLag = Math.max(maxLag, written / factor - consumed);
    }
    await stage.finish();
    console.log(`tempo stage: max ${(maxLag / 1e6).toFixed(2)} MB ahead of a slow sink, ${(consumed / 1e6).toFixed(2)} MB out`);

    expect(maxInFlight).toBe(1);
    expect(consumed / input.length).toBeGreaterThan(1.9); // all of it came through, stretched
    // Pipes (socket pairs) and ffmpeg's own buffers hold about 1 MB; without backpressure the writes finish at
    // ffmpeg's speed and nearly all 5.76 MB wait in memory for the encoder.
    expect(maxLag).toBeLessThan(2e6);
  });

  it('a failing sink stops the stage: write and finish reject with its error', async () => {
    const boom = new Error('limit passed');
    const stage = new TempoStage(0.5, async () => {
      throw boom;
    });
    const input = tone(10);
    await expect(
      (async () => {
        for (let at = 0; at < input.length; at += 32 * 1024) await stage.write(input.subarray(at, at + 32 * 1024));
        await stage.finish();
      })(),
    ).rejects.toBe(boom);
  });
});
