import { existsSync, readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import type { Speaker } from '@chorus/shared';
import { EspeakEngine, runEspeak } from './espeak-engine.ts';
import { EspeakPool } from './espeak-pool.ts';
import { JobPriority, NICENESS } from '../processors/job-priority.ts';

/*
 * The warm espeak-ng pool against the real espeak-ng. Which process served a run is read from the pid the run
 * hands its JobPriority (the worker's own hook for a job's child processes), so "served warm" means: the pid was
 * idle in the pool before the call.
 */

const ARGS = ['--stdout', '-b', '1', '-v', 'en-us', '-s', '175'];
const argsAt = (wpm: number) => ['--stdout', '-b', '1', '-v', 'en-us', '-s', String(wpm)];
const TEXTS = ['Hello there, this is a warm process speaking.', 'Zwölf Boxkämpfer jagen Viktor quer über den Sylter Deich; 42.'];
const LONG = 'This sentence keeps espeak-ng busy for a good while longer. '.repeat(40);

/** A JobPriority that records the pids of the processes it was given. */
class Recording extends JobPriority {
  readonly pids: number[] = [];
  override adopt(pid: number | undefined): () => void {
    if (pid) this.pids.push(pid);
    return super.adopt(pid);
  }
}

async function collect(chunks: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const pcm of chunks) parts.push(pcm);
  return Buffer.concat(parts);
}
const never = () => new AbortController().signal;
/** A fresh espeak-ng, no pool: the reference. */
const fresh = (text: string, args = ARGS) => collect(runEspeak('espeak-ng', args, text, never()));
/** One run through `pool`; resolves with its audio and the pid that produced it. */
async function pooled(pool: EspeakPool, text: string, args = ARGS, priority = new Recording()) {
  const audio = await collect(runEspeak('espeak-ng', args, text, never(), priority, pool));
  expect(priority.pids).toHaveLength(1);
  return { audio, pid: priority.pids[0]! };
}

/** A process that is gone (reaped), or a zombie: no longer running anything. */
const running = (pid: number) => existsSync(`/proc/${pid}`) && !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));

async function until(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const t0 = Date.now();
  while (!check()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
/** After a realtime run the pool refills its args (at the latest the 100 ms refill delay later). */
const warmFor = (pool: EspeakPool, args = ARGS) => until(() => pool.idlePids(args).length === 1, `a warm process for ${args.join(' ')}`);

let pools: EspeakPool[] = [];
const newPool = (size = 1, keys?: number) => {
  const p = new EspeakPool('espeak-ng', size, keys);
  pools.push(p);
  return p;
};
afterEach(() => {
  for (const p of pools) p.close();
  pools = [];
});

describe('EspeakPool', () => {
  it('a warm process gives the same bytes as a fresh one, and serves the next run of the same args', async () => {
    const pool = newPool();
    expect(pool.idlePids(ARGS)).toEqual([]); // nothing warm before the args are used
    const first = await pooled(pool, TEXTS[0]!);
    expect(first.audio.equals(await fresh(TEXTS[0]!))).toBe(true);
    for (const text of TEXTS) {
      await warmFor(pool);
      const [warm] = pool.idlePids(ARGS);
      expect(running(warm!)).toBe(true); // started before the call
      const run = await pooled(pool, text);
      expect(run.pid).toBe(warm); // served by the process that was idle before the call
      const reference = await fresh(text);
      expect(reference.length).toBeGreaterThan(10_000);
      expect(run.audio.equals(reference), text).toBe(true);
    }
  });

  it('the engine keeps its processes warm per argv and kills the idle ones on close', async () => {
    const engine = new EspeakEngine('espeak-ng', { poolSize: 1 });
    await engine.init();
    const speaker: Speaker = { id: 's', name: 'S', engine: 'espeak', voice: 'en-us', language: 'en-US' };
    const speak = (priority: Recording) =>
      collect(engine.synthesize({ text: TEXTS[0]!, speaker, speed: 1, priority }, never()));
    const args = engine.args({ text: '', speaker, speed: 1 });
    await speak(new Recording());
    await warmFor(engine.pool, args);
    const [warm] = engine.pool.idlePids(args);
    const second = new Recording();
    expect((await speak(second)).equals(await fresh(TEXTS[0]!, args))).toBe(true);
    expect(second.pids).toEqual([warm]);
    await warmFor(engine.pool, args);
    const [idle] = engine.pool.idlePids(args);
    await engine.close();
    await until(() => !running(idle!), 'the idle process to be killed');
    expect(engine.pool.idlePids(args)).toEqual([]);
  });

  it('a warm process that died while idle is not handed out; the run still succeeds', async () => {
    const pool = newPool();
    await pooled(pool, TEXTS[0]!);
    await warmFor(pool);
    const [dead] = pool.idlePids(ARGS);
    process.kill(dead!, 'SIGKILL');
    await until(() => !pool.idlePids(ARGS).includes(dead!), 'the pool to notice the death');
    const run = await pooled(pool, TEXTS[0]!);
    expect(run.pid).not.toBe(dead);
    expect(run.audio.equals(await fresh(TEXTS[0]!))).toBe(true);
  });

  it('abort kills the warm process it was given, and the run throws the abort', async () => {
    const pool = newPool();
    await pooled(pool, TEXTS[0]!);
    await warmFor(pool);
    const [warm] = pool.idlePids(ARGS);
    const ac = new AbortController();
    const priority = new Recording();
    const run = runEspeak('espeak-ng', ARGS, LONG, ac.signal, priority, pool);
    expect((await run.next()).done).toBe(false); // it is speaking
    expect(priority.pids).toEqual([warm]);
    // Stopped, it produces nothing more: once what it wrote is read, only the abort can end the run.
    process.kill(warm!, 'SIGSTOP');
    let next: Promise<IteratorResult<Buffer>>;
    for (;;) {
      next = run.next();
      const read = await Promise.race([next, new Promise((r) => setTimeout(() => r('waiting'), 200))]);
      if (read === 'waiting') break;
      expect((read as IteratorResult<Buffer>).done).toBe(false);
    }
    ac.abort();
    const outcome = await Promise.race([
      next.then(() => 'more audio', (err: Error) => err.name),
      new Promise((r) => setTimeout(() => r('still waiting'), 5_000).unref()),
    ]);
    if (outcome === 'still waiting') process.kill(warm!, 'SIGKILL');
    expect(outcome).toBe('AbortError');
    await until(() => !running(warm!), 'the aborted process to be gone');
  });

  it('batch-niceness work gets a fresh process and leaves the warm one idle', async () => {
    const pool = newPool();
    await pooled(pool, TEXTS[0]!);
    await warmFor(pool);
    const [warm] = pool.idlePids(ARGS);
    const batch = await pooled(pool, TEXTS[1]!, ARGS, new Recording(NICENESS.batch));
    expect(batch.pid).not.toBe(warm);
    expect(batch.audio.equals(await fresh(TEXTS[1]!))).toBe(true);
    expect(pool.idlePids(ARGS)).toEqual([warm]);
    expect(running(warm!)).toBe(true);
    // Batch args are not kept warm.
    await pooled(pool, TEXTS[1]!, argsAt(200), new Recording(NICENESS.batch));
    await new Promise((r) => setTimeout(r, 300)); // past the 100 ms refill delay: nothing is refilled for it
    expect(pool.idlePids(argsAt(200))).toEqual([]);
  });

  it('keeps at most `maxKeys` argument sets warm: the least recently used is dropped and its process killed', async () => {
    const pool = newPool(1, 2);
    const [a, b, c] = [argsAt(150), argsAt(160), argsAt(170)];
    await pooled(pool, TEXTS[0]!, a);
    await warmFor(pool, a);
    await pooled(pool, TEXTS[0]!, b);
    await warmFor(pool, b);
    const [warmA] = pool.idlePids(a);
    const [warmB] = pool.idlePids(b);
    // a used again: b is now the least recent, and c pushes it out.
    await pooled(pool, TEXTS[0]!, a);
    await warmFor(pool, a);
    await pooled(pool, TEXTS[0]!, c);
    await warmFor(pool, c);
    expect(pool.idlePids(b)).toEqual([]);
    await until(() => !running(warmB!), 'the evicted process to be killed');
    expect(pool.idlePids(a)).toHaveLength(1);
    expect(pool.idlePids(a)).not.toContain(warmA); // a's warm one served its second run
  });
});
