import { setPriority } from 'node:os';
import { PassThrough } from 'node:stream';
import ffmpeg from 'fluent-ffmpeg';

/**
 * One ffmpeg process with piped stdin/stdout, started at construction (so a pool can hold it warm, waiting on
 * stdin). The only module that touches fluent-ffmpeg: upstream is archived, keep it replaceable.
 */
export class FfmpegProcess {
  readonly #input = new PassThrough({ highWaterMark: 64 * 1024 });
  // No 'close' from the output: fluent-ffmpeg kills ffmpeg and reports "Output stream closed" when its target
  // closes and ffmpeg has not exited 20 ms later, which happens to healthy encoders on a loaded machine (found by
  // bench/soak.ts). Completion is ffmpeg's own 'end' event instead.
  readonly #output = new PassThrough({ highWaterMark: 64 * 1024, emitClose: false });
  readonly #command: ffmpeg.FfmpegCommand;
  readonly done: Promise<void>;
  #failure: Error | undefined;
  #destroyed = false;
  #pid: number | undefined;
  #onPid: ((pid: number) => void)[] = [];

  /** `niceness` > 0 lowers the process's CPU priority (batch work yields the CPU to realtime requests). */
  constructor(inputArgs: string[], outputArgs: string[], niceness = 0) {
    this.#command = ffmpeg({ logger: undefined })
      .input(this.#input)
      .inputOptions(inputArgs)
      .outputOptions(['-nostdin', '-hide_banner', '-loglevel', 'error', ...outputArgs]);
    this.done = new Promise<void>((resolve, reject) => {
      this.#command.once('end', () => resolve());
      this.#command.once('error', (err: Error, _stdout: string, stderr: string) => {
        this.#failure = this.#destroyed ? new Error('ffmpeg stopped') : new Error(`ffmpeg: ${err.message} ${stderr ?? ''}`.trim());
        reject(this.#failure);
      });
    });
    this.done.catch(() => {});
    this.#input.on('error', () => {}); // EPIPE after ffmpeg died surfaces through `done`
    this.#command.once('start', () => {
      const pid = (this.#command as unknown as { ffmpegProc?: { pid?: number } }).ffmpegProc?.pid;
      if (!pid) return;
      this.#pid = pid;
      try {
        if (niceness > 0) setPriority(pid, niceness);
      } catch {
        // not permitted here: it runs at normal priority, which is only slower for others
      }
      for (const fn of this.#onPid.splice(0)) fn(pid);
    });
    this.#command.pipe(this.#output, { end: true });
  }

  /** Calls `fn` with ffmpeg's pid once it runs (at once if it does); `fn` is not called for one that never started. */
  withPid(fn: (pid: number) => void): void {
    if (this.#pid !== undefined) fn(this.#pid);
    else this.#onPid.push(fn);
  }

  get output(): PassThrough {
    return this.#output;
  }

  get failed(): boolean {
    return this.#failure !== undefined;
  }

  async write(data: Buffer): Promise<void> {
    if (this.#failure) throw this.#failure;
    if (this.#input.write(data)) return;
    await Promise.race([new Promise<void>((r) => this.#input.once('drain', r)), this.done]);
    if (this.#failure) throw this.#failure;
  }

  /** Ends stdin and waits for ffmpeg to exit and its output to be consumed. */
  async end(): Promise<void> {
    this.#input.end();
    const outputEnded = this.#output.readableEnded
      ? Promise.resolve()
      : new Promise<void>((r) => this.#output.once('end', r));
    await this.done;
    await outputEnded;
  }

  kill(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#command.kill('SIGKILL');
    this.#input.destroy();
  }
}
