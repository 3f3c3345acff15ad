/**
 * Worker scaling with a latency-bound engine: the `bench` engine sleeps BENCH_ENGINE_DELAY_MS per segment (as a
 * GPU-bound model's worker waits on its device) and each worker takes one job at a time (WORKER_CONCURRENCY=1,
 * one GPU each). Throughput at 1, 2, 4 and 8 workers against the ideal (N × the 1-worker throughput measured in
 * the same run). Clients keep twice as many requests in flight as there are workers, so no worker idles for lack
 * of work; workers are added between levels (the same processes stay up), and each level is measured several
 * times back to back (median).
 *
 *   node --import tsx bench/worker-scaling.ts [--quick]
 */
import { AGENT, speech, speechBody } from './lib/http-client.ts';
import { closedLoop } from './lib/load.ts';
import { isMain } from './lib/main.ts';
import { QUICK, markStart, printTable, writeResults } from './lib/report.ts';
import { BenchStack } from './lib/stack.ts';
import { median, percentile, round } from './lib/stats.ts';
import { textOfLength } from './lib/texts.ts';

export const WORKER_LEVELS = [1, 2, 4, 8];
const DELAY_MS = 200;
const REPEATS = QUICK ? 1 : 3;
/** One segment (under the segmenter's first-segment limit): one engine wait per job. */
const TEXT = textOfLength(60);
const jobsFor = (workers: number) => (QUICK ? 4 * workers : 10 * workers);

export async function runWorkerScaling() {
  markStart();
  const stack = await BenchStack.start({
    workers: 1,
    workerEnv: { ENGINES: 'bench', BENCH_ENGINE_DELAY_MS: String(DELAY_MS), WORKER_CONCURRENCY: '1' },
  });
  try {
    const body = speechBody(TEXT, 'pcm', 'bench');
    const perLevel = new Map<number, { rps: number; ttfbP50: number; e2eP50: number; errors: number }[]>();
    for (const workers of WORKER_LEVELS) {
      if (stack.workers.length < workers) await stack.addWorkers(workers - stack.workers.length);
      await closedLoop(workers, workers, () => speech(stack.baseUrl, body, { keepChunks: false })); // warm-up
      for (let rep = 0; rep < REPEATS; rep++) {
        const n = jobsFor(workers);
        const { results, wallMs } = await closedLoop(2 * workers, n, () => speech(stack.baseUrl, body, { keepChunks: false }));
        const ok = results.filter((r) => !r.error && r.status === 200);
        (perLevel.get(workers) ?? (perLevel.set(workers, []), perLevel.get(workers)!)).push({
          rps: (n / wallMs) * 1000,
          ttfbP50: percentile(ok.map((r) => r.ttfbMs), 50),
          e2eP50: percentile(ok.map((r) => r.totalMs), 50),
          errors: n - ok.length,
        });
      }
    }
    const med = (w: number, k: 'rps' | 'ttfbP50' | 'e2eP50') => median(perLevel.get(w)!.map((m) => m[k]));
    const base = med(1, 'rps');
    const rows = WORKER_LEVELS.map((w) => ({
      workers: w, rps: round(med(w, 'rps'), 2), idealRps: round(base * w, 2),
      scaling: round(med(w, 'rps') / base, 2), efficiency: round(med(w, 'rps') / (base * w), 3),
      ttfbP50: round(med(w, 'ttfbP50')), e2eP50: round(med(w, 'e2eP50')),
      errors: perLevel.get(w)!.reduce((a, m) => a + m.errors, 0),
    }));
    printTable(`Worker scaling: bench engine (${DELAY_MS} ms per segment), 1 job per worker, ${TEXT.length}-char pcm (medians of ${REPEATS})`,
      ['workers', 'req/s', 'ideal', 'scaling ×', 'efficiency', 'TTFB p50', 'e2e p50', 'errors'],
      rows.map((r) => [r.workers, r.rps, r.idealRps, r.scaling, r.efficiency, r.ttfbP50, r.e2eP50, r.errors]));
    writeResults('worker-scaling', {
      params: { engine: 'bench', delayMs: DELAY_MS, workerConcurrency: 1, chars: TEXT.length, format: 'pcm', clientsPerWorker: 2, repeats: REPEATS, quick: QUICK },
      rows,
    });
  } finally {
    AGENT.destroy();
    await stack.stop();
  }
}

if (isMain(import.meta.url)) await runWorkerScaling();
