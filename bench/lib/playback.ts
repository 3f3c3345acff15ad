import type { ChunkArrival } from './http-client.ts';

/** Raw pcm as Chorus sends it: 24,000 Hz, 16-bit, mono. */
export const PCM_BYTES_PER_SEC = 24_000 * 2;

export interface Underrun {
  /** Longest single stall a real-time player would hear (ms); 0 when playback never ran dry. */
  worstStallMs: number;
  /** All stalls added up (ms). */
  totalStallMs: number;
  /** Longest wall-clock gap between two chunks (ms), for comparison: a gap is harmless while audio is buffered. */
  worstGapMs: number;
}

/**
 * Simulates a player that starts at the first byte and plays pcm in real time: the position it has reached is
 * decoded from the bytes received. A chunk that arrives after the buffered audio ran out is a stall of that
 * length; playback resumes when it arrives (so later deadlines shift by the stall, as a listener hears them).
 */
export function underrun(chunks: readonly ChunkArrival[], bytesPerSec = PCM_BYTES_PER_SEC): Underrun {
  let worstStallMs = 0;
  let totalStallMs = 0;
  let worstGapMs = 0;
  if (chunks.length === 0) return { worstStallMs, totalStallMs, worstGapMs };
  const start = chunks[0]!.t;
  let bufferedMs = (chunks[0]!.bytes / bytesPerSec) * 1000;
  for (let i = 1; i < chunks.length; i++) {
    const c = chunks[i]!;
    worstGapMs = Math.max(worstGapMs, c.t - chunks[i - 1]!.t);
    const runsOutAt = start + bufferedMs + totalStallMs;
    if (c.t > runsOutAt) {
      const stall = c.t - runsOutAt;
      totalStallMs += stall;
      worstStallMs = Math.max(worstStallMs, stall);
    }
    bufferedMs += (c.bytes / bytesPerSec) * 1000;
  }
  return { worstStallMs, totalStallMs, worstGapMs };
}

/** Seconds of audio in `bytes` of pcm. */
export const pcmSeconds = (bytes: number) => bytes / PCM_BYTES_PER_SEC;
