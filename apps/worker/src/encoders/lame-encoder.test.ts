import { execFile } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { LameEncoder, lameArgs } from './lame-encoder.ts';

/** Runs `cmd` with `input` on stdin; its stdout. */
function pipeThrough(cmd: string, args: string[], input: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const p = execFile(cmd, args, { encoding: 'buffer', maxBuffer: 1 << 24 }, (err, out) => (err ? reject(err) : resolve(out)));
    p.stdin!.end(input);
  });
}

/** `seconds` of a 440 Hz s16le tone at `rate`. */
function tone(seconds: number, rate: number): Buffer {
  const n = Math.round(seconds * rate);
  const pcm = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) pcm.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / rate)), i * 2);
  return pcm;
}

async function encode(pcm: Buffer, rate: number, piece: number): Promise<Buffer> {
  const encoder = new LameEncoder(0, rate);
  const out: Buffer[] = [];
  encoder.attach((chunk) => out.push(chunk));
  for (let at = 0; at < pcm.length; at += piece) await encoder.write(pcm.subarray(at, at + piece));
  await encoder.finish();
  return Buffer.concat(out);
}

/** What ffprobe reads in an mp3 on stdin: codec, rate, channels, and the decoded duration. */
async function probeMp3(mp3: Buffer): Promise<{ codec: string; rate: number; channels: number; seconds: number }> {
  const json = await pipeThrough('ffprobe', ['-v', 'error', '-f', 'mp3', '-show_streams', '-count_packets', '-of', 'json', '-i', 'pipe:0'], mp3);
  const s = JSON.parse(json.toString('utf8')).streams[0];
  // 576 samples per MPEG-2 layer III frame (24 kHz)
  return { codec: s.codec_name, rate: Number(s.sample_rate), channels: s.channels, seconds: (Number(s.nb_read_packets) * 576) / Number(s.sample_rate) };
}

describe('LameEncoder (real lame)', () => {
  it('encodes PCM at the engine rate into 24 kHz mono mp3 frames of the right length, without a tag frame', async () => {
    const mp3 = await encode(tone(3, 22_050), 22_050, 4096);
    const info = await probeMp3(mp3);
    expect(info).toMatchObject({ codec: 'mp3', rate: 24_000, channels: 1 });
    // 3 s of input plus LAME's encoder delay and padding (< 0.1 s)
    expect(info.seconds).toBeGreaterThanOrEqual(3);
    expect(info.seconds).toBeLessThan(3.15);
    // The first bytes are a frame header (no "Info"/"Xing" tag frame, no ID3): a resumed job's bytes splice on.
    expect(mp3[0]).toBe(0xff);
    expect(mp3.subarray(0, 200).includes(Buffer.from('Info'))).toBe(false);
    expect(mp3.subarray(0, 200).includes(Buffer.from('Xing'))).toBe(false);
  });

  it('gives the same bytes for the same PCM whatever the write sizes (crash resume relies on it)', async () => {
    const pcm = tone(2, 22_050);
    const a = await encode(pcm, 22_050, 4096);
    const b = await encode(pcm, 22_050, 333);
    expect(b.equals(a)).toBe(true);
  });

  it('takes 24 kHz PCM (after a tempo stage) too', async () => {
    const info = await probeMp3(await encode(tone(1, 24_000), 24_000, 8192));
    expect(info).toMatchObject({ codec: 'mp3', rate: 24_000, channels: 1 });
  });

  it('decodes to the tone it was given', async () => {
    const mp3 = await encode(tone(1, 24_000), 24_000, 8192);
    const pcm = await pipeThrough('ffmpeg', ['-v', 'error', '-f', 'mp3', '-i', 'pipe:0', '-f', 's16le', '-ac', '1', '-ar', '24000', 'pipe:1'], mp3);
    // 440 Hz: count zero crossings over the middle half second (880 per second)
    const mid = pcm.subarray(24_000 * 0.25 * 2, 24_000 * 0.75 * 2);
    let crossings = 0;
    for (let i = 2; i < mid.length; i += 2) if ((mid.readInt16LE(i - 2) < 0) !== (mid.readInt16LE(i) < 0)) crossings++;
    expect(crossings).toBeGreaterThan(420);
    expect(crossings).toBeLessThan(460);
  });

  it('builds argv from numbers only and refuses a rate outside 8–48 kHz', () => {
    expect(lameArgs(22_050)).toContain('22.05');
    expect(() => lameArgs(96_000)).toThrow();
    expect(() => lameArgs(Number.NaN)).toThrow();
  });

  it('reports a process killed mid-stream as a failure, and destroy() as stopped', async () => {
    const encoder = new LameEncoder(0, 24_000);
    encoder.attach(() => {});
    expect(encoder.usable).toBe(true);
    encoder.destroy();
    await expect(encoder.finish()).rejects.toThrow(/stopped/);
    expect(encoder.usable).toBe(false);
  });
});
