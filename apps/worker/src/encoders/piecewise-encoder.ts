import type { AudioFormat } from '@chorus/shared/audio-formats';
import type { RestartPoint } from '@chorus/shared/stream-protocol';
import type { AudioEncoder, EncodedSink } from './audio-encoder.ts';
import type { JobPriority } from '../processors/job-priority.ts';

/** A piece is at least this long before it may end (one more encoder process per this much audio). */
export const PIECE_MIN_S = 10;
/**
 * The first piece is longer: a request of up to ~350 characters (~20 s of speech) stays one piece, its bytes those
 * of one encoder, with no second process to start under load (bench/admission.ts, 300 characters: ~2 ms more API
 * and worker p95 with a cut at 10 s). Not longer: the first restart point comes at the first sentence pause after
 * it, and a stream taken over before that is re-encoded from the start (with 30 s, streams killed at ~37 s had
 * none: longest gap 1.95–2.69 s against 1.66–1.85 s; bench/failover.ts).
 */
export const FIRST_PIECE_MIN_S = 20;
/**
 * A piece ends inside a pause: after this much quiet input. espeak-ng's sentence pauses are ~0.31 s of zeros, a
 * comma's ~0.16 s: a cut there would leave the pause no quiet to drop after it (QUIET_DROP_S), so it grows.
 */
export const QUIET_RUN_S = 0.2;
/**
 * Up to this much of the quiet input after a cut is not encoded: the ended piece's padding and the next one's
 * encoder delay add ~50–70 ms of silence (LAME, 24 kHz), so the pause keeps its length within ~10 ms.
 */
export const QUIET_DROP_S = 0.06;
/** A sample this close to zero is quiet (−60 dBFS: espeak-ng pauses are exact zeros, neural voices' are near). */
export const QUIET_LEVEL = 32;

const BYTES_PER_SAMPLE = 2;

/**
 * Formats encoded in pieces: mp3 frames carry no stream header, so pieces concatenate into one stream. Not flac
 * (one header per file), opus (chained Ogg streams, which players handle unevenly), aac (left as it was), nor
 * wav/pcm (no encoder state to restart; their catch-up is the engine's).
 */
export const isPiecewiseFormat = (format: AudioFormat): format is 'mp3' => format === 'mp3';

interface Piece {
  readonly encoder: AudioEncoder;
  /** Output held while an earlier piece is still delivering its own. */
  held: Buffer[];
  /** The input sample where the cut after this piece came (the next piece's restart point). */
  cutAt?: number;
}

export interface PiecewiseOptions {
  /** Input sample rate (s16le mono). */
  inputRate: number;
  /** A resumed attempt: the restart point it starts from (its input before `sample` is not encoded). */
  resumeFrom?: RestartPoint;
  /** Each cut, once every byte before it went to the sink: where a later attempt can restart. */
  onRestartPoint?: (point: RestartPoint) => void;
}

/**
 * One stream of encoded audio made of independent pieces, each from its own encoder process, cut in pauses at
 * least PIECE_MIN_S apart (the first FIRST_PIECE_MIN_S). An encoder's bytes depend on all the input before them (mp3's bit reservoir and
 * overlapping transforms), so a worker that takes over a crashed job's stream had to re-encode everything the
 * stream had already sent before it could send a new byte: ~85% of that catch-up's CPU (bench/failover.ts). With
 * pieces it starts at the last restart point the stream recorded, at most one piece back. Concatenated mp3 pieces
 * are one valid mp3 stream; the cut is in a pause, so the added padding is silence in silence.
 *
 * Where the cuts fall is a function of the input samples alone (not of write sizes or timing), so every attempt
 * cuts in the same places and produces the same bytes.
 */
export class PiecewiseEncoder implements AudioEncoder {
  readonly format: AudioFormat;
  readonly #start: () => AudioEncoder;
  readonly #onRestartPoint: ((point: RestartPoint) => void) | undefined;
  readonly #minSamples: number;
  readonly #firstMinSamples: number;
  readonly #runSamples: number;
  readonly #dropSamples: number;
  #sink: EncodedSink = () => {};
  #priority: JobPriority | undefined;
  /** Pieces not yet delivered in full, oldest first; the first one delivers, the others hold. */
  readonly #pieces: Piece[] = [];
  /** The piece taking input (also the last of #pieces), until the next cut. */
  #current: Piece | undefined;
  /** Input samples seen, skipped and dropped ones included. */
  #sample = 0;
  /** Input before this sample is skipped (a resumed attempt). */
  readonly #skipUntil: number;
  /** Where the current piece's input began. */
  #pieceStart = 0;
  #quiet = 0;
  /** Quiet samples still to drop after a cut. */
  #dropLeft = 0;
  /** An odd byte kept for the next write (a sample split across writes). */
  #carry: Buffer | undefined;
  /** Bytes given to the sink, counted from the start of the stream. */
  #bytes: number;
  /** Settles once every ended piece has delivered its bytes. */
  #delivered: Promise<void> = Promise.resolve();
  #failure: Error | undefined;

  constructor(format: AudioFormat, start: () => AudioEncoder, opts: PiecewiseOptions) {
    this.format = format;
    this.#start = start;
    this.#onRestartPoint = opts.onRestartPoint;
    this.#minSamples = Math.round(PIECE_MIN_S * opts.inputRate);
    this.#firstMinSamples = Math.round(FIRST_PIECE_MIN_S * opts.inputRate);
    this.#runSamples = Math.round(QUIET_RUN_S * opts.inputRate);
    this.#dropSamples = Math.round(QUIET_DROP_S * opts.inputRate);
    this.#skipUntil = opts.resumeFrom?.sample ?? 0;
    this.#bytes = opts.resumeFrom?.bytes ?? 0;
  }

  attach(sink: EncodedSink): void {
    this.#sink = sink;
  }

  adopt(priority: JobPriority): void {
    this.#priority = priority;
    for (const piece of this.#pieces) piece.encoder.adopt?.(priority);
  }

  async write(pcm: Buffer): Promise<void> {
    if (this.#failure) throw this.#failure;
    let input = pcm;
    if (this.#carry) {
      input = Buffer.concat([this.#carry, pcm]);
      this.#carry = undefined;
    }
    const end = input.length - (input.length % BYTES_PER_SAMPLE);
    if (end < input.length) this.#carry = Buffer.from(input.subarray(end)); // a copy: the caller may reuse its buffer
    let at = 0;
    while (at < end) {
      const samples = (end - at) / BYTES_PER_SAMPLE;
      if (this.#sample < this.#skipUntil) {
        // A restart point is a cut: the same drop follows it (#afterCut) as followed the cut.
        const n = Math.min(samples, this.#skipUntil - this.#sample);
        this.#sample += n;
        at += n * BYTES_PER_SAMPLE;
        if (this.#sample === this.#skipUntil) this.#afterCut();
        continue;
      }
      if (this.#dropLeft > 0) {
        if (Math.abs(input.readInt16LE(at)) <= QUIET_LEVEL) {
          this.#dropLeft -= 1;
          this.#sample += 1;
          at += BYTES_PER_SAMPLE;
          if (this.#dropLeft === 0) this.#pieceStart = this.#sample;
          continue;
        }
        this.#dropLeft = 0;
        this.#pieceStart = this.#sample;
      }
      // Encoded input up to the next cut (or the end of this write).
      const from = at;
      // The first piece starts at sample 0; every later one after a cut (> 0), in every attempt alike.
      const minSamples = this.#pieceStart === 0 ? this.#firstMinSamples : this.#minSamples;
      const scanFrom = this.#pieceStart + minSamples - this.#runSamples;
      let n = Math.min(samples, Math.max(0, scanFrom - this.#sample));
      this.#sample += n;
      at += n * BYTES_PER_SAMPLE;
      let cut = false;
      while (at < end) {
        this.#quiet = Math.abs(input.readInt16LE(at)) <= QUIET_LEVEL ? this.#quiet + 1 : 0;
        this.#sample += 1;
        at += BYTES_PER_SAMPLE;
        if (this.#quiet >= this.#runSamples && this.#sample - this.#pieceStart >= minSamples) {
          cut = true;
          break;
        }
      }
      if (at > from) await this.#encode(input.subarray(from, at));
      if (cut) this.#cut();
    }
  }

  async finish(): Promise<void> {
    if (this.#failure) throw this.#failure;
    // A trailing half sample goes to the encoder as it would without pieces.
    if (this.#carry && this.#sample >= this.#skipUntil && this.#dropLeft === 0) await this.#encode(this.#carry);
    this.#carry = undefined;
    // No input at all: the encoder's output for none, as without pieces.
    if (this.#sample === 0 && this.#skipUntil === 0 && !this.#current) this.#open();
    this.#end();
    await this.#delivered;
    if (this.#failure) throw this.#failure;
  }

  destroy(): void {
    for (const piece of this.#pieces.splice(0)) piece.encoder.destroy();
    this.#current = undefined;
  }

  #afterCut(): void {
    this.#quiet = 0;
    this.#dropLeft = this.#dropSamples;
    this.#pieceStart = this.#sample;
  }

  async #encode(pcm: Buffer): Promise<void> {
    await (this.#current ?? this.#open()).encoder.write(pcm);
  }

  #open(): Piece {
    const piece: Piece = { encoder: this.#start(), held: [] };
    piece.encoder.attach((chunk) => {
      if (this.#pieces[0] === piece) this.#deliver(chunk);
      else piece.held.push(chunk);
    });
    if (this.#priority) piece.encoder.adopt?.(this.#priority);
    this.#pieces.push(piece);
    this.#current = piece;
    return piece;
  }

  #cut(): void {
    if (this.#current) this.#current.cutAt = this.#sample;
    this.#end();
    this.#afterCut();
  }

  /** Ends the current piece's input; its bytes reach the sink once the pieces before it have delivered theirs. */
  #end(): void {
    const piece = this.#current;
    this.#current = undefined;
    if (!piece) return;
    const finished = piece.encoder.finish();
    finished.catch(() => {}); // handled in the chain below, which may reach it later
    this.#delivered = this.#delivered
      .then(() => finished)
      .then(() => {
        this.#pieces.shift();
        if (piece.cutAt !== undefined) this.#onRestartPoint?.({ sample: piece.cutAt, bytes: this.#bytes });
        const next = this.#pieces[0];
        if (next) for (const chunk of next.held.splice(0)) this.#deliver(chunk);
      })
      .catch((err: unknown) => {
        this.#failure ??= err as Error;
      });
  }

  #deliver(chunk: Buffer): void {
    this.#bytes += chunk.length;
    this.#sink(chunk);
  }
}
