import type { JobPriority } from './job-priority.ts';

/**
 * A streaming job is stopped only while its listener has at least this much audio it has not played yet. It is
 * continued when its lead falls under this (looked at every RECHECK_MS), and espeak-ng/LAME make the next audio in
 * milliseconds. 2 s left the streams of the last second's starts running beside a waiting job: under 5× overload the
 * accepted first byte's p95 was 40–50 ms at 2 s, 32 ms at 1 s (bench/admission.ts).
 */
export const MIN_AHEAD_S = 1;
/** A job counts as waiting for its first audio this long at most (an engine that never starts does not hold others). */
export const MAX_FIRST_AUDIO_MS = 5_000;
/**
 * A job still counts as waiting this long after its first audio record is in Redis: the record has yet to cross the
 * API to the client, whose processes would otherwise share the CPU with every stream continued at that moment
 * (under 5× overload the relay's p95, record → client, went 15–18 → 6–8 ms; bench/admission.ts).
 */
export const FIRST_RECORD_GRACE_MS = 15;
/** How often the gate looks again while it holds jobs stopped (their lead shrinks as their listeners play). */
const RECHECK_MS = 50;
/** Longest a deferred pool refill waits for a moment when no job waits for first audio. */
export const REFILL_MAX_DELAY_MS = 250;

/** Runs a warm pool's refill (process starts) at a moment that delays no job's first audio. */
export type DeferRefill = (refill: () => void) => void;

/** Longest a used warm process waits for its replacement when the job that took it has no first audio yet. */
const REFILL_AFTER_MS = 100;

/**
 * For a warm pool that just handed out a process: `refill` once, when the taker's first audio is out
 * (`onFirstAudio`) or REFILL_AFTER_MS have passed, whichever comes first, through `defer`. Starting a process
 * forks the worker, which must not fall between a job's start and its first byte.
 */
export function refillOnce(onFirstAudio: (fn: () => void) => void, refill: () => void, defer: DeferRefill): void {
  let done = false;
  const once = () => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    defer(refill);
  };
  const timer = setTimeout(once, REFILL_AFTER_MS);
  onFirstAudio(once);
}

interface Streaming {
  priority: JobPriority;
  /** Seconds of audio the job's listener has and has not played yet (Infinity: nobody listens, a batch item). */
  ahead(): number;
}

/**
 * While any job on this worker waits for its first audio (a new request, or a resumed stream regenerating what it
 * had sent), the child processes of jobs whose listeners are well ahead (≥ MIN_AHEAD_S of unplayed audio) and of
 * batch items are stopped (SIGSTOP), and continued once no job waits or their lead falls under MIN_AHEAD_S.
 * Niceness (job-priority.ts) only weights the kernel's share — a nice-5 process still gets a quarter of the CPU
 * against a nice-0 one — and does nothing for the worker's own event loop, which moves every running job's audio:
 * measured, admitted requests under 5× overload had their first byte 7.5× later than unloaded at p95, and a
 * worker that took over a dead peer's streams regenerated their audio beside its own jobs. espeak-ng and LAME run
 * ~50–250× faster than real time, so a stream well ahead loses nothing its listener hears.
 */
export class FirstAudioGate {
  readonly #waiting = new Map<JobPriority, number>();
  readonly #streaming = new Set<Streaming>();
  readonly #maxFirstAudioMs: number;
  readonly #deferred = new Set<{ run(): void }>();
  #timer: NodeJS.Timeout | undefined;

  constructor(opts: { maxFirstAudioMs?: number } = {}) {
    this.#maxFirstAudioMs = opts.maxFirstAudioMs ?? MAX_FIRST_AUDIO_MS;
  }

  /**
   * A job waiting for its first audio (since now); call the returned function when it ends, or when its first
   * audio is out with `afterMs` (it counts as waiting that much longer; FIRST_RECORD_GRACE_MS).
   */
  waitForFirstAudio(priority: JobPriority): (afterMs?: number) => void {
    this.#waiting.set(priority, performance.now());
    this.#update();
    const leave = () => {
      if (this.#waiting.delete(priority)) this.#update();
    };
    return (afterMs = 0) => {
      if (afterMs > 0) setTimeout(leave, afterMs).unref();
      else leave();
    };
  }

  /** A job that may be stopped while others wait; call the returned function when it ends (it is continued). */
  streaming(priority: JobPriority, ahead: () => number): () => void {
    const entry = { priority, ahead };
    this.#streaming.add(entry);
    this.#update();
    return () => {
      if (!this.#streaming.delete(entry)) return;
      priority.resume();
      this.#update();
    };
  }

  /**
   * Runs `refill` once no job waits for its first audio, or after REFILL_MAX_DELAY_MS. Starting a process forks the
   * whole worker (Node spawns by fork + exec), blocking its event loop for several milliseconds at ~150 MB RSS and
   * more on a busy host (bench/profile.ts: `ChildProcess.spawn` was a third of the worker's busy time); a job
   * waiting for its first audio needs that event loop.
   */
  whenIdle(refill: () => void): void {
    if (this.#waiting.size === 0) {
      setImmediate(refill);
      return;
    }
    const entry = {
      timer: setTimeout(() => entry.run(), REFILL_MAX_DELAY_MS).unref(),
      run: () => {
        if (!this.#deferred.delete(entry)) return;
        clearTimeout(entry.timer);
        refill();
      },
    };
    this.#deferred.add(entry);
  }

  /** Jobs stopped now (for tests and logs). */
  get pausedCount(): number {
    let n = 0;
    for (const s of this.#streaming) if (s.priority.paused) n++;
    return n;
  }

  #update(): void {
    const now = performance.now();
    for (const [p, since] of this.#waiting) if (now - since > this.#maxFirstAudioMs) this.#waiting.delete(p);
    const someoneWaits = this.#waiting.size > 0;
    if (!someoneWaits) for (const d of this.#deferred) setImmediate(() => d.run());
    let held = false;
    for (const s of this.#streaming) {
      if (someoneWaits && !this.#waiting.has(s.priority) && s.ahead() >= MIN_AHEAD_S) {
        s.priority.pause();
        held = true;
      } else {
        s.priority.resume();
      }
    }
    clearTimeout(this.#timer);
    this.#timer = held || someoneWaits ? setTimeout(() => this.#update(), RECHECK_MS).unref() : undefined;
  }

  /** Continues every stopped job (worker shutdown). */
  close(): void {
    clearTimeout(this.#timer);
    this.#waiting.clear();
    for (const d of this.#deferred) d.run();
    for (const s of this.#streaming) s.priority.resume();
    this.#streaming.clear();
  }
}
