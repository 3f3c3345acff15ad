import { OUTPUT_SAMPLE_RATE, type AudioFormat } from '@chorus/shared/audio-formats';

/*
 * ffmpeg arguments per container. Only constants and validated numbers appear here. Why each flag:
 * - `-probesize 32` / `-analyzeduration 0`: do not wait for ~2 s of input before the first output.
 * - `-flush_packets 1`: hand each packet to the pipe at once.
 * - bitexact + `-map_metadata -1`: identical output for identical PCM (Ogg serials, encoder tags), which
 *   byte-exact resume after a worker crash depends on.
 * - Ogg `-page_duration 20000` (µs): small pages so Opus bytes leave every 20 ms, not once per second.
 * - AAC as ADTS: the only AAC framing that can be streamed.
 */

/** s16le mono PCM at `rate` on stdin (an encoder given an engine's native rate resamples it to 24 kHz itself). */
export function pcmInputArgs(rate = OUTPUT_SAMPLE_RATE): string[] {
  return ['-f', 's16le', '-ar', String(rate), '-ac', '1', '-probesize', '32', '-analyzeduration', '0'];
}


const COMMON_OUTPUT_ARGS = ['-fflags', '+bitexact', '-flags:a', '+bitexact', '-map_metadata', '-1', '-flush_packets', '1'];

export type FfmpegFormat = Exclude<AudioFormat, 'wav' | 'pcm'>;

const FORMAT_ARGS: Record<FfmpegFormat, string[]> = {
  mp3: ['-c:a', 'libmp3lame', '-b:a', '64k', '-write_xing', '0', '-id3v2_version', '0', '-f', 'mp3'],
  opus: ['-c:a', 'libopus', '-b:a', '32k', '-page_duration', '20000', '-f', 'ogg'],
  aac: ['-c:a', 'aac', '-b:a', '64k', '-aac_coder', 'fast', '-f', 'adts'],
  flac: ['-c:a', 'flac', '-sample_fmt', 's16', '-f', 'flac'],
};

export function encoderOutputArgs(format: FfmpegFormat): string[] {
  return [...COMMON_OUTPUT_ARGS, '-ar', String(OUTPUT_SAMPLE_RATE), '-ac', '1', ...FORMAT_ARGS[format]];
}

/** atempo accepts 0.5..100 per instance: chain instances for slower factors. */
export function atempoFilter(factor: number): string {
  if (!(factor > 0) || !Number.isFinite(factor)) throw new Error(`bad tempo ${factor}`);
  const parts: string[] = [];
  let rest = factor;
  while (rest < 0.5) {
    parts.push('atempo=0.5');
    rest /= 0.5;
  }
  parts.push(`atempo=${rest.toFixed(6)}`);
  return parts.join(',');
}

/** PCM → time-stretched PCM at `rate` (speeds an engine cannot reach natively). */
export function tempoOutputArgs(factor: number, rate = OUTPUT_SAMPLE_RATE): string[] {
  return ['-af', atempoFilter(factor), '-f', 's16le', '-ar', String(rate), '-ac', '1'];
}
