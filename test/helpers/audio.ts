import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface ProbeResult {
  codec: string;
  sampleRate: number;
  channels: number;
  formatName: string;
}

/** ffprobe on a buffer (written to a temp file: some demuxers want to seek). */
export async function probe(audio: Buffer, ext: string): Promise<ProbeResult> {
  const dir = mkdtempSync(path.join(tmpdir(), 'chorus-probe-'));
  const file = path.join(dir, `a.${ext}`);
  writeFileSync(file, audio);
  try {
    const { stdout } = await execFileAsync('ffprobe', [
      '-v', 'error', '-show_streams', '-show_format', '-of', 'json', file,
    ]);
    const j = JSON.parse(stdout) as { streams: Record<string, string | number>[]; format: Record<string, string> };
    const s = j.streams[0]!;
    return {
      codec: String(s.codec_name), sampleRate: Number(s.sample_rate), channels: Number(s.channels),
      formatName: j.format.format_name!,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Decodes any container to 24 kHz mono s16le with ffmpeg; returns the samples' bytes. */
export function decodeToPcm(audio: Buffer, inputFormat?: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const args = ['-v', 'error', ...(inputFormat ? ['-f', inputFormat] : []), '-i', 'pipe:0', '-f', 's16le', '-ac', '1', '-ar', '24000', 'pipe:1'];
    const p = spawn('ffmpeg', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    p.stdout.on('data', (d: Buffer) => out.push(d));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('close', (code) => (code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`ffmpeg decode failed: ${err}`))));
    p.stdin.on('error', () => {});
    p.stdin.end(audio);
  });
}

/**
 * decodeToPcm for many files in one ffmpeg run, each file its own input and output: starting ffmpeg costs about
 * 0.1 s of CPU, more than decoding a few seconds of audio. The files go through a temp dir under `names` (safe file
 * names, e.g. custom_ids), so ffmpeg's error names the one it failed on. Being seekable, an mp3 input has its gapless
 * padding trimmed (a pipe's decode keeps up to one frame of it).
 */
export async function decodeAllToPcm(audios: Buffer[], names: string[]): Promise<Buffer[]> {
  if (audios.length === 0) return [];
  const dir = await mkdtemp(path.join(tmpdir(), 'chorus-decode-'));
  try {
    const input = (i: number) => path.join(dir, names[i]!);
    const output = (i: number) => path.join(dir, `${names[i]!}.s16le`);
    await Promise.all(audios.map((a, i) => writeFile(input(i), a)));
    const args = ['-v', 'error', '-nostdin', ...audios.flatMap((_, i) => ['-i', input(i)])];
    for (let i = 0; i < audios.length; i++) args.push('-map', `${i}:a:0`, '-f', 's16le', '-ac', '1', '-ar', '24000', output(i));
    await execFileAsync('ffmpeg', args, { maxBuffer: 1 << 20 }).catch((err: { stderr?: string }) => {
      throw new Error(`ffmpeg decode failed: ${err.stderr ?? String(err)}`);
    });
    return await Promise.all(audios.map((_, i) => readFile(output(i))));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Decoded duration in seconds. */
export async function decodedDuration(audio: Buffer, inputFormat?: string): Promise<number> {
  return (await decodeToPcm(audio, inputFormat)).length / 2 / 24_000;
}

/** The input sample rate and channel count in an Ogg/Opus stream's OpusHead packet. */
export function opusHead(audio: Buffer): { inputRate: number; channels: number } {
  const at = audio.indexOf('OpusHead');
  if (at < 0) throw new Error('no OpusHead');
  return { channels: audio.readUInt8(at + 9), inputRate: audio.readUInt32LE(at + 12) };
}

/** Root-mean-square level of s16le samples (to check audio is not silence). */
export function rms(pcm: Buffer): number {
  let sum = 0;
  const n = pcm.length >> 1;
  for (let i = 0; i < n; i++) {
    const s = pcm.readInt16LE(i * 2);
    sum += s * s;
  }
  return Math.sqrt(sum / Math.max(1, n));
}
