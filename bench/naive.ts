/**
 * Chorus with its default settings against the naive pipeline (issue 12): the same request (300-character
 * paragraph, mp3, `tts-1`/alloy) to the full service (API + one worker with default WORKER_CONCURRENCY and
 * encoder pool + Redis with AOF, as `npm start` runs them) and to bench/lib/naive-server.ts (espeak-ng piped into a
 * freshly spawned ffmpeg per request, streamed back). Closed loops at concurrency 1, 4 and 8; the two servers
 * alternate within every round (order flipped each time), so machine drift hits both alike. Per level: throughput
 * ratio (median over rounds of each side's req/s), TTFB p50/p95 (all requests of a side pooled), CPU per request
 * by process.
 *
 * `--compare-concurrency 2,4,8,16` adds one more Chorus stack per WORKER_CONCURRENCY value (modes `wc=N`), run in
 * the same rounds: how many slots the default should give (the ratios stay default Chorus / naive).
 *
 *   node --import tsx bench/naive.ts [--quick] [--rounds N] [--levels 1,4,8] [--format mp3]
 *                                    [--worker-env KEY=V,KEY=V] [--compare-concurrency 2,8] [--out FILE]
 */
import path from 'node:path';
import { defaultWorkerConcurrency } from '@chorus/shared';
import { AGENT, speech, speechBody, type SpeechResult } from './lib/http-client.ts';
import { closedLoop } from './lib/load.ts';
import { isMain } from './lib/main.ts';
import { cpuMs, startChild, treeCpuMs, type Child } from './lib/processes.ts';
import { QUICK, markStart, printTable, verdicts, writeResults } from './lib/report.ts';
import { BenchStack, ROOT } from './lib/stack.ts';
import { median, percentile, round } from './lib/stats.ts';
import { PARAGRAPH_300 } from './lib/texts.ts';

const NAIVE_MAIN = path.join(ROOT, 'bench/lib/naive-server.ts');

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

export interface NaiveOptions {
  rounds?: number;
  levels?: number[];
  format?: string;
  /** Extra worker environment (e.g. WORKER_CONCURRENCY=4 to compare with a non-default setting). */
  workerEnv?: Record<string, string>;
  out?: string;
  /** Extra Chorus stacks, one per WORKER_CONCURRENCY value, measured in the same rounds. */
  compareConcurrency?: number[];
}

/** `chorus` (defaults), `naive`, or `wc=N` (Chorus with WORKER_CONCURRENCY=N). */
type Mode = string;

async function startNaive(): Promise<{ child: Child; url: string }> {
  const child = startChild(process.execPath, ['--import', 'tsx', NAIVE_MAIN], {}, ROOT);
  const deadline = Date.now() + 60_000;
  for (;;) {
    const m = /listening (\d+)/.exec(child.output());
    if (m) return { child, url: `http://127.0.0.1:${m[1]}` };
    if (child.process.exitCode !== null || Date.now() > deadline) {
      await child.stop();
      throw new Error(`naive server did not start:\n${child.output()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function runNaive(opts: NaiveOptions = {}) {
  markStart();
  const rounds = opts.rounds ?? (QUICK ? 1 : 3);
  const levels = opts.levels ?? [1, 4, 8];
  const format = opts.format ?? 'mp3';
  const requestsFor = (c: number) => (QUICK ? Math.max(2, c) : Math.max(12, 4 * c));
  // Only what a benchmark stack needs: everything else (WORKER_CONCURRENCY, ENCODER_POOL_SIZE, ...) is the default.
  const startChorus = (env: Record<string, string> = {}) =>
    BenchStack.start({ workers: 1, workerEnv: { ENGINES: 'espeak', ...opts.workerEnv, ...env }, redisAppendOnly: true });
  const stacks = new Map<Mode, BenchStack>();
  let naive: { child: Child; url: string } | undefined;
  try {
    stacks.set('chorus', await startChorus());
    for (const n of opts.compareConcurrency ?? []) stacks.set(`wc=${n}`, await startChorus({ WORKER_CONCURRENCY: String(n) }));
    naive = await startNaive();
    const MODES: Mode[] = ['chorus', 'naive', ...[...stacks.keys()].filter((m) => m !== 'chorus')];
    const urls: Record<Mode, string> = { naive: naive.url, ...Object.fromEntries([...stacks].map(([m, st]) => [m, st.baseUrl])) };
    const naivePid = naive.child.pid;
    /** CPU ms so far per process; `children` = the espeak-ng / ffmpeg runs it reaped. */
    const cpu = (mode: Mode): Record<string, number> => {
      const stack = stacks.get(mode);
      if (!stack) return { server: cpuMs(naivePid), 'server children': cpuMs(naivePid, { children: true }) - cpuMs(naivePid), client: cpuMs('self') };
      const worker = stack.workers[0]!.pid;
      return {
        api: cpuMs(stack.api.pid), worker: cpuMs(worker), 'worker children': treeCpuMs(worker) - cpuMs(worker),
        redis: cpuMs(stack.redisServer.child.pid), client: cpuMs('self'),
      };
    };
    const body = speechBody(PARAGRAPH_300, format);
    for (const mode of MODES) await closedLoop(2, 6, () => speech(urls[mode]!, body, { keepChunks: false }));

    const results = new Map<string, SpeechResult[]>();
    const rps = new Map<string, number[]>();
    const cpuPerReq = new Map<string, Record<string, number>[]>();
    const push = <T>(m: Map<string, T[]>, k: string, v: T) => (m.get(k) ?? (m.set(k, []), m.get(k)!)).push(v);
    let flip = 0;
    for (let r = 0; r < rounds; r++) {
      for (const c of levels) {
        const order = flip++ % 2 === 0 ? MODES : [...MODES].reverse();
        for (const mode of order) {
          const n = requestsFor(c);
          const before = cpu(mode);
          const { results: rs, wallMs } = await closedLoop(c, n, () => speech(urls[mode]!, body, { keepChunks: false }));
          // Children's CPU is counted when they are reaped: give the last ones a moment to exit.
          await new Promise((res) => setTimeout(res, 150));
          const after = cpu(mode);
          const k = `${mode}/${c}`;
          for (const x of rs) push(results, k, x);
          push(rps, k, (n / wallMs) * 1000);
          push(cpuPerReq, k, Object.fromEntries(Object.keys(before).map((p) => [p, (after[p]! - before[p]!) / n])));
        }
      }
    }

    const rows = levels.flatMap((c) => MODES.map((mode) => {
      const all = results.get(`${mode}/${c}`)!;
      const ok = all.filter((x) => !x.error && x.status === 200 && x.bytes > 0);
      const cpuRounds = cpuPerReq.get(`${mode}/${c}`)!;
      const cpuMed = Object.fromEntries(Object.keys(cpuRounds[0]!).map((p) => [p, round(median(cpuRounds.map((x) => x[p]!)))]));
      return {
        mode, concurrency: c, requests: all.length, errors: all.length - ok.length,
        rps: round(median(rps.get(`${mode}/${c}`)!), 2), rpsRounds: rps.get(`${mode}/${c}`)!.map((x) => round(x, 2)),
        ttfbP50: round(percentile(ok.map((x) => x.ttfbMs), 50)), ttfbP95: round(percentile(ok.map((x) => x.ttfbMs), 95)),
        totalP50: round(percentile(ok.map((x) => x.totalMs), 50)),
        bytesP50: median(ok.map((x) => x.bytes)),
        cpuMsPerRequest: cpuMed,
        cpuMsPerRequestTotal: round(Object.values(cpuMed).reduce((a, b) => a + b, 0)),
      };
    }));
    const row = (mode: Mode, c: number) => rows.find((x) => x.mode === mode && x.concurrency === c)!;
    const ratios = levels.map((c) => ({
      concurrency: c,
      throughput: round(row('chorus', c).rps / row('naive', c).rps, 3),
      ttfbP50: round(row('chorus', c).ttfbP50 / row('naive', c).ttfbP50, 3),
      ttfbP95: round(row('chorus', c).ttfbP95 / row('naive', c).ttfbP95, 3),
    }));
    printTable(`Chorus (defaults) vs naive espeak-ng → fresh ffmpeg: ${PARAGRAPH_300.length}-char ${format}, ${rounds} round(s), interleaved`,
      ['c', 'mode', 'req/s', 'TTFB p50', 'p95', 'e2e p50', 'CPU ms/req', 'errors'],
      rows.map((x) => [x.concurrency, x.mode, x.rps, x.ttfbP50, x.ttfbP95, x.totalP50, x.cpuMsPerRequestTotal, x.errors]));
    printTable('Ratios (Chorus / naive)', ['c', 'throughput', 'TTFB p50', 'TTFB p95'],
      ratios.map((x) => [x.concurrency, x.throughput, x.ttfbP50, x.ttfbP95]));
    printTable('CPU ms per request by process (median over rounds)', ['c', 'mode', 'split'],
      rows.map((x) => [x.concurrency, x.mode, Object.entries(x.cpuMsPerRequest).map(([p, ms]) => `${p} ${ms}`).join(', ')]));
    const targets = verdicts([
      ...ratios.map((x) => ({ name: `throughput vs naive, c=${x.concurrency}`, measured: x.throughput, limit: 0.9, op: 'ge' as const })),
      ...ratios.filter((x) => x.concurrency > 1).map((x) => ({ name: `TTFB p50 vs naive, c=${x.concurrency}`, measured: x.ttfbP50, limit: 1, op: 'le' as const })),
      ...(levels.includes(1) ? [{ name: 'TTFB p50 at c=1', measured: row('chorus', 1).ttfbP50, limit: 30, op: 'le' as const, unit: ' ms' }] : []),
    ]);
    return writeResults('naive', {
      params: {
        chars: PARAGRAPH_300.length, format, levels, rounds, requests: Object.fromEntries(levels.map((c) => [c, requestsFor(c)])),
        workerEnv: opts.workerEnv ?? {}, workerConcurrency: defaultWorkerConcurrency(), compareConcurrency: opts.compareConcurrency ?? [], quick: QUICK,
      },
      rows, ratios, targets,
    }, opts.out);
  } finally {
    AGENT.destroy();
    await naive?.child.stop();
    for (const st of stacks.values()) await st.stop();
  }
}

if (isMain(import.meta.url)) {
  const workerEnv = arg('worker-env') ? Object.fromEntries(arg('worker-env')!.split(',').map((kv) => kv.split('=') as [string, string])) : undefined;
  await runNaive({
    rounds: arg('rounds') ? Number(arg('rounds')) : undefined,
    levels: arg('levels')?.split(',').map(Number),
    format: arg('format'),
    workerEnv,
    out: arg('out') ? path.resolve(arg('out')!) : undefined,
    compareConcurrency: arg('compare-concurrency')?.split(',').map(Number),
  });
}
