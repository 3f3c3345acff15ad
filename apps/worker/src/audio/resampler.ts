/**
 * Rational-ratio resampler (windowed sinc, polyphase) for 16-bit mono PCM. Engines produce their native rate
 * (espeak-ng: 22,050 Hz); everything leaving a worker is 24 kHz. Stateless per call: engines hand over whole
 * segments that start and end in silence, so segment edges need no history.
 */

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

  /** s16le in, s16le out. */
  process(input: Buffer): Buffer {
    if (this.inRate === this.outRate) return input;
    const n = input.length >> 1;
    const src = new Int16Array(n);
    for (let i = 0; i < n; i++) src[i] = input.readInt16LE(i * 2);
    const nOut = this.outputLength(n);
    const out = Buffer.allocUnsafe(nOut * 2);
    const taps = 2 * HALF_TAPS;
    const table = this.#table;
    for (let j = 0; j < nOut; j++) {
      const pos = j * this.#down;
      const i0 = Math.floor(pos / this.#up);
      const phase = pos - i0 * this.#up;
      const base = phase * taps;
      const start = i0 - (HALF_TAPS - 1);
      let acc = 0;
      for (let k = 0; k < taps; k++) {
        const idx = start + k;
        if (idx >= 0 && idx < n) acc += src[idx]! * table[base + k]!;
      }
      const s = Math.round(acc);
      out.writeInt16LE(s > 32767 ? 32767 : s < -32768 ? -32768 : s, j * 2);
    }
    return out;
  }
}
