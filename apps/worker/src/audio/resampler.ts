/**
 * Rational-ratio resampler (windowed sinc, polyphase) for 16-bit mono PCM. Engines produce their native rate
 * (espeak-ng: 22,050 Hz); everything leaving a worker is 24 kHz. Each segment is resampled on its own (segments
 * start and end in silence, so their edges need no history), but incrementally, as the engine produces it
 * (`stream()`): the first audio need not wait for the whole first segment. The output of a segment is the same
 * bytes however its input was split (a resumed job regenerates byte-identical audio).
 */

import { endianness } from 'node:os';

const HALF_TAPS = 16;

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

export class Resampler {
  readonly inRate: number;
  readonly outRate: number;
  readonly #up: number;
  readonly #down: number;
  /** [phase][tap] filter table, phases = #up. */
  readonly #table: Float32Array;

  constructor(inRate: number, outRate: number) {
    if (endianness() !== 'LE') throw new Error('Resampler: s16le via Int16Array needs a little-endian host');
    this.inRate = inRate;
    this.outRate = outRate;
    const g = gcd(inRate, outRate);
    this.#up = outRate / g;
    this.#down = inRate / g;
    // Cut below the lower of the two Nyquist frequencies, with a little room for the transition band.
    const cutoff = Math.min(1, outRate / inRate) * 0.95;
    const taps = 2 * HALF_TAPS;
    this.#table = new Float32Array(this.#up * taps);
    for (let p = 0; p < this.#up; p++) {
      const frac = p / this.#up;
      let sum = 0;
      for (let k = 0; k < taps; k++) {
        const x = k - (HALF_TAPS - 1) - frac;
        const sinc = x === 0 ? 1 : Math.sin(Math.PI * cutoff * x) / (Math.PI * cutoff * x);
        const w = 0.42 + 0.5 * Math.cos((Math.PI * x) / HALF_TAPS) + 0.08 * Math.cos((2 * Math.PI * x) / HALF_TAPS);
        const v = Math.abs(x) >= HALF_TAPS ? 0 : sinc * w;
        this.#table[p * taps + k] = v;
        sum += v;
      }
      // Normalise each phase to unit DC gain so silence stays silence and levels do not ripple.
      for (let k = 0; k < taps; k++) this.#table[p * taps + k]! /= sum;
    }
  }

  /** Number of output samples for `n` input samples. */
  outputLength(n: number): number {
    return Math.floor((n * this.#up) / this.#down);
  }

  /** A whole segment at once: s16le in, s16le out. */
  process(input: Buffer): Buffer {
    if (this.inRate === this.outRate) return input;
    const s = this.stream();
    const head = s.push(input);
    const tail = s.flush();
    return tail.length === 0 ? head : Buffer.concat([head, tail]);
  }

  /** An incremental resampler for one segment: push its PCM as it comes, then flush once. */
  stream(): ResamplerStream {
    return new ResamplerStream(this.inRate === this.outRate ? undefined : { up: this.#up, down: this.#down, table: this.#table });
  }
}

interface Filter {
  up: number;
  down: number;
  table: Float32Array;
}

/**
 * One segment's resampling state: the input samples later outputs still need, and the position of the next
 * output. An output sample is computed once all of its taps have arrived (or at `flush`, with zeros past the
 * end), with the same arithmetic in the same order as a single pass over the whole segment.
 */
export class ResamplerStream {
  readonly #f: Filter | undefined;
  /** Input samples from absolute index #bufStart on. */
  #buf = new Int16Array(0);
  #bufStart = 0;
  #odd: Buffer | undefined;
  /** Next output's input position: i0 + phase / up. */
  #i0 = 0;
  #phase = 0;
  #emitted = 0;

  constructor(filter: Filter | undefined) {
    this.#f = filter;
  }

  push(pcm: Buffer): Buffer {
    if (!this.#f) return pcm;
    let data = pcm;
    if (this.#odd) {
      data = Buffer.concat([this.#odd, data]);
      this.#odd = undefined;
    }
    if (data.length & 1) {
      this.#odd = data.subarray(data.length - 1);
      data = data.subarray(0, data.length - 1);
    }
    const n = data.length >> 1;
    if (n > 0) {
      const next = new Int16Array(this.#buf.length + n);
      next.set(this.#buf);
      // A copy through bytes: `data` may sit at an odd offset in its ArrayBuffer.
      new Uint8Array(next.buffer, this.#buf.length * 2, n * 2).set(data.subarray(0, n * 2));
      this.#buf = next;
    }
    return this.#run(false);
  }

  /** Ends the segment: the remaining outputs, with silence past its last sample. */
  flush(): Buffer {
    return this.#f ? this.#run(true) : Buffer.alloc(0);
  }

  #run(final: boolean): Buffer {
    const { up, down, table } = this.#f!;
    const taps = 2 * HALF_TAPS;
    const buf = this.#buf;
    const bufStart = this.#bufStart;
    const total = bufStart + buf.length;
    // Same count as a whole-segment pass: floor(n × up / down) outputs for n inputs.
    const limit = final ? Math.floor((total * up) / down) : Number.POSITIVE_INFINITY;
    const out = new Int16Array(Math.max(0, Math.ceil(((total - this.#i0 + 1) * up) / down) + 1));
    let o = 0;
    let i0 = this.#i0;
    let phase = this.#phase;
    let j = this.#emitted;
    for (; j < limit; j++) {
      const start = i0 - (HALF_TAPS - 1);
      if (!final && start + taps > total) break; // its last taps have not arrived yet
      const base = phase * taps;
      let acc = 0;
      if (start >= 0 && start + taps <= total) {
        const at = start - bufStart;
        for (let k = 0; k < taps; k++) acc += buf[at + k]! * table[base + k]!;
      } else {
        for (let k = 0; k < taps; k++) {
          const idx = start + k;
          if (idx >= 0 && idx < total) acc += buf[idx - bufStart]! * table[base + k]!;
        }
      }
      const s = Math.round(acc);
      out[o++] = s > 32767 ? 32767 : s < -32768 ? -32768 : s;
      phase += down;
      while (phase >= up) {
        phase -= up;
        i0++;
      }
    }
    this.#emitted = j;
    this.#i0 = i0;
    this.#phase = phase;
    // Keep only what the next output's taps reach back to.
    const keepFrom = Math.max(bufStart, i0 - (HALF_TAPS - 1));
    if (keepFrom > bufStart) {
      this.#buf = buf.slice(Math.min(keepFrom - bufStart, buf.length));
      this.#bufStart = keepFrom;
    }
    // Int16Array is host-endian: s16le on the little-endian hosts the Resampler constructor insists on.
    return Buffer.from(out.buffer, 0, o * 2);
  }
}
