/**
 * Concurrency sweep: 1…32 clients in a closed loop, each asking for the 300-character paragraph as raw pcm
 * (so a real-time player's position can be decoded from the bytes: 48,000 bytes per second of audio). Per level:
 * TTFB p50/p95, end-to-end time, real-time factor (end-to-end / audio duration) and underrun (the longest
 * stall a player starting at the first byte would hear). The sweep is repeated and each figure is the median
 * over repeats; ratios are against concurrency 1 in the same run.
 *
 *   node --import tsx bench/concurrency.ts [--quick]
 */
import { AGENT, speech, speechBody } from './lib/http-client.ts';
import { closedLoop } from './lib/load.ts';
import { isMain } from './lib/main.ts';
import { pcmSeconds, underrun } from './lib/playback.ts';
import { QUICK, markStart, printTable, writeResults } from './lib/report.ts';
import { BenchStack } from './lib/stack.ts';
import { median, percentile, round } from './lib/stats.ts';
import { PARAGRAPH_300 } from './lib/texts.ts';

export const LEVELS = [1, 2, 4, 8, 16, 32];
const REPEATS = QUICK ? 1 : 3;
const requestsFor = (c: number) => (QUICK ? Math.max(4, c) : Math.max(16, 3 * c));
/** One worker process; its job concurrency is a deployment choice, stated with the results. */
const WORKER_CONCURRENCY = 4;

export async function runConcurrency() {
  markStart();
  const stack = await BenchStack.start({ workers: 1, workerEnv: { ENGINES: 'espeak', WORKER_CONCURRENCY: String(WORKER_CONCURRENCY) } });
  try {
    await closedLoop(4, 8, () => speech(stack.baseUrl, speechBody(PARAGRAPH_300, 'pcm'), { keepChunks: false }));
    const perLevel = new Map<number, Record<string, number>[]>();
    for (let rep = 0; rep < REPEATS; rep++) {
      for (const c of LEVELS) {
        const n = requestsFor(c);
        const { results, wallMs } = await closedLoop(c, n, () => speech(stack.baseUrl, speechBody(PARAGRAPH_300, 'pcm')));
        const ok = results.filter((r) => !r.error && r.status === 200);
        const rtf = ok.map((r) => r.totalMs / 1000 / pcmSeconds(r.bytes));
        const stalls = ok.map((r) => underrun(r.chunks));
        (perLevel.get(c) ?? (perLevel.set(c, []), perLevel.get(c)!)).push({
          errors: results.length - ok.length,
          ttfbP50: percentile(ok.map((r) => r.ttfbMs), 50),
          ttfbP95: percentile(ok.map((r) => r.ttfbMs), 95),
          e2eP50: percentile(ok.map((r) => r.totalMs), 50),
          e2eP95: percentile(ok.map((r) => r.totalMs), 95),
          rtfP50: percentile(rtf, 50),
          rtfP95: percentile(rtf, 95),
          worstStallMs: Math.max(0, ...stalls.map((s) => s.worstStallMs)),
          stalledStreams: stalls.filter((s) => s.worstStallMs > 0).length,
          worstGapMs: Math.max(0, ...stalls.map((s) => s.worstGapMs)),
          rps: (n / wallMs) * 1000,
          audioSecondsPerSecond: (ok.reduce((a, r) => a + pcmSeconds(r.bytes), 0) / wallMs) * 1000,
        });
      }
    }
    const med = (c: number, k: string) => median(perLevel.get(c)!.map((m) => m[k]!));
    const base = { ttfb: med(1, 'ttfbP50'), rps: med(1, 'rps') };
    const rows = LEVELS.map((c) => ({
      concurrency: c, requests: requestsFor(c), errors: perLevel.get(c)!.reduce((a, m) => a + m.errors!, 0),
      ttfbP50: round(med(c, 'ttfbP50')), ttfbP95: round(med(c, 'ttfbP95')), ttfbP50VsC1: round(med(c, 'ttfbP50') / base.ttfb, 2),
      e2eP50: round(med(c, 'e2eP50')), e2eP95: round(med(c, 'e2eP95')),
      rtfP50: round(med(c, 'rtfP50'), 4), rtfP95: round(med(c, 'rtfP95'), 4),
      worstStallMs: round(med(c, 'worstStallMs')), stalledStreams: med(c, 'stalledStreams'),
      worstGapMs: round(med(c, 'worstGapMs')),
      rps: round(med(c, 'rps'), 2), rpsVsC1: round(med(c, 'rps') / base.rps, 2),
      audioSecondsPerSecond: round(med(c, 'audioSecondsPerSecond')),
    }));
    printTable(`Concurrency sweep: ${PARAGRAPH_300.length}-char pcm, 1 worker × ${WORKER_CONCURRENCY} jobs (ms; medians of ${REPEATS} sweep(s))`,
      ['c', 'TTFB p50', 'p95', '×c=1', 'e2e p50', 'e2e p95', 'RTF p50', 'RTF p95', 'worst stall', 'stalled', 'worst gap', 'req/s', '×c=1', 'audio s/s', 'errors'],
      rows.map((r) => [r.concurrency, r.ttfbP50, r.ttfbP95, r.ttfbP50VsC1, r.e2eP50, r.e2eP95, r.rtfP50, r.rtfP95,
        r.worstStallMs, r.stalledStreams, r.worstGapMs, r.rps, r.rpsVsC1, r.audioSecondsPerSecond, r.errors]));
    writeResults('concurrency', {
      params: { chars: PARAGRAPH_300.length, format: 'pcm', levels: LEVELS, repeats: REPEATS, workers: 1, workerConcurrency: WORKER_CONCURRENCY, quick: QUICK },
      rows,
    });
  } finally {
    AGENT.destroy();
    await stack.stop();
  }
}

if (isMain(import.meta.url)) await runConcurrency();
