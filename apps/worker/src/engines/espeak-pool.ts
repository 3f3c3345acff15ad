import { spawnHere, whenStarted, type SpawnFn, type Spawned } from '../spawner/spawner.ts';
import { NICENESS, type JobPriority } from '../processors/job-priority.ts';
import { refillOnce, type DeferRefill } from '../processors/first-audio-gate.ts';

/** Argument sets (voice, rate, pitch) kept warm at most; the least recently used one beyond it is dropped. */
export const ESPEAK_POOL_KEYS = 8;

/** One espeak-ng process with piped stdio, started at construction; it waits on stdin for its text. */
export class EspeakProcess {
  readonly child: Spawned;
  /** Settles when the process has exited or could not start (never rejects). */
  readonly exited: Promise<void>;
  /** Its exit status once its output is closed; rejects when it could not start. */
  readonly closed: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  #stderr = '';
  #exited = false;
  #killed = false;

  /** `args` must hold only validated values: user text goes to stdin, never argv. */
  constructor(binary: string, args: readonly string[], spawn: SpawnFn = spawnHere) {
    this.child = spawn(binary, args);
    this.child.stderr.setEncoding('utf8').on('data', (d: string) => (this.#stderr = (this.#stderr + d).slice(-2000)));
    this.exited = new Promise<void>((resolve) => {
      const done = () => {
        this.#exited = true;
        resolve();
      };
      this.child.once('exit', done);
      this.child.once('error', done);
    });
    this.closed = new Promise((resolve, reject) => {
      this.child.once('error', reject);
      this.child.once('close', (code, signal) => resolve({ code, signal }));
    });
    this.closed.catch(() => {}); // observed by whoever runs it
    this.child.stdin.on('error', () => {}); // EPIPE when espeak exits early is reported through its exit code
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** The last 2,000 characters it wrote to stderr. */
  get stderr(): string {
    return this.#stderr;
  }

  /** Still running as far as this process knows (an exit not yet reported on the event loop is not seen). */
  get alive(): boolean {
    const c = this.child;
    return !this.#exited && !this.#killed && c.exitCode === null && c.signalCode === null;
  }

  kill(): void {
    if (!this.alive) return;
    this.#killed = true;
    this.child.kill('SIGKILL');
  }

  /** Calls `fn` with its pid once it has one (a process started through the spawner learns it by message). */
  whenStarted(fn: (pid: number) => void): void {
    whenStarted(this.child, fn);
  }

  /** Kills it and closes its pipes: for a process nobody will read from. */
  discard(): void {
    this.kill();
    this.child.stdin.destroy();
    this.child.stdout.destroy();
  }
}

/**
 * Keeps `size` espeak-ng processes per argument set started and idle on stdin, for the `maxKeys` argument sets
 * used most recently by realtime work. Starting espeak-ng (process start + voice load) costs 15–18 ms, about half
 * a short mp3 request's time to first byte; a warm one gives its first PCM ~1.2–2 ms after its text arrives, the
 * same bytes. Idle processes cost ~7.7 MB RSS each, mostly shared. An argument set is only kept warm once a
 * realtime request has used it; the least recently used one beyond `maxKeys` is dropped and its idle processes
 * killed. Same rules as the EncoderPool: refills wait for the taker's first audio, batch work gets a fresh process.
 */
export class EspeakPool {
  readonly #binary: string;
  readonly #size: number;
  readonly #maxKeys: number;
  readonly #deferRefill: DeferRefill;
  readonly #spawn: SpawnFn;
  /** Idle processes per argument set, least recently used set first. */
  readonly #idle = new Map<string, EspeakProcess[]>();
  #closed = false;

  /** `deferRefill`: when to start replacements (the first-audio gate's `whenIdle`; default: the next turn). */
  constructor(
    binary: string, size: number, maxKeys = ESPEAK_POOL_KEYS, deferRefill: DeferRefill = setImmediate, spawn: SpawnFn = spawnHere,
  ) {
    this.#deferRefill = deferRefill;
    this.#spawn = spawn;
    this.#binary = binary;
    this.#size = size;
    this.#maxKeys = Math.max(1, maxKeys);
  }

  /**
   * A process for one run with these args. Realtime work (no priority, or one still at NICENESS.firstAudio)
   * takes a warm one if there is one, and marks these args as recently used. Work at a higher niceness (batch
   * items, a job already streaming) gets a fresh process and leaves the warm ones to first audio.
   */
  acquire(args: readonly string[], priority?: JobPriority): EspeakProcess {
    const background = priority !== undefined && priority.niceness > NICENESS.firstAudio;
    if (background || this.#size === 0 || this.#closed) return new EspeakProcess(this.#binary, args, this.#spawn);
    const key = args.join('\0');
    const idle = this.#touch(key);
    let proc: EspeakProcess | undefined;
    while ((proc = idle.shift()) && !proc.alive) proc.discard();
    proc ??= new EspeakProcess(this.#binary, args, this.#spawn);
    // Refilled once the job that took it has its first audio out (its niceness is raised then).
    refillOnce((fn) => priority?.onRaise(fn), () => this.#refill(key, args), this.#deferRefill);
    return proc;
  }

  /** Pids of the idle processes kept for these args (for tests and diagnostics). */
  idlePids(args: readonly string[]): number[] {
    return (this.#idle.get(args.join('\0')) ?? []).flatMap((p) => (p.pid === undefined ? [] : [p.pid]));
  }

  /** Marks `key` most recently used (adding it if new), dropping the least recently used beyond `maxKeys`. */
  #touch(key: string): EspeakProcess[] {
    const idle = this.#idle.get(key) ?? [];
    this.#idle.delete(key);
    this.#idle.set(key, idle);
    for (const [oldKey, old] of this.#idle) {
      if (this.#idle.size <= this.#maxKeys) break;
      this.#idle.delete(oldKey);
      for (const p of old.splice(0)) p.discard();
    }
    return idle;
  }

  #refill(key: string, args: readonly string[]): void {
    const idle = this.#idle.get(key);
    if (this.#closed || !idle) return; // closed, or its args were dropped meanwhile
    while (idle.length < this.#size) {
      const proc = new EspeakProcess(this.#binary, args, this.#spawn);
      idle.push(proc);
      // One that dies while idle leaves the pool at once (the next realtime use of these args refills it).
      void proc.exited.then(() => {
        const i = idle.indexOf(proc);
        if (i < 0) return;
        idle.splice(i, 1);
        proc.discard();
      });
    }
  }

  /** Kills every idle process; later acquires get fresh ones. */
  close(): void {
    this.#closed = true;
    for (const idle of this.#idle.values()) for (const p of idle.splice(0)) p.discard();
    this.#idle.clear();
  }
}
