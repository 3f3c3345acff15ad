/**
 * Admission under overload: 300-character mp3 requests offered at 5× what the stack can serve, open loop (a new
 * request every 1/(5·capacity) s whatever the answers), against the same requests one at a time (unloaded).
 * Capacity is measured first in the same run (a closed loop at twice the worker slots). Reported: how many were
 * accepted, refused with 429 (how fast, with which Retry-After) or timed out with 503, and the first byte of
 * the accepted ones as a ratio to unloaded. API settings are the defaults (MAX_QUEUE_DEPTH 1000, QUEUE_TIMEOUT_S
 * 30, MAX_QUEUE_WAIT_MS default), one worker with the default WORKER_CONCURRENCY.
 *
 *   node --import tsx bench/admission.ts [--quick] [--overload 5] [--seconds 20] [--slots N] [--out FILE]
 *   BENCH_ADMISSION_API_ENV='{"MAX_QUEUE_WAIT_MS":"30000"}' node --import tsx bench/admission.ts   # other settings
 *   BENCH_ADMISSION_WORST=1 node --import tsx bench/admission.ts   # also the 15 slowest accepted first bytes, by stage
 */
import { decodeRecord, loadApiConfig, loadWorkerConfig } from '@chorus/shared';
import { AGENT, speech, speechBody, type SpeechResult } from './lib/http-client.ts';
import { closedLoop, sleep } from './lib/load.ts';
import { isMain } from './lib/main.ts';
import { QUICK, markStart, printTable, verdicts, writeResults } from './lib/report.ts';
import { BenchStack } from './lib/stack.ts';
import { percentile, round } from './lib/stats.ts';
import { PARAGRAPH_300 } from './lib/texts.ts';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const OVERLOAD = Number(arg('overload') ?? 5);
const SECONDS = Number(arg('seconds') ?? (QUICK ? 3 : 20));
// 60: the unloaded p95 is the ratio's denominator, and a p95 of 20 samples is their second largest (12.7–21 ms in
// four runs of one hour).
/**
 * Unloaded requests, half before and half after the overload. 200, not 60: the ratio's denominator is a p95, and
 * the p95 of 60 is their third-largest value, which moved 16–28 ms between runs of one tree in one hour.
 */
const UNLOADED = QUICK ? 4 : 200;
const CAPACITY_REQUESTS = QUICK ? 6 : 40;
/** Worker slots: `--slots N`, else WORKER_CONCURRENCY's default on this machine (4 per core), one worker. */
const SLOTS = Number(arg('slots') ?? loadWorkerConfig({}).concurrency);
/** The defaults a new user gets (BenchStack raises them for the other benchmarks), then any override. */
const DEFAULTS = loadApiConfig({});
const API_ENV: Record<string, string> = {
  MAX_QUEUE_DEPTH: String(DEFAULTS.maxQueueDepth), QUEUE_TIMEOUT_S: String(DEFAULTS.queueTimeoutS),
  MAX_QUEUE_WAIT_MS: String(DEFAULTS.maxQueueWaitMs),
  ...(JSON.parse(process.env.BENCH_ADMISSION_API_ENV ?? '{}') as Record<string, string>),
};

const one = (stack: BenchStack) => speech(stack.baseUrl, speechBody(PARAGRAPH_300, 'mp3'), { keepChunks: false, timeoutMs: 120_000 });

/** Requests started every `gapMs` for `seconds`, not waiting for answers; resolves when every answer is in. */
async function openLoop(stack: BenchStack, gapMs: number, seconds: number): Promise<SpeechResult[]> {
  const pending: Promise<SpeechResult>[] = [];
  const t0 = performance.now();
  for (let i = 0; ; i++) {
    const due = t0 + i * gapMs;
    if (due - t0 > seconds * 1000) break;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    pending.push(one(stack));
  }
  return Promise.all(pending);
}

export async function runAdmission(out?: string) {
  markStart();
  const stack = await BenchStack.start({
    workers: 1,
    workerEnv: { ENGINES: 'espeak', WORKER_CONCURRENCY: String(SLOTS) },
    apiEnv: API_ENV,
  });
  try {
    await closedLoop(1, 4, () => one(stack)); // warm-up
    // Unloaded: one at a time, half before the overload and half after (the machine's load drifts).
    const unloaded = (await closedLoop(1, UNLOADED / 2, () => one(stack))).results;
    const cap = await closedLoop(SLOTS * 2, CAPACITY_REQUESTS, () => one(stack));
    const capacity = cap.results.filter((r) => r.status === 200).length / (cap.wallMs / 1000);
    const rate = capacity * OVERLOAD;
    await sleep(500);
    const t0 = performance.now();
    const overload = await openLoop(stack, 1000 / rate, SECONDS);
    const overloadWallS = (performance.now() - t0) / 1000;
    await sleep(500);
    unloaded.push(...(await closedLoop(1, UNLOADED / 2, () => one(stack))).results);

    const ok = (rs: SpeechResult[]) => rs.filter((r) => r.status === 200 && !r.error);
    const accepted = ok(overload);
    const refused = overload.filter((r) => r.status === 429);
    const timedOut = overload.filter((r) => r.status === 503 && r.errorCode === 'queue_timeout');
    const other = overload.length - accepted.length - refused.length - timedOut.length;
    const unloadedTtfb = ok(unloaded).map((r) => r.ttfbMs);
    const acceptedTtfb = accepted.map((r) => r.ttfbMs);
    const refusedMs = refused.map((r) => r.ttfbMs);
    const retryAfter = refused.map((r) => r.retryAfterMs ?? Number.NaN).filter(Number.isFinite);
    // How long accepted jobs waited for a worker slot (BullMQ's processedOn − timestamp): the part admission bounds;
    // the rest of their first byte is synthesis on a machine that is also answering the refusals.
    const slotWaits: number[] = [];
    for (const r of accepted) {
      const job = r.jobId ? await stack.queue('espeak').getJob(r.jobId) : undefined;
      if (job?.processedOn) slotWaits.push(job.processedOn - job.timestamp);
    }
    const stages = { unloaded: await firstByteStages(stack, ok(unloaded)), accepted: await firstByteStages(stack, accepted) };
    const rows = {
      unloaded: { n: unloadedTtfb.length, ttfbP50: round(percentile(unloadedTtfb, 50)), ttfbP95: round(percentile(unloadedTtfb, 95)) },
      accepted: {
        n: accepted.length, ttfbP50: round(percentile(acceptedTtfb, 50)), ttfbP95: round(percentile(acceptedTtfb, 95)),
        ttfbMax: round(Math.max(...acceptedTtfb, 0)), perS: round(accepted.length / overloadWallS, 2),
        slotWaitP50: round(percentile(slotWaits, 50)), slotWaitP95: round(percentile(slotWaits, 95)),
      },
      refused: {
        n: refused.length, answerP50: round(percentile(refusedMs, 50)), answerP95: round(percentile(refusedMs, 95)),
        retryAfterMsP50: round(percentile(retryAfter, 50)), retryAfterMsMax: round(Math.max(...retryAfter, 0)),
        codes: [...new Set(refused.map((r) => r.errorCode))],
      },
      queueTimeout: { n: timedOut.length, answerP50: round(percentile(timedOut.map((r) => r.totalMs), 50)) },
      other,
      stages,
    };
    const ratio = round(rows.accepted.ttfbP95 / rows.unloaded.ttfbP95, 2);
    printTable(`Admission: ${PARAGRAPH_300.length}-char mp3, one worker × ${SLOTS} slots; capacity ${round(capacity, 2)}/s, offered ${round(rate, 2)}/s (${OVERLOAD}×) for ${SECONDS} s`,
      ['requests', 'n', 'first byte p50', 'first byte p95', 'notes'],
      [
        ['unloaded (one at a time)', rows.unloaded.n, rows.unloaded.ttfbP50, rows.unloaded.ttfbP95, ''],
        ['accepted under overload', rows.accepted.n, rows.accepted.ttfbP50, rows.accepted.ttfbP95, `max ${rows.accepted.ttfbMax} ms, ${rows.accepted.perS}/s, slot wait p50 ${rows.accepted.slotWaitP50} p95 ${rows.accepted.slotWaitP95}`],
        ['429 refused', rows.refused.n, rows.refused.answerP50, rows.refused.answerP95, `retry-after-ms p50 ${rows.refused.retryAfterMsP50}, max ${rows.refused.retryAfterMsMax}`],
        ['503 queue_timeout', rows.queueTimeout.n, rows.queueTimeout.answerP50, '', 'answer time = whole request'],
        ['other errors', other, '', '', ''],
      ]);
    printTable('Where the first byte goes (p50 / p95 ms; clocks of one machine, ms resolution)',
      ['requests', 'API: sent → enqueued', 'queue: enqueued → started', 'worker: started → first audio record', 'relay: record → client'],
      (['unloaded', 'accepted'] as const).map((k) => [k, stages[k].api, stages[k].queue, stages[k].worker, stages[k].relay]));
    const targets = verdicts([
      { name: 'accepted TTFB p95 under overload / unloaded p95', measured: ratio, limit: 2, op: 'le' },
      { name: '503 queue_timeout under overload', measured: timedOut.length, limit: 0, op: 'le' },
    ]);
    writeResults('admission', {
      params: { overload: OVERLOAD, seconds: SECONDS, unloadedRequests: UNLOADED, capacityRequests: CAPACITY_REQUESTS, slots: SLOTS, apiEnv: API_ENV, chars: PARAGRAPH_300.length, format: 'mp3', quick: QUICK },
      capacityPerS: round(capacity, 3), offeredPerS: round(rate, 3), offered: overload.length, rows, ratio, targets,
    }, out);
  } finally {
    AGENT.destroy();
    await stack.stop();
  }
}

if (isMain(import.meta.url)) await runAdmission(arg('out'));

/**
 * Each request's first byte cut into stages, from timestamps on one clock: the client's send time, BullMQ's
 * `timestamp` (enqueued) and `processedOn` (a worker started it), the millisecond in the id of the job's first
 * audio record on its stream (Redis's clock, the same machine's), and the client's first byte. p50 and p95 of each.
 */
async function firstByteStages(stack: BenchStack, results: SpeechResult[]) {
  const api: number[] = [], queue: number[] = [], worker: number[] = [], relay: number[] = [], startedAt: number[] = [];
  for (const r of results) {
    const job = r.jobId ? await stack.queue('espeak').getJob(r.jobId) : undefined;
    const key = (job?.data as { streamKey?: string } | undefined)?.streamKey;
    if (!job?.processedOn || !key) continue;
    const entries = await stack.redis.xrangeBuffer(key, '-', '+', 'COUNT', 4);
    const first = entries.find(([, fields]) => decodeRecord(fields).type === 'audio');
    if (!first) continue;
    const recordMs = Number(first[0].toString().split('-')[0]);
    api.push(job.timestamp - r.sentAtEpochMs);
    queue.push(job.processedOn - job.timestamp);
    worker.push(recordMs - job.processedOn);
    startedAt.push(job.processedOn);
    relay.push(r.sentAtEpochMs + r.ttfbMs - recordMs);
  }
  if (process.env.BENCH_ADMISSION_WORST) {
    const near = (i: number) => startedAt.filter((t, k) => k !== i && Math.abs(t - startedAt[i]!) <= 30).length;
    const rows = api.map((_, i) => ({ api: api[i]!, queue: queue[i]!, worker: worker[i]!, relay: relay[i]!, near: near(i), total: api[i]! + queue[i]! + worker[i]! + relay[i]! }));
    console.log(`  starts within 30 ms of another: ${rows.filter((r) => r.near > 0).length}/${rows.length}`);
    rows.sort((a, b) => b.total - a.total);
    for (const r of rows.slice(0, 15)) console.log(`  worst: total ${round(r.total)} = api ${r.api} + queue ${r.queue} + worker ${r.worker} + relay ${round(r.relay)}, other starts ±30 ms: ${r.near}`);
  }
  const p = (xs: number[]) => `${round(percentile(xs, 50))} / ${round(percentile(xs, 95))}`;
  return { n: api.length, api: p(api), queue: p(queue), worker: p(worker), relay: p(relay) };
}
