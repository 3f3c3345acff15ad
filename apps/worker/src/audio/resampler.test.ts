import { describe, expect, it } from 'vitest';
import { Resampler } from './resampler.ts';

function sine(freq: number, rate: number, seconds: number, amp = 10_000): Buffer {
  const n = Math.round(rate * seconds);
  const b = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) b.writeInt16LE(Math.round(amp * Math.sin((2 * Math.PI * freq * i) / rate)), i * 2);
  return b;
}

/** Frequency estimate from zero crossings. */
function zeroCrossingHz(pcm: Buffer, rate: number): number {
  let crossings = 0;
  let prev = pcm.readInt16LE(0);
  for (let i = 1; i < pcm.length / 2; i++) {
    const s = pcm.readInt16LE(i * 2);
    if ((prev < 0 && s >= 0) || (prev >= 0 && s < 0)) crossings++;
    prev = s;
  }
  return crossings / 2 / (pcm.length / 2 / rate);
}

describe('Resampler 22,050 → 24,000 Hz', () => {
  const r = new Resampler(22_050, 24_000);

  it('keeps duration: n samples in, n × 160/147 out', () => {
    const out = r.process(sine(440, 22_050, 1));
    expect(out.length / 2).toBe(Math.floor((22_050 * 160) / 147));
    expect(out.length / 2).toBe(24_000);
  });

  it('keeps pitch and level of a tone', () => {
    const out = r.process(sine(1000, 22_050, 1));
    expect(zeroCrossingHz(out, 24_000)).toBeGreaterThan(995);
    expect(zeroCrossingHz(out, 24_000)).toBeLessThan(1005);
    let peak = 0;
    for (let i = 1000; i < out.length / 2 - 1000; i++) peak = Math.max(peak, Math.abs(out.readInt16LE(i * 2)));
    expect(peak).toBeGreaterThan(9_700);
    expect(peak).toBeLessThan(10_300);
  });

  it('maps silence to silence and is deterministic', () => {
    expect(r.process(Buffer.alloc(2000)).every((b) => b === 0)).toBe(true);
    const x = sine(300, 22_050, 0.3);
    expect(r.process(x).equals(r.process(x))).toBe(true);
  });

  it('passes audio through untouched when the rates match', () => {
    const x = sine(300, 24_000, 0.1);
    expect(new Resampler(24_000, 24_000).process(x)).toBe(x);
  });

  it('streams: the same bytes as one pass, however the input is split (odd byte counts included)', () => {
    const x = Buffer.concat([sine(300, 22_050, 0.4), sine(1200, 22_050, 0.3)]);
    const whole = r.process(x);
    for (const maxPiece of [1, 7, 100, 4096]) {
      const s = r.stream();
      const out: Buffer[] = [];
      let seed = maxPiece;
      for (let at = 0; at < x.length; ) {
        seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
        const n = 1 + (seed % maxPiece);
        out.push(s.push(x.subarray(at, at + n)));
        at += n;
      }
      out.push(s.flush());
      expect(Buffer.concat(out).equals(whole)).toBe(true);
    }
  });

  it('streams its first output before the segment ends', () => {
    const s = r.stream();
    expect(s.push(sine(440, 22_050, 0.05)).length).toBeGreaterThan(0);
  });
});
