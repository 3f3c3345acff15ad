import { execFile } from 'node:child_process';
import { beforeAll, describe, expect, it } from 'vitest';
import type { RestartPoint } from '@chorus/shared/stream-protocol';
import type { Speaker } from '@chorus/shared';
import { EspeakEngine } from '../engines/espeak-engine.ts';
import { LameEncoder } from './lame-encoder.ts';
import { FIRST_PIECE_MIN_S, PIECE_MIN_S, PiecewiseEncoder, QUIET_LEVEL } from './piecewise-encoder.ts';

/* Against the real espeak-ng, lame and ffmpeg. */

const RATE = 22_050;
const speaker: Speaker = { id: 's', name: 'S', engine: 'espeak', voice: 'en-us', language: 'en-US' };
const TEXT = Array.from(
  { length: 14 },
  (_, i) => `Sentence ${i + 1} of the test: the river runs past the old mill, and the miller counts his sacks of flour twice.`,
).join(' ');

let speech: Buffer;

beforeAll(async () => {
  const engine = new EspeakEngine();
  await engine.init();
  const parts: Buffer[] = [];
  for await (const pcm of engine.synthesize({ text: TEXT, speaker, speed: 1 }, new AbortController().signal)) parts.push(pcm);
  speech = Buffer.concat(parts);
  // 14 sentences of ~5 s: room for several pieces
  expect(speech.length / 2 / RATE).toBeGreaterThan(FIRST_PIECE_MIN_S + 2 * PIECE_MIN_S);
});

async function encode(pcm: Buffer, writeBytes: number, resumeFrom?: RestartPoint) {
  const points: RestartPoint[] = [];
  let pieces = 0;
  const encoder = new PiecewiseEncoder('mp3', () => (pieces++, new LameEncoder(0, RATE)), {
    inputRate: RATE,
    resumeFrom,
    onRestartPoint: (point) => points.push(point),
  });
  const out: Buffer[] = [];
  encoder.attach((chunk) => out.push(chunk));
  for (let at = 0; at < pcm.length; at += writeBytes) await encoder.write(pcm.subarray(at, at + writeBytes));
  await encoder.finish();
  return { mp3: Buffer.concat(out), points, pieces };
}

async function oneLame(pcm: Buffer): Promise<Buffer> {
  const encoder = new LameEncoder(0, RATE);
  const out: Buffer[] = [];
  encoder.attach((chunk) => out.push(chunk));
  await encoder.write(pcm);
  await encoder.finish();
  return Buffer.concat(out);
}

/** The mp3 decoded by ffmpeg: s16le mono 24 kHz samples. Fails on a decoding error. */
function decode(mp3: Buffer): Promise<Int16Array> {
  return new Promise((resolve, reject) => {
    const p = execFile(
      'ffmpeg', ['-v', 'error', '-xerror', '-f', 'mp3', '-i', 'pipe:0', '-f', 's16le', '-ac', '1', '-ar', '24000', 'pipe:1'],
      { encoding: 'buffer', maxBuffer: 1 << 26 },
      (err, out) => (err ? reject(err) : resolve(new Int16Array(out.buffer, out.byteOffset, out.length / 2))),
    );
    p.stdin!.end(mp3);
  });
}

/** `seconds` of a 440 Hz tone: no pause anywhere. */
function tone(seconds: number): Buffer {
  const n = Math.round(seconds * RATE);
  const pcm = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) pcm.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / RATE)), i * 2);
  return pcm;
}

describe('PiecewiseEncoder (real espeak-ng, lame, ffmpeg)', () => {
  it('cuts in pauses (the first after FIRST_PIECE_MIN_S, then PIECE_MIN_S apart), into one mp3 as long as the one-piece encoding, silent at each cut', async () => {
    const { mp3, points, pieces } = await encode(speech, 4096);
    expect(pieces).toBeGreaterThanOrEqual(3);
    expect(points).toHaveLength(pieces - 1);
    for (const [i, point] of points.entries()) {
      const since = i === 0 ? 0 : points[i - 1]!.sample;
      expect(point.sample - since).toBeGreaterThanOrEqual((i === 0 ? FIRST_PIECE_MIN_S : PIECE_MIN_S) * RATE);
      // cut after a run of quiet input
      const before = speech.subarray((point.sample - 100) * 2, point.sample * 2);
      for (let at = 0; at < before.length; at += 2) expect(Math.abs(before.readInt16LE(at))).toBeLessThanOrEqual(QUIET_LEVEL);
      expect(point.bytes % 192).toBe(0); // whole 64 kb/s frames at 24 kHz
    }
    const decoded = await decode(mp3);
    const whole = await decode(await oneLame(speech));
    // Each cut's padding is paid for by quiet input left out: the length stays within 30 ms per cut.
    expect(Math.abs(decoded.length - whole.length)).toBeLessThanOrEqual(0.03 * 24_000 * points.length);
    // The decoded audio is silent around every cut (no click): 1152 samples either side of the piece boundary.
    for (const point of points) {
      const at = (point.bytes / 192) * 576;
      const around = decoded.subarray(at - 1152, at + 1152);
      expect(Math.max(...Array.from(around, Math.abs))).toBeLessThan(64);
    }
  });

  it('gives the same bytes whatever the write sizes, odd ones included', async () => {
    const a = await encode(speech, 4096);
    const b = await encode(speech, 333);
    expect(b.points).toEqual(a.points);
    expect(b.mp3.equals(a.mp3)).toBe(true);
  });

  it('resumed at any restart point, gives the rest of the same bytes (a takeover re-encodes one piece at most)', async () => {
    const full = await encode(speech, 4096);
    expect(full.points.length).toBeGreaterThanOrEqual(2);
    for (const point of full.points) {
      const resumed = await encode(speech, 1001, point);
      expect(resumed.mp3.length).toBe(full.mp3.length - point.bytes);
      expect(resumed.mp3.equals(full.mp3.subarray(point.bytes))).toBe(true);
      // later restart points are the same too
      expect(resumed.points).toEqual(full.points.filter((p) => p.sample > point.sample));
    }
  });

  it('speech shorter than the first piece is one piece: the bytes of one lame, as before pieces', async () => {
    const short = speech.subarray(0, Math.round((FIRST_PIECE_MIN_S - 1) * RATE) * 2);
    const { mp3, points, pieces } = await encode(short, 4096);
    expect(pieces).toBe(1);
    expect(points).toEqual([]);
    expect(mp3.equals(await oneLame(short))).toBe(true);
  });

  it('without a pause it stays one piece: the bytes of one lame', async () => {
    const pcm = tone(FIRST_PIECE_MIN_S + PIECE_MIN_S + 3);
    const { mp3, points, pieces } = await encode(pcm, 4096);
    expect(pieces).toBe(1);
    expect(points).toEqual([]);
    expect(mp3.equals(await oneLame(pcm))).toBe(true);
  });
});
