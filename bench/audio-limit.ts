import { BenchStack } from './lib/stack.ts';
import { rssBytes } from './lib/processes.ts';

/*
 * Issue 9, finding 2, measured: the request that used to become hours of audio (4,095 CJK ideographs at speed
 * 0.25, opus) against the default MAX_AUDIO_SECONDS. Prints how long until the worker gave up, the bytes the
 * client got (what the job's stream held), and the worker's peak RSS (every 5 s on stderr while it runs).
 *   node --import tsx bench/audio-limit.ts [format] [MAX_AUDIO_SECONDS]
 */
const format = process.argv[2] ?? 'opus';
const limit = process.argv[3];
const stack = await BenchStack.start({ workers: 1, apiEnv: limit ? { MAX_AUDIO_SECONDS: limit } : {} });
try {
  const workerPid = stack.workers[0]!.pid;
  const idleRss = rssBytes(workerPid);
  let peakRss = idleRss;
  const t0 = performance.now();
  let ticks = 0;
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, rssBytes(workerPid));
    if (++ticks % 50 === 0) console.error(`${((performance.now() - t0) / 1000).toFixed(0)} s: worker peak RSS ${(peakRss / 1e6).toFixed(0)} MB`);
  }, 100);
  const res = await fetch(`${stack.baseUrl}/v1/audio/speech`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'tts-1', voice: 'alloy', input: '漢'.repeat(4095), response_format: format, speed: 0.25 }),
  });
  let bytes = 0;
  let outcome = 'complete';
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) bytes += chunk.length;
  } catch {
    outcome = 'truncated';
  }
  const seconds = (performance.now() - t0) / 1000;
  clearInterval(sampler);
  console.log(JSON.stringify({
    format, maxAudioSeconds: limit ?? 'default', status: res.status, outcome, seconds: +seconds.toFixed(2), bytes,
    workerRssIdleMB: +(idleRss / 1e6).toFixed(0),
    workerRssPeakMB: +(peakRss / 1e6).toFixed(0),
  }));
} finally {
  await stack.stop();
}
