import { execFile } from 'node:child_process';
import { setPriority } from 'node:os';
import { promisify } from 'node:util';
import { OUTPUT_SAMPLE_RATE } from '@chorus/shared/audio-formats';
import type { AudioEncoder, EncodedSink } from './audio-encoder.ts';
import type { JobPriority } from '../processors/job-priority.ts';
import { spawnHere, whenStarted, type SpawnFn, type Spawned } from '../spawner/spawner.ts';

const LAME = 'lame';

/**
 * LAME's argv: s16le mono PCM at `inputRate` on stdin, 64 kb/s CBR mono mp3 at 24 kHz on stdout. Only numbers
 * and constants. Why each flag:
 * - `-t`: no Xing/Info tag frame, so the stream is plain frames (it is sent while it is encoded; a resumed job's
 *   bytes continue it).
 * - `--noreplaygain`: LAME otherwise analyses loudness for a tag that `-t` drops: ~20% of its CPU.
 * - `--flush`: each frame to the pipe at once (first byte).
 * - `-q 3`: libmp3lame's own default quality (what ffmpeg's libmp3lame encoder used).
 */
export function lameArgs(inputRate: number): string[] {
  if (!Number.isInteger(inputRate) || inputRate < 8_000 || inputRate > 48_000) throw new Error(`bad input rate ${inputRate}`);
  return [
    '-r', '-s', String(inputRate / 1000), '--bitwidth', '16', '--signed', '--little-endian', '-m', 'm',
    '--resample', String(OUTPUT_SAMPLE_RATE / 1000), '-b', '64', '--cbr', '-q', '3',
    '-t', '--noreplaygain', '--flush', '--quiet', '-', '-',
  ];
}

/** Fails the worker's start-up with one clear line when the `lame` binary is missing. */
export async function checkLame(): Promise<void> {
  try {
    await promisify(execFile)(LAME, ['--version']);
  } catch (err) {
    throw new Error(`lame not usable (${(err as Error).message}); install the lame package`);
  }
}

/**
 * mp3 through one `lame` process per job (the pool starts it ahead of time, idle on stdin). LAME rather than
 * ffmpeg for the default format: ffmpeg links ~215 shared libraries and spends ~0.1 s of CPU starting, more than
 * encoding a 300-character request's 20 s of audio; `lame` starts in ~5 ms. It resamples to 24 kHz itself.
 * Deterministic: the same PCM gives the same bytes (crash resume relies on it).
 */
export class LameEncoder implements AudioEncoder {
  readonly format = 'mp3' as const;
  readonly inputRate: number;
  readonly #child: Spawned;
  readonly #done: Promise<void>;
  #failure: Error | undefined;
  #destroyed = false;

  /** `spawn`: how the process starts (the worker's spawner helper; default child_process.spawn). */
  constructor(niceness = 0, inputRate = OUTPUT_SAMPLE_RATE, spawn: SpawnFn = spawnHere) {
    this.inputRate = inputRate;
    const child = spawn(LAME, lameArgs(inputRate));
    this.#child = child;
    if (niceness > 0) {
      whenStarted(child, (pid) => {
        try {
          setPriority(pid, niceness);
        } catch {
          // not permitted here: it runs at normal priority, which is only slower for others
        }
      });
    }
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-2000)));
    child.stdin.on('error', () => {}); // EPIPE after lame died surfaces through #done
    this.#done = new Promise<void>((resolve, reject) => {
      const fail = (why: string) => {
        this.#failure = this.#destroyed ? new Error('lame stopped') : new Error(`lame: ${why} ${stderr.trim()}`.trim());
        reject(this.#failure);
      };
      child.once('error', (err) => fail(err.message));
      child.once('close', (code, signal) => (code === 0 ? resolve() : fail(`exited with ${signal ?? code}`)));
    });
    this.#done.catch(() => {});
  }

  /** A warm encoder whose process died while idle must not be handed out. */
  get usable(): boolean {
    return !this.#failure && !this.#destroyed && this.#child.exitCode === null && this.#child.signalCode === null;
  }

  /** Called once, on the first encoded bytes. */
  onFirstOutput(fn: () => void): void {
    this.#child.stdout.once('data', () => fn());
  }

  attach(sink: EncodedSink): void {
    this.#child.stdout.on('data', (chunk: Buffer) => sink(chunk));
  }

  async write(pcm: Buffer): Promise<void> {
    if (this.#failure) throw this.#failure;
    if (this.#child.stdin.write(pcm)) return;
    await Promise.race([new Promise<void>((r) => this.#child.stdin.once('drain', r)), this.#done]);
    if (this.#failure) throw this.#failure;
  }

  /** Ends stdin; resolves once lame has exited and its output has all gone to the sink. */
  async finish(): Promise<void> {
    this.#child.stdin.end();
    await this.#done; // 'close': the process exited and its stdout ended
  }

  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#child.kill('SIGKILL');
    this.#child.stdin.destroy();
  }

  adopt(priority: JobPriority): void {
    whenStarted(this.#child, (pid) => {
      const release = priority.adopt(pid);
      this.#done.then(release, release);
    });
  }
}
