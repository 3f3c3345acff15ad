import { setPriority } from 'node:os';

/**
 * CPU niceness of a job's child processes (espeak-ng, ffmpeg). On a worker with more jobs than cores, the kernel
 * shares the CPU between them; what a listener waits for is a job's FIRST audio, while a job already streaming has
 * its next seconds of audio long before they are played (espeak-ng runs ~50× real time). So a realtime job runs at
 * full priority until its first bytes are out (for a resumed stream: its first bytes past what the crashed attempt
 * had published), then yields to jobs that have none yet. The work done is the same; who waits for it changes.
 */
export const NICENESS = {
  /** A realtime job before its first published bytes. */
  firstAudio: 0,
  /** A realtime job streaming: CFS gives a nice-0 process 3× its share (weights 1024 : 335). */
  streaming: 5,
  /** Batch items from start to end: a third of a streaming job's share again (335 : 110). */
  batch: 10,
} as const;

/**
 * One job's child processes, all at one niceness that only goes up (an unprivileged process cannot lower it), and
 * all stopped or running together (`pause`/`resume`: see first-audio-gate.ts).
 */
export class JobPriority {
  #niceness: number;
  readonly #pids = new Set<number>();
  #paused = false;
  readonly #onRaise: (() => void)[] = [];

  constructor(niceness: number = NICENESS.firstAudio) {
    this.#niceness = niceness;
  }

  get niceness(): number {
    return this.#niceness;
  }

  /**
   * A process working for this job (started for it, or a warm one it took): set to the job's niceness now and
   * whenever that changes. Call the returned function when it exits, so a recycled pid is never touched.
   */
  adopt(pid: number | undefined): () => void {
    if (!pid) return () => {};
    this.#pids.add(pid);
    if (this.#niceness > 0) renice(pid, this.#niceness);
    if (this.#paused) signal(pid, 'SIGSTOP');
    return () => this.#pids.delete(pid);
  }

  get paused(): boolean {
    return this.#paused;
  }

  /** Stops every adopted process (SIGSTOP) until `resume`: its CPU goes to jobs whose listeners have no audio yet. */
  pause(): void {
    if (this.#paused) return;
    this.#paused = true;
    for (const pid of this.#pids) signal(pid, 'SIGSTOP');
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    for (const pid of this.#pids) signal(pid, 'SIGCONT');
  }

  /** Raises the niceness of every adopted process (a lower value than the current one is ignored). */
  raise(niceness: number): void {
    if (niceness <= this.#niceness) return;
    this.#niceness = niceness;
    for (const pid of this.#pids) renice(pid, niceness);
    for (const fn of this.#onRaise.splice(0)) fn();
  }

  /** Calls `fn` once, the next time the niceness goes up: for a realtime job, once its first audio is out. */
  onRaise(fn: () => void): void {
    this.#onRaise.push(fn);
  }
}

function renice(pid: number, niceness: number): void {
  try {
    setPriority(pid, niceness);
  } catch {
    // Gone already, or not permitted here: it keeps its priority, which only makes it share the CPU evenly.
  }
}

/** Stops or continues a process; one already gone is left alone. */
export function signal(pid: number, sig: 'SIGSTOP' | 'SIGCONT'): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Gone already (its exit releases it from the job): nothing to stop or continue.
  }
}
