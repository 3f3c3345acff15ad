/**
 * Overhead: what the queue, Redis and the relay cost. The full service (API + worker + Redis, three processes)
 * against the same pipeline (EspeakEngine → Resampler → warm EncoderPool) called in this process, for a
 * 300-character paragraph in mp3 and pcm at concurrency 1/4/8; plus the naive pipeline (espeak-ng → a freshly
 * spawned ffmpeg) for the first-byte comparison. Modes alternate within each round, so drift hits both alike.
 *
 *   node --import tsx bench/overhead.ts [--quick]
 */
import type { AudioFormat } from '@chorus/shared';
import { DirectPipeline, alloySpeaker, naivePipeline } from './lib/direct.ts';
import { AGENT, speech, speechBody, type SpeechResult } from './lib/http-client.ts';
import { closedLoop } from './lib/load.ts';
import { QUICK, markStart, printTable, verdicts, writeResults } from './lib/report.ts';
import { cpuMs, treeCpuMs } from './lib/processes.ts';
import { BenchStack } from './lib/stack.ts';
import { median, round, summarize } from './lib/stats.ts';
import { PARAGRAPH_300 } from './lib/texts.ts';
import { isMain } from './lib/main.ts';

const FORMATS: AudioFormat[] = ['mp3', 'pcm'];
const CONCURRENCY = [1, 4, 8];
const ROUNDS = QUICK ? 1 : 3;
const requestsFor = (c: number) => (QUICK ? Math.max(4, 2 * c) : Math.max(15, 4 * c));
/** Same in both modes: the worker's pool and the direct pipeline's. */
const ENCODER_POOL_SIZE = 1;

interface Sample {
  ttfb: number[];
  total: number[];
  /** requests per second, one per round. */
  rps: number[];
  errors: number;
  /** CPU ms per request by process, one record per round. */
  cpu: Record<string, number>[];
}
const empty = (): Sample => ({ ttfb: [], total: [], rps: [], errors: 0, cpu: [] });

/**
 * CPU used so far by each process involved (ms): where a request's CPU goes is what bounds throughput on a
 * 2-core machine. Children = espeak-ng and ffmpeg runs (counted once they exit).
 */
function cpuByProcess(stack: BenchStack): Record<string, number> {
  const worker = stack.workers[0]!.pid;
  return {
    'bench process': cpuMs('self'),
    'espeak-ng + ffmpeg (bench process)': cpuMs('self', { children: true }) - cpuMs('self'),
    api: cpuMs(stack.api.pid),
    worker: cpuMs(worker),
    'espeak-ng, encoders, spawner (worker)': treeCpuMs(worker) - cpuMs(worker),
    redis: cpuMs(stack.redisServer.child.pid),
  };
}

function cpuPerRequest(before: Record<string, number>, after: Record<string, number>, n: number) {
  return Object.fromEntries(Object.keys(before).map((k) => [k, (after[k]! - before[k]!) / n]));
}

/** ms timestamps of one service request's stages, from BullMQ's job record and the stream's first entry id. */
async function breakdown(stack: BenchStack, r: SpeechResult) {
  if (!r.jobId) return undefined;
  const job = await stack.queue('espeak').getJob(r.jobId);
  if (!job?.processedOn) return undefined;
  const first = await stack.redis.xrange(job.data.streamKey as string, '-', '+', 'COUNT', 1);
  const firstXadd = Number(first[0]?.[0].split('-')[0]);
  const sent = r.sentAtEpochMs;
  return {
    apiToEnqueued: job.timestamp - sent,
    queuedToPickedUp: job.processedOn - job.timestamp,
    pickedUpToFirstXadd: firstXadd - job.processedOn,
    firstXaddToClient: sent + r.ttfbMs - firstXadd,
  };
}

export async function runOverhead() {
  markStart();
  const stack = await BenchStack.start({
    workers: 1,
    // Worker concurrency ≥ the highest client concurrency, so the service queues nothing the direct loop would not.
    workerEnv: { ENGINES: 'espeak', WORKER_CONCURRENCY: '8', ENCODER_POOL_SIZE: String(ENCODER_POOL_SIZE) },
  });
  const direct = new DirectPipeline(ENCODER_POOL_SIZE);
  try {
    await direct.init();
    const voice = alloySpeaker().voice ?? 'en-us';
    const key = (mode: string, f: string, c: number) => `${mode}/${f}/${c}`;
    const samples = new Map<string, Sample>();
    const get = (k: string) => samples.get(k) ?? (samples.set(k, empty()), samples.get(k)!);
    const naive = empty();
    const stages: NonNullable<Awaited<ReturnType<typeof breakdown>>>[] = [];

    // Warm-up (JIT, encoder pools, keep-alive sockets): not measured.
    for (const f of FORMATS) {
      await closedLoop(2, 6, () => direct.run(PARAGRAPH_300, f));
      await closedLoop(2, 6, () => speech(stack.baseUrl, speechBody(PARAGRAPH_300, f), { keepChunks: false }));
    }
    await naivePipeline(PARAGRAPH_300, voice);

    for (let round = 0; round < ROUNDS; round++) {
      for (const f of FORMATS) {
        for (const c of CONCURRENCY) {
          const n = requestsFor(c);
          const order = (round + c) % 2 === 0 ? ['direct', 'service'] : ['service', 'direct'];
          for (const mode of order) {
            const s = get(key(mode, f, c));
            const cpu0 = cpuByProcess(stack);
            if (mode === 'direct') {
              const { results, wallMs } = await closedLoop(c, n, () => direct.run(PARAGRAPH_300, f));
              for (const r of results) {
                s.ttfb.push(r.ttfbMs);
                s.total.push(r.totalMs);
              }
              s.rps.push((n / wallMs) * 1000);
              s.cpu.push(cpuPerRequest(cpu0, cpuByProcess(stack), n));
            } else {
              const { results, wallMs } = await closedLoop(c, n, () =>
                speech(stack.baseUrl, speechBody(PARAGRAPH_300, f), { keepChunks: false }));
              for (const r of results) {
                if (r.error || r.status !== 200) s.errors++;
                else {
                  s.ttfb.push(r.ttfbMs);
                  s.total.push(r.totalMs);
                }
              }
              s.rps.push((n / wallMs) * 1000);
              s.cpu.push(cpuPerRequest(cpu0, cpuByProcess(stack), n));
              if (f === 'mp3' && c === 1) {
                for (const r of results) {
                  const b = await breakdown(stack, r);
                  if (b) stages.push(b);
                }
              }
            }
          }
        }
      }
      const { results } = await closedLoop(1, requestsFor(1), () => naivePipeline(PARAGRAPH_300, voice));
      for (const r of results) naive.ttfb.push(r.ttfbMs);
    }

    const rows = [];
    for (const f of FORMATS) {
      for (const c of CONCURRENCY) {
        const d = get(key('direct', f, c));
        const s = get(key('service', f, c));
        const dT = summarize(d.ttfb);
        const sT = summarize(s.ttfb);
        rows.push({
          format: f, concurrency: c, requests: s.ttfb.length + s.errors, errors: s.errors,
          directTtfbP50: round(dT.p50), serviceTtfbP50: round(sT.p50), addedTtfbP50: round(sT.p50 - dT.p50),
          directTtfbP95: round(dT.p95), serviceTtfbP95: round(sT.p95),
          directTotalP50: round(median(d.total)), serviceTotalP50: round(median(s.total)),
          directRps: round(median(d.rps), 2), serviceRps: round(median(s.rps), 2),
          throughputRatio: round(median(s.rps) / median(d.rps), 3),
        });
      }
    }
    printTable(
      `Overhead: service vs direct, ${PARAGRAPH_300.length}-char paragraph (TTFB/total ms; medians over ${ROUNDS} round(s))`,
      ['format', 'c', 'TTFB direct', 'TTFB service', 'added', 'p95 direct', 'p95 service', 'total direct', 'total service', 'rps direct', 'rps service', 'ratio', 'errors'],
      rows.map((r) => [r.format, r.concurrency, r.directTtfbP50, r.serviceTtfbP50, r.addedTtfbP50, r.directTtfbP95,
        r.serviceTtfbP95, r.directTotalP50, r.serviceTotalP50, r.directRps, r.serviceRps, r.throughputRatio, r.errors]),
    );
    const cpuRows = FORMATS.flatMap((f) => CONCURRENCY.flatMap((c) => (['direct', 'service'] as const).map((mode) => {
      const recs = get(key(mode, f, c)).cpu;
      const per = Object.fromEntries(Object.keys(recs[0]!).map((k) => [k, round(median(recs.map((r) => r[k]!)), 1)]));
      return { format: f, concurrency: c, mode, ...per, total: round(Object.values(per).reduce((a, b) => a + b, 0), 1) };
    })));
    const cpuCols = Object.keys(get(key('direct', 'mp3', 1)).cpu[0]!);
    printTable('CPU per request (ms, by process; median over rounds)', ['format', 'c', 'mode', ...cpuCols, 'total'],
      cpuRows.map((r) => [r.format, r.concurrency, r.mode, ...cpuCols.map((k) => (r as Record<string, unknown>)[k] as number), r.total]));
    const naiveP50 = median(naive.ttfb);
    const mp3c1 = rows.find((r) => r.format === 'mp3' && r.concurrency === 1)!;
    const stageMedians = stages.length
      ? Object.fromEntries(Object.keys(stages[0]!).map((k) => [k, round(median(stages.map((s) => s[k as keyof typeof s])))]))
      : {};
    printTable('First byte of a 300-char mp3 at c=1 (ms, p50)', ['pipeline', 'TTFB p50'], [
      ['naive: espeak-ng → fresh ffmpeg', round(naiveP50)],
      ['direct: worker pipeline, warm encoder', mp3c1.directTtfbP50],
      ['service: HTTP → API → BullMQ → worker → Redis Stream → relay', mp3c1.serviceTtfbP50],
    ]);
    printTable('Where the service first byte goes (mp3, c=1, ms, median; from job timestamps and stream ids)',
      ['stage', 'ms'], Object.entries(stageMedians));

    const minRatio = Math.min(...rows.map((r) => r.throughputRatio));
    const maxAddedC1 = Math.max(...rows.filter((r) => r.concurrency === 1).map((r) => r.addedTtfbP50));
    const targets = verdicts([
      { name: 'service throughput / direct (worst of format × concurrency)', measured: minRatio, limit: 0.85, op: 'ge' },
      { name: 'TTFB added by queue + relay, p50, c=1 (worst format)', measured: maxAddedC1, limit: 15, op: 'le', unit: ' ms' },
      { name: 'service TTFB p50, 300-char mp3, c=1', measured: mp3c1.serviceTtfbP50, limit: 50, op: 'le', unit: ' ms' },
      { name: 'service TTFB p50 / naive pipeline TTFB p50 (mp3, c=1)', measured: round(mp3c1.serviceTtfbP50 / naiveP50, 3), limit: 1, op: 'le' },
    ]);
    writeResults('overhead', {
      params: { chars: PARAGRAPH_300.length, formats: FORMATS, concurrency: CONCURRENCY, rounds: ROUNDS, encoderPoolSize: ENCODER_POOL_SIZE, workerConcurrency: 8, quick: QUICK },
      rows, cpuPerRequestMs: cpuRows, naive: { ttfbP50: round(naiveP50), ttfb: summarize(naive.ttfb) }, firstByteStages: stageMedians, targets,
    });
  } finally {
    direct.close();
    AGENT.destroy();
    await stack.stop();
  }
}

if (isMain(import.meta.url)) await runOverhead();
