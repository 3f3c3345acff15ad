/**
 * Fan-out: 1,000 concurrent streams relayed by one API process, each read by a slow client (a player that
 * consumes pcm in real time, 48,000 bytes/s: the socket is paused while the client is ahead, so TCP
 * backpressure reaches the API). Measured while they run: the API's Redis connections (its own sockets to the
 * Redis port, cross-checked with CLIENT LIST), its RSS, and errors (a status other than 200, a broken or short
 * body). The `bench` engine produces the audio, so the 2-core machine spends its CPU on the relay, not espeak-ng.
 * The baseline is the same API process idle, measured just before.
 *
 *   node --import tsx bench/fanout.ts [--quick]
 *   BENCH_FANOUT_CHARS=260 node --import tsx bench/fanout.ts   # 14.6 s streams, past the relay's high-water mark
 */
import { segmentText } from '../apps/worker/src/audio/segmenter.ts';
import { benchSampleCount } from '../apps/worker/src/engines/bench-engine.ts';
import { AGENT, speech, speechBody, type SpeechResult } from './lib/http-client.ts';
import { sleep } from './lib/load.ts';
import { isMain } from './lib/main.ts';
import { PCM_BYTES_PER_SEC } from './lib/playback.ts';
import { cpuMs, rssBytes, tcpConnectionsTo } from './lib/processes.ts';
import { QUICK, markStart, printTable, verdicts, writeResults } from './lib/report.ts';
import { BenchStack } from './lib/stack.ts';
import { round, summarize } from './lib/stats.ts';
import { textOfLength } from './lib/texts.ts';

const STREAMS = QUICK ? 200 : 1000;
/**
 * ~5 s of audio per stream (~240 KB of pcm) by default; BENCH_FANOUT_CHARS makes streams longer (each character
 * is 56 ms of audio), e.g. past the relay's per-stream high-water mark (512 KiB ≈ 195 characters).
 */
const TEXT = textOfLength(Number(process.env.BENCH_FANOUT_CHARS ?? 90));
const MB = 1024 * 1024;
/** Enough that every job starts at once: the streams, not the worker, are what is measured. */
const WORKER_CONCURRENCY = 256;

/** Streams the API is relaying right now, from its own /metrics (`chorus_active_streams`). */
async function relayedStreams(baseUrl: string): Promise<number> {
  try {
    const text = await (await fetch(`${baseUrl}/metrics`)).text();
    const m = /^chorus_active_streams(?:\{[^}]*\})? (\d+)/m.exec(text);
    return m ? Number(m[1]) : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** CLIENT LIST rows per connection name (a cross-check: workers use the same names as the API). */
async function clientNames(stack: BenchStack): Promise<Record<string, number>> {
  const list = (await stack.redis.client('LIST')) as string;
  const counts: Record<string, number> = {};
  for (const line of list.split('\n')) {
    const name = /(?:^| )name=(\S*)/.exec(line)?.[1];
    if (name !== undefined) counts[name || '(none)'] = (counts[name || '(none)'] ?? 0) + 1;
  }
  return counts;
}

export async function runFanout() {
  markStart();
  const stack = await BenchStack.start({
    workers: 1,
    workerEnv: { ENGINES: 'bench', BENCH_ENGINE_DELAY_MS: '20', WORKER_CONCURRENCY: String(WORKER_CONCURRENCY), STREAM_TTL_S: '120' },
  });
  try {
    // The engine sees the segmenter's segments (the spaces between them are not spoken).
    const expectedBytes = segmentText(TEXT).reduce((a, seg) => a + benchSampleCount(seg), 0) * 2;
    const body = speechBody(TEXT, 'pcm', 'bench');
    for (let i = 0; i < 5; i++) await speech(stack.baseUrl, body, { keepChunks: false });
    await sleep(500);
    const apiPid = stack.api.pid;
    const redisPort = stack.redisServer.port;
    const idle = { rssMB: rssBytes(apiPid) / MB, redisConnections: tcpConnectionsTo(apiPid, redisPort), clientNames: await clientNames(stack) };

    let peakRss = 0;
    let peakConns = 0;
    let peakOpen = 0;
    let peakRelayed = 0;
    let open = 0;
    const samples: { t: number; rssMB: number; conns: number; open: number; relayed: number }[] = [];
    let peakNames: Record<string, number> = {};
    const t0 = performance.now();
    const cpu0 = cpuMs(apiPid);
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const rss = rssBytes(apiPid);
        const conns = tcpConnectionsTo(apiPid, redisPort);
        peakRss = Math.max(peakRss, rss);
        if (conns >= peakConns) {
          peakConns = conns;
          peakNames = await clientNames(stack);
        }
        peakOpen = Math.max(peakOpen, open);
        const relayed = await relayedStreams(stack.baseUrl);
        if (relayed > peakRelayed) peakRelayed = relayed;
        samples.push({ t: round(performance.now() - t0), rssMB: round(rss / MB), conns, open, relayed });
        await sleep(250);
      }
    })();

    const results: SpeechResult[] = await Promise.all(
      Array.from({ length: STREAMS }, async () => {
        open++;
        const r = await speech(stack.baseUrl, body, { readBytesPerSec: PCM_BYTES_PER_SEC, keepChunks: false, timeoutMs: 120_000 });
        open--;
        return r;
      }),
    );
    const wallMs = performance.now() - t0;
    const apiCpuMs = cpuMs(apiPid) - cpu0;
    sampling = false;
    await sampler;

    const errors = results.filter((r) => r.error || r.status !== 200 || r.bytes !== expectedBytes);
    const ttfb = summarize(results.filter((r) => !r.error).map((r) => r.ttfbMs));
    const byError: Record<string, number> = {};
    for (const r of errors) {
      const k = r.error ?? (r.status !== 200 ? `status ${r.status}` : `short body ${r.bytes}/${expectedBytes}`);
      byError[k] = (byError[k] ?? 0) + 1;
    }
    const row = {
      streams: STREAMS, peakConcurrentStreams: peakOpen, peakRelayedStreams: peakRelayed, audioSecondsPerStream: round(expectedBytes / PCM_BYTES_PER_SEC, 2),
      wallS: round(wallMs / 1000, 1), errors: errors.length, errorKinds: byError,
      apiRedisConnectionsIdle: idle.redisConnections, apiRedisConnectionsPeak: peakConns,
      apiRssIdleMB: round(idle.rssMB), apiRssPeakMB: round(peakRss / MB), apiCpuS: round(apiCpuMs / 1000, 1),
      ttfbP50: round(ttfb.p50), ttfbP95: round(ttfb.p95), ttfbP99: round(ttfb.p99),
    };
    printTable(`Fan-out: ${STREAMS} concurrent slow-reading pcm streams on one API process`, ['measure', 'idle (baseline)', 'under load'], [
      ['open requests (peak, client side)', 0, row.peakConcurrentStreams],
      ['streams relayed at once (peak, API chorus_active_streams)', 0, row.peakRelayedStreams],
      ['API Redis connections (its sockets)', row.apiRedisConnectionsIdle, row.apiRedisConnectionsPeak],
      ['API RSS (MB)', row.apiRssIdleMB, row.apiRssPeakMB],
      ['errors', 0, row.errors],
      ['TTFB p50 / p95 / p99 (ms)', '', `${row.ttfbP50} / ${row.ttfbP95} / ${row.ttfbP99}`],
      ['wall time (s), API CPU (s)', '', `${row.wallS}, ${row.apiCpuS}`],
    ]);
    console.log('CLIENT LIST by name at the peak (all processes):', JSON.stringify(peakNames));
    const targets = verdicts([
      { name: 'API Redis connections at 1,000 streams', measured: peakConns, limit: 4, op: 'le' },
      { name: 'API RSS at 1,000 streams', measured: row.apiRssPeakMB, limit: 300, op: 'le', unit: ' MB' },
      { name: 'errors', measured: errors.length, limit: 0, op: 'le' },
    ]);
    writeResults(process.env.BENCH_FANOUT_CHARS ? `fanout-${TEXT.length}chars` : 'fanout', {
      params: { streams: STREAMS, chars: TEXT.length, format: 'pcm', readBytesPerSec: PCM_BYTES_PER_SEC, engine: 'bench', benchDelayMs: 20, workerConcurrency: WORKER_CONCURRENCY, quick: QUICK },
      idle, clientNamesAtPeak: peakNames, row, samples, targets,
    });
  } finally {
    AGENT.destroy();
    await stack.stop();
  }
}

if (isMain(import.meta.url)) await runFanout();
