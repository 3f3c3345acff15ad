/**
 * Worker failover: N long streams on two workers, SIGKILL one of them mid-stream, and measure what the killed
 * worker's own listeners get: the pause across the kill (last chunk before it to first chunk after) and the longest
 * gap between two chunks of each of its streams, whether every one of them completes byte-identical to a reference
 * synthesis of the same request, and whether any job of the surviving worker was restarted (a false stall).
 *
 * Modes, interleaved round by round in one process tree: `before` = FAILOVER_POLL_MS=0 (BullMQ stall recovery
 * alone: lock expiry, then stalled checks), `after` = the shipped default (peers see the dead worker's Redis
 * connections vanish and hand its jobs back at once). Lock and stall settings are the shipped defaults in both.
 * A last round runs the `after` workers beside a CPU hog (one busy loop per core) without a kill and counts jobs
 * that stalled or restarted: a failover that mistook a busy worker for a dead one would show there.
 *
 *   node --import tsx bench/failover.ts [--quick] [--streams 50] [--chars 1500] [--rounds 3] [--modes before,after] [--slots N]
 *                                       [--kill-at 0.5] [--no-hog] [--out file.json]
 *
 * The kill comes once the victim's furthest stream is `--kill-at` of the way through (by bytes, against one
 * request of the same length made first), so there is audio to regenerate; each stream's share is reported.
 */
import { cpus, loadavg } from 'node:os';
import { liveWorkers, speechQueueName } from '@chorus/shared';
import { AGENT, speech, speechBody, type SpeechResult } from './lib/http-client.ts';
import { sleep } from './lib/load.ts';
import { isMain } from './lib/main.ts';
import { startChild, type Child } from './lib/processes.ts';
import { QUICK, markStart, printTable, verdicts, writeResults } from './lib/report.ts';
import { BenchStack } from './lib/stack.ts';
import { percentile, round } from './lib/stats.ts';
import { textOfLength } from './lib/texts.ts';
import { jobsHeldBy } from './lib/victim.ts';

type Mode = 'before' | 'after';
const MODE_ENV: Record<Mode, Record<string, string>> = { before: { FAILOVER_POLL_MS: '0' }, after: {} };
const FORMAT = 'mp3';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** Distinct texts, so every stream is its own job and its own reference. */
const textFor = (i: number, chars: number) => `Stream ${i + 1}. ${textOfLength(chars)}`;

interface StreamOutcome {
  jobId: string;
  ok: boolean;
  /** Chunks on both sides of the kill (a stream that had audio when its worker died). */
  midStream: boolean;
  /**
   * Longest gap ending after the kill (ms): the silence the kill caused. Not simply last-before to first-after:
   * bytes already in Redis or in the relay still arrive just after the kill, and the silence follows them.
   */
  pauseMs: number;
  /** Longest gap between two chunks anywhere in the stream (ms). */
  maxGapMs: number;
  /** Share of the stream's bytes its client had when its worker was stopped: how much had to be regenerated. */
  doneAtKill: number;
  identical: boolean;
  attemptsStarted: number;
}

interface Round {
  mode: Mode;
  kill: boolean;
  hog: boolean;
  load1: number;
  streams: number;
  errors: number;
  victims: StreamOutcome[];
  /** Jobs not held by the killed worker that were started more than once or stalled (must be 0). */
  healthyRestarted: number;
  healthyMaxGapMs: number;
  /** How long the victim was stopped (SIGSTOP, read its locks) before the SIGKILL; part of its streams' gaps. */
  stoppedMs: number;
  wallS: number;
}

function gapAfter(r: SpeechResult, killAt: number): number {
  let g = 0;
  for (let i = 1; i < r.chunks.length; i++) {
    if (r.startedAt + r.chunks[i]!.t >= killAt) g = Math.max(g, r.chunks[i]!.t - r.chunks[i - 1]!.t);
  }
  return g;
}

function maxGap(r: SpeechResult): number {
  let g = 0;
  for (let i = 1; i < r.chunks.length; i++) g = Math.max(g, r.chunks[i]!.t - r.chunks[i - 1]!.t);
  return g;
}

async function runRound(
  mode: Mode, opts: { streams: number; chars: number; kill: boolean; hog: boolean; killAt: number; slots?: string },
): Promise<Round> {
  const load1 = loadavg()[0]!;
  const stack = await BenchStack.start({
    workers: 2, workerEnv: { ...MODE_ENV[mode], ...(opts.slots ? { WORKER_CONCURRENCY: opts.slots } : {}) },
  });
  const hogs: Child[] = [];
  const t0 = performance.now();
  try {
    if (opts.hog) {
      for (let i = 0; i < cpus().length; i++) hogs.push(startChild(process.execPath, ['-e', 'for(;;){}'], {}));
    }
    // How long a stream of this length is (all texts are the same length but for "Stream <n>."), to kill midway.
    const probe = await speech(stack.baseUrl, speechBody(textFor(0, opts.chars), FORMAT), { keepChunks: false, timeoutMs: 300_000 });
    const expectedBytes = probe.bytes;
    const live = new Map<string, SpeechResult>();
    const bodies = Array.from({ length: opts.streams }, (_, i) => speechBody(textFor(i, opts.chars), FORMAT));
    const runs = bodies.map((body) =>
      speech(stack.baseUrl, body, {
        keepBody: true, timeoutMs: 900_000, onResponse: (r) => r.jobId && live.set(r.jobId, r),
      }));
    const queue = speechQueueName('espeak');
    let held: string[] = [];
    let killAt = Number.NaN;
    let killEpoch = Number.NaN;
    let stoppedMs = 0;
    if (opts.kill) {
      // Kill once the victim holds as many jobs as it has slots (or its share of them), each of their clients has audio, and the furthest
      // of them is `killAt` of the way through (killing right at the first byte would leave nothing to regenerate).
      const victim = stack.workers[0]!;
      const slots = (await liveWorkers(stack.redis, stack.keys)).find((w) => w.pid === victim.pid)?.concurrency ?? 1;
      // With the per-core default (8 slots on 2 cores) a short run cannot fill them all: its share of the streams.
      const want = Math.max(1, Math.min(slots, Math.floor(opts.streams / 2)));
      const deadline = Date.now() + 120_000;
      for (;;) {
        const ids = await jobsHeldBy(stack.redis, stack.keys, victim.pid, [queue]);
        const playing = ids.filter((id) => (live.get(id)?.chunks.length ?? 0) > 0);
        const furthest = Math.max(0, ...ids.map((id) => (live.get(id)?.bytes ?? 0) / expectedBytes));
        if ((ids.length >= want && playing.length === ids.length && furthest >= opts.killAt) || Date.now() > deadline) break;
        await sleep(20);
      }
      // Stopped, it keeps its connections and locks but takes nothing new: the snapshot is exactly what dies.
      victim.process.kill('SIGSTOP');
      killAt = performance.now();
      held = await jobsHeldBy(stack.redis, stack.keys, victim.pid, [queue]);
      victim.process.kill('SIGKILL');
      killEpoch = Date.now();
      // Counted in every gap below (the victim sends nothing while stopped): say how much of it this was.
      stoppedMs = performance.now() - killAt;
    }
    const results = await Promise.all(runs);
    const wallS = (performance.now() - t0) / 1000;
    if (process.env.BENCH_FAILOVER_DEBUG && opts.kill) {
      // The survivor's failover log lines, timed from the kill.
      for (const line of stack.workers[1]!.output().split('\n')) {
        const m = /"time":(\d+).*"msg":"([^"]+)"/.exec(line);
        if (m && /gone|handed back|resuming|stalled/.test(m[2]!)) console.log(`  +${Number(m[1]) - killEpoch} ms ${m[2]} ${line.includes('jobId') ? /"jobId":"([^"]+)"/.exec(line)?.[1] : ''}`);
      }
      for (const id of held) {
        const r = live.get(id)!;
        const after = r.chunks.find((c) => r.startedAt + c.t >= killAt);
        console.log(`  job ${id}: first chunk after the kill at +${after ? Math.round(r.startedAt + after.t - killAt) : '-'} ms`);
      }
    }

    const victims: StreamOutcome[] = [];
    let healthyRestarted = 0;
    let healthyMaxGapMs = 0;
    for (let i = 0; i < results.length; i++) {
      const r = results[i]!;
      const job = r.jobId ? await stack.queue('espeak').getJob(r.jobId) : undefined;
      const attemptsStarted = job?.attemptsStarted ?? 0;
      if (r.jobId && held.includes(r.jobId)) {
        const rel = (t: number) => r.startedAt + t; // chunk times are relative to the request's start
        const before = r.chunks.filter((c) => rel(c.t) < killAt);
        const after = r.chunks.filter((c) => rel(c.t) >= killAt);
        // Reference: the same request again, on the surviving worker, with nothing killed.
        const ref = await speech(stack.baseUrl, bodies[i]!, { keepBody: true, keepChunks: false, timeoutMs: 300_000 });
        victims.push({
          jobId: r.jobId, ok: !r.error && r.status === 200, midStream: before.length > 0 && after.length > 0,
          pauseMs: before.length && after.length ? gapAfter(r, killAt) : Number.NaN,
          maxGapMs: maxGap(r), doneAtKill: round(before.reduce((a, c) => a + c.bytes, 0) / r.bytes, 2), identical: !!r.body && !!ref.body && ref.status === 200 && r.body.equals(ref.body),
          attemptsStarted,
        });
      } else {
        if (attemptsStarted > 1 || (job?.stalledCounter ?? 0) > 0) healthyRestarted += 1;
        healthyMaxGapMs = Math.max(healthyMaxGapMs, maxGap(r));
      }
    }
    return {
      mode, kill: opts.kill, hog: opts.hog, load1: round(load1, 2), streams: opts.streams,
      errors: results.filter((r) => r.error || r.status !== 200).length, victims, healthyRestarted,
      healthyMaxGapMs: round(healthyMaxGapMs), stoppedMs: round(stoppedMs), wallS: round(wallS),
    };
  } finally {
    await Promise.all(hogs.map((h) => h.stop(500)));
    await stack.stop();
  }
}

export async function runFailover() {
  markStart();
  const streams = Number(arg('streams') ?? (QUICK ? 6 : 50));
  const chars = Number(arg('chars') ?? (QUICK ? 500 : 1500));
  const rounds = Number(arg('rounds') ?? (QUICK ? 1 : 3));
  const killAt = Number(arg('kill-at') ?? (QUICK ? 0 : 0.5));
  const modes = (arg('modes') ?? 'before,after').split(',') as Mode[];
  const hog = !process.argv.includes('--no-hog');
  // Worker slots (WORKER_CONCURRENCY); unset, the default. A run with few streams sets it so the victim fills its slots.
  const slots = arg('slots');
  const out: Round[] = [];
  try {
    for (let r = 0; r < rounds; r++) {
      for (const mode of modes) {
        const round_ = await runRound(mode, { streams, chars, kill: true, hog: false, killAt, slots });
        console.log(`round ${r + 1} ${mode}: load ${round_.load1}, ${round_.victims.length} killed-worker streams, ` +
          `gaps after the kill ${round_.victims.map((v) => round(v.pauseMs)).join(', ')} ms ` +
          `(streams ${round_.victims.map((v) => `${Math.round(v.doneAtKill * 100)}%`).join(', ')} done), ${round_.wallS} s`);
        out.push(round_);
      }
    }
    if (hog) {
      const r = await runRound('after', { streams, chars, kill: false, hog: true, killAt, slots });
      console.log(`CPU hog round (after, no kill): load ${r.load1}, ${r.healthyRestarted} jobs restarted/stalled, ${r.errors} errors`);
      out.push(r);
    }
  } finally {
    AGENT.destroy();
  }

  const byMode = (mode: Mode) => {
    const v = out.filter((r) => r.mode === mode && r.kill).flatMap((r) => r.victims);
    const mid = v.filter((x) => x.midStream);
    const pauses = mid.map((x) => x.pauseMs);
    const gaps = v.map((x) => x.maxGapMs);
    return {
      mode, victims: v.length, midStream: mid.length,
      pauseP50: round(percentile(pauses, 50)), pauseMax: round(Math.max(...pauses)),
      maxGapP50: round(percentile(gaps, 50)), maxGapMax: round(Math.max(...gaps)),
      notOk: v.filter((x) => !x.ok).length, notIdentical: v.filter((x) => !x.identical).length,
      healthyRestarted: out.filter((r) => r.mode === mode && r.kill).reduce((a, r) => a + r.healthyRestarted, 0),
      errors: out.filter((r) => r.mode === mode && r.kill).reduce((a, r) => a + r.errors, 0),
      healthyMaxGap: round(Math.max(...out.filter((r) => r.mode === mode && r.kill).map((r) => r.healthyMaxGapMs))),
      loads: out.filter((r) => r.mode === mode && r.kill).map((r) => r.load1),
      pauses: [...pauses].sort((a, b) => a - b).map((p) => round(p)),
      doneAtKill: v.map((x) => x.doneAtKill).sort((a, b) => a - b),
    };
  };
  const summary = modes.map(byMode);
  printTable(`Failover: SIGKILL one of 2 workers under ${streams} concurrent ${chars}-char ${FORMAT} streams ` +
    `(${rounds} round(s) per mode; the killed worker's own streams)`,
    ['mode', 'streams', 'mid-stream', 'gap after kill p50', 'max', 'longest gap p50', 'max', 'not identical', 'others restarted', 'others longest gap', 'errors', 'load'],
    summary.map((s) => [s.mode, s.victims, s.midStream, s.pauseP50, s.pauseMax, s.maxGapP50, s.maxGapMax, s.notIdentical, s.healthyRestarted, s.healthyMaxGap, s.errors, s.loads.join('/')]));
  for (const s of summary) {
    console.log(`${s.mode}: gaps after the kill (ms, sorted): ${s.pauses.join(', ')}; share of each stream out at the kill: ${s.doneAtKill.join(', ')}`);
  }
  const hogRound = out.find((r) => r.hog);
  const after = summary.find((s) => s.mode === 'after');
  const targets = after ? verdicts([
    { name: 'longest gap of a killed worker\'s stream (after)', measured: after.maxGapMax, limit: 2000, op: 'le', unit: ' ms' },
    { name: 'killed worker\'s streams not byte-identical', measured: after.notIdentical + after.notOk, limit: 0, op: 'le' },
    ...(hogRound ? [{ name: 'jobs restarted beside a CPU hog (no kill)', measured: hogRound.healthyRestarted, limit: 0, op: 'le' as const }] : []),
  ]) : [];
  writeResults('failover', {
    params: { streams, chars, format: FORMAT, rounds, modes, workers: 2, hog, killAt, quick: QUICK },
    summary, rounds: out, targets,
  }, arg('out'));
}

if (isMain(import.meta.url)) await runFailover();
