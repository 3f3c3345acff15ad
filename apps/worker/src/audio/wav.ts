import { OUTPUT_BYTES_PER_SAMPLE, OUTPUT_CHANNELS } from '@chorus/shared/audio-formats';

/** Size value for a WAV whose length is unknown while streaming (what OpenAI sends). */
export const STREAMING_SIZE = 0xffffffff;

/** 44-byte RIFF/WAVE header for 16-bit PCM; `dataBytes` undefined = streaming placeholder sizes. */
export function wavHeader(sampleRate: number, dataBytes?: number): Buffer {
  const h = Buffer.alloc(44);
  const blockAlign = OUTPUT_CHANNELS * OUTPUT_BYTES_PER_SAMPLE;
  h.write('RIFF', 0, 'ascii');
  h.writeUInt32LE(dataBytes === undefined ? STREAMING_SIZE : 36 + dataBytes, 4);
  h.write('WAVE', 8, 'ascii');
  h.write('fmt ', 12, 'ascii');
  h.writeUInt32LE(16, 16);
  h.writeUInt16LE(1, 20); // PCM
  h.writeUInt16LE(OUTPUT_CHANNELS, 22);
  h.writeUInt32LE(sampleRate, 24);
  h.writeUInt32LE(sampleRate * blockAlign, 28);
  h.writeUInt16LE(blockAlign, 32);
  h.writeUInt16LE(16, 34);
  h.write('data', 36, 'ascii');
  h.writeUInt32LE(dataBytes === undefined ? STREAMING_SIZE : dataBytes, 40);
  return h;
}

export interface WavFormat {
  sampleRate: number;
  channels: number;
  bitsPerSample: number;
  /** Offset of the first sample byte. */
  dataOffset: number;
}

/**
 * Reads the header of a WAV produced by a tool writing to a pipe (sizes may be placeholders, so only the chunk
 * layout is trusted). Returns undefined until enough bytes have arrived.
 */
export function parseWavHeader(buf: Buffer): WavFormat | undefined {
  if (buf.length < 12) return undefined;
  if (buf.toString('ascii', 0, 4) !== 'RIFF' || buf.toString('ascii', 8, 12) !== 'WAVE') {
    throw new Error('not a RIFF/WAVE stream');
  }
  let off = 12;
  let fmt: Omit<WavFormat, 'dataOffset'> | undefined;
  while (off + 8 <= buf.length) {
    const id = buf.toString('ascii', off, off + 4);
    const size = buf.readUInt32LE(off + 4);
    if (id === 'data') {
      if (!fmt) throw new Error('WAV data chunk before fmt chunk');
      return { ...fmt, dataOffset: off + 8 };
    }
    if (off + 8 + size > buf.length) return undefined;
    if (id === 'fmt ') {
      fmt = {
        channels: buf.readUInt16LE(off + 10),
        sampleRate: buf.readUInt32LE(off + 12),
        bitsPerSample: buf.readUInt16LE(off + 22),
      };
    }
    off += 8 + size + (size & 1);
  }
  return undefined;
}
