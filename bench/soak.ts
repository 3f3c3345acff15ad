/**
 * Soak: N concurrent clients stream speech in a loop for a while; prints the RSS of the API and worker
 * processes at the start and the end (and every minute), so a leak shows as growth under a steady load.
 * Starts its own redis-server, API process and worker processes on 127.0.0.1, and kills them when done.
 *
 *   node --import tsx bench/soak.ts                          # 200 streams for 10 minutes
 *   node --import tsx bench/soak.ts --duration-s 60          # a one-minute run
 *   node --import tsx bench/soak.ts --concurrency 50 --workers 1
 *
 * Not a test: it asserts nothing and exits 0 unless the stack fails to start; read the numbers.
 */
import { parseArgs } from 'node:util';
import { startRedisServer, freePort } from '../test/helpers/redis-server.ts';
import { spawnApi, spawnWorker, type WorkerProcess } from '../test/helpers/stack.ts';
import { rssBytes, descendants } from '../test/helpers/processes.ts';

const { values } = parseArgs({
  options: {
    'duration-s': { type: 'string', default: '600' },
    concurrency: { type: 'string', default: '200' },
    workers: { type: 'string', default: '2' },
  },
});
const durationS = Number(values['duration-s']);
const concurrency = Number(values.concurrency);
const workerCount = Number(values.workers);

const TEXTS = [
  'Hello from Chorus. This is a soak test of the streaming path.',
  'The quick brown fox jumps over the lazy dog, then naps in the afternoon sun.',
  'Memory that grows under a steady load is a leak; memory that levels off is a cache.',
  'Two hundred clients stream at once, again and again, for as long as the soak lasts.',
];
const FORMATS = ['mp3', 'opus', 'wav', 'pcm', 'flac', 'aac'];

const mb = (bytes: number) => `${(bytes / 1048576).toFixed(1)} MB`;

const redis = await startRedisServer();
const env = { REDIS_URL: redis.url, REDIS_PREFIX: 'soak', LOG_LEVEL: 'warn' };
const workers: WorkerProcess[] = [];
let api: Awaited<ReturnType<typeof spawnApi>> | undefined;

async function stopAll() {
  api?.process.kill('SIGKILL');
  await Promise.all(workers.map((w) => w.stop('SIGKILL')));
  await redis.stop();
}
process.once('SIGINT', () => void stopAll().then(() => process.exit(130)));

try {
  for (let i = 0; i < workerCount; i++) workers.push(spawnWorker({ ...env, HEARTBEAT_INTERVAL_MS: '500' }));
  api = await spawnApi({ ...env, MAX_QUEUE_DEPTH: '100000', QUEUE_TIMEOUT_S: '600', MAX_QUEUE_WAIT_MS: '3600000', RATE_LIMIT_PER_MIN: '0' }, await freePort());
  const baseUrl = api.baseUrl;
  for (let i = 0; (await fetch(`${baseUrl}/readyz`)).status !== 200; i++) {
    if (i > 300) throw new Error('workers did not become ready');
    await new Promise((r) => setTimeout(r, 100));
  }

  const apiPid = api.process.pid!;
  const workerPids = workers.map((w) => w.process.pid!);
  const sample = () => ({
    api: rssBytes(apiPid),
    workers: workerPids.map(rssBytes),
    // ffmpeg encoders (warm pool and active) and espeak-ng run as the workers' children.
    children: workerPids.flatMap((pid) => descendants(pid)).reduce((sum, p) => sum + rssBytes(p.pid), 0),
  });
  const show = (label: string, s: ReturnType<typeof sample>) =>
    console.log(`${label}: api ${mb(s.api)}, workers ${s.workers.map(mb).join(' + ')}, worker children ${mb(s.children)}`);

  const stats = { requests: 0, bytes: 0, errors: new Map<string, number>(), ttfb: [] as number[] };
  let deadline = Infinity;

  /** One streamed request, read to the end. */
  async function speak(i: number) {
    const t0 = performance.now();
    try {
      const res = await fetch(`${baseUrl}/v1/audio/speech`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'tts-1', voice: 'alloy', input: TEXTS[i % TEXTS.length], response_format: FORMATS[i % FORMATS.length],
        }),
      });
      let first = true;
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        if (first && res.status === 200) stats.ttfb.push(performance.now() - t0);
        first = false;
        stats.bytes += chunk.length;
      }
      if (res.status !== 200) stats.errors.set(String(res.status), (stats.errors.get(String(res.status)) ?? 0) + 1);
    } catch (err) {
      const key = (err as Error).message;
      stats.errors.set(key, (stats.errors.get(key) ?? 0) + 1);
    }
    stats.requests += 1;
  }

  async function client(id: number) {
    for (let n = 0; Date.now() < deadline; n++) await speak(id + n);
  }

  // Warm up (encoder pools, JIT, connection pools) before the first sample, then start counting afresh.
  await Promise.all(Array.from({ length: 24 }, (_, i) => speak(i)));
  Object.assign(stats, { requests: 0, bytes: 0, errors: new Map(), ttfb: [] });
  const start = sample();
  console.log(`soak: ${concurrency} concurrent streams for ${durationS} s, ${workerCount} worker(s)`);
  show('RSS at start', start);
  const t0 = Date.now();
  deadline = t0 + durationS * 1000;
  const ticker = setInterval(() => {
    const s = sample();
    show(`RSS after ${Math.round((Date.now() - t0) / 1000)} s (${stats.requests} requests)`, s);
  }, 60_000);
  await Promise.all(Array.from({ length: concurrency }, (_, i) => client(i)));
  clearInterval(ticker);
  const end = sample();
  show('RSS at end', end);

  const sorted = stats.ttfb.sort((a, b) => a - b);
  const pct = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]?.toFixed(0) ?? '-';
  const elapsedS = (Date.now() - t0) / 1000;
  console.log(`requests ${stats.requests} (${(stats.requests / elapsedS).toFixed(1)}/s), audio ${mb(stats.bytes)}, ` +
    `time to first byte p50 ${pct(0.5)} ms p99 ${pct(0.99)} ms, errors ${JSON.stringify(Object.fromEntries(stats.errors))}`);
  if (process.env.SOAK_LOGS === '1') console.log(api.output().slice(-6000), workers.map((w) => w.output().slice(-3000)).join('\n'));
  console.log(`RSS growth: api ${mb(end.api - start.api)}, workers ${end.workers.map((w, i) => mb(w - start.workers[i]!)).join(' + ')}`);
} finally {
  await stopAll();
}
