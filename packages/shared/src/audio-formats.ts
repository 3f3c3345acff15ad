import { z } from 'zod';

/** Every container a client may ask for; the order is the one OpenAI documents. */
export const AudioFormat = z.enum(['mp3', 'opus', 'aac', 'flac', 'wav', 'pcm']);
export type AudioFormat = z.infer<typeof AudioFormat>;

/** All audio leaving a worker is 24 kHz mono 16-bit, whatever the engine's native rate. */
export const OUTPUT_SAMPLE_RATE = 24_000;
export const OUTPUT_CHANNELS = 1;
export const OUTPUT_BYTES_PER_SAMPLE = 2;

export interface FormatInfo {
  contentType: string;
  extension: string;
}

export const FORMAT_INFO: Record<AudioFormat, FormatInfo> = {
  mp3: { contentType: 'audio/mpeg', extension: 'mp3' },
  opus: { contentType: 'audio/opus', extension: 'opus' },
  aac: { contentType: 'audio/aac', extension: 'aac' },
  flac: { contentType: 'audio/flac', extension: 'flac' },
  wav: { contentType: 'audio/wav', extension: 'wav' },
  pcm: { contentType: 'audio/pcm', extension: 'pcm' },
};
