import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BenchStack } from './lib/stack.ts';
import { rssBytes } from './lib/processes.ts';
import { speech, speechBody } from './lib/http-client.ts';
import { percentile, round } from './lib/stats.ts';

/*
 * Issue 11 (batches): realtime time-to-first-byte while a batch runs through /v1/batches, against no batch; batch
 * throughput (items and audio seconds per second) against the same items sent as realtime requests; the API's
 * RSS while it validates and enqueues the batch. One worker, 2 realtime and 2 batch slots.
 *   node --import tsx bench/batch.ts [items=1000]
 */
const N = Number(process.argv[2] ?? 1000);
const SLOTS = 2;
const dataDir = await mkdtemp(path.join(tmpdir(), 'chorus-bench-batch-'));
const stack = await BenchStack.start({
  workers: 1,
  apiEnv: { DATA_DIR: dataDir },
  workerEnv: { DATA_DIR: dataDir, WORKER_CONCURRENCY: String(SLOTS), WORKER_BATCH_CONCURRENCY: String(SLOTS) },
});
const texts = Array.from({ length: N }, (_, i) => `Item ${i} of the benchmark batch: a sentence of ordinary length, spoken once.`);
const probe = 'How fast does the first byte arrive?';

async function ttfbs(n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const r = await speech(stack.baseUrl, speechBody(probe, 'mp3'), { keepChunks: false });
    if (r.status !== 200) throw new Error(`realtime ${r.status} ${r.error}`);
    out.push(r.ttfbMs);
    await new Promise((res) => setTimeout(res, 100));
  }
  return out;
}
const fmt = (v: number[]) => `p50 ${round(percentile(v, 50))} ms, p95 ${round(percentile(v, 95))} ms`;

try {
  await ttfbs(5); // warm up
  const idle = await ttfbs(40);

  // The batch: upload, create (validate + enqueue, timed, API RSS sampled), run.
  const jsonl = texts.map((t, i) => JSON.stringify({ custom_id: `b${i}`, method: 'POST', url: '/v1/audio/speech', body: speechBody(t, 'mp3') })).join('\n');
  const form = new FormData();
  form.set('purpose', 'batch');
  form.set('file', new Blob([jsonl]), 'bench.jsonl');
  const file = (await (await fetch(`${stack.baseUrl}/v1/files`, { method: 'POST', body: form })).json()) as { id: string };
  const pid = stack.api.pid;
  const rssIdle = rssBytes(pid);
  let rssPeak = rssIdle;
  const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, rssBytes(pid))), 20);
  const t0 = performance.now();
  const created = (await (await fetch(`${stack.baseUrl}/v1/batches`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ input_file_id: file.id, endpoint: '/v1/audio/speech', completion_window: '24h' }),
  })).json()) as { id: string; status: string };
  const createMs = performance.now() - t0;
  clearInterval(sampler);
  if (created.status !== 'in_progress') throw new Error(`batch ${JSON.stringify(created)}`);
  const during = await ttfbs(40);
  let batch: { status: string; output_file_id: string; request_counts: { completed: number } };
  for (;;) {
    batch = (await (await fetch(`${stack.baseUrl}/v1/batches/${created.id}`)).json()) as typeof batch;
    if (batch.status === 'completed') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const batchS = (performance.now() - t0) / 1000;
  const out = (await (await fetch(`${stack.baseUrl}/v1/files/${batch.output_file_id}/content`)).text())
    .split('\n').filter(Boolean).map((l) => JSON.parse(l) as { response: { body: { duration_s: number } } });
  const audioS = out.reduce((s, l) => s + l.response.body.duration_s, 0);

  // The same items as realtime requests, SLOTS at a time (the realtime lane's slots), whole files.
  const t1 = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: SLOTS }, async () => {
    while (next < N) {
      const r = await speech(stack.baseUrl, { ...speechBody(texts[next++]!, 'mp3'), stream: false }, { keepChunks: false });
      if (r.status !== 200) throw new Error(`realtime ${r.status}`);
    }
  }));
  const rtS = (performance.now() - t1) / 1000;

  const mb = (n: number) => (n / 1e6).toFixed(0);
  console.log(`${N} items, ${round(audioS)} s of audio; ${out.length} output lines`);
  console.log(`create (validate + enqueue): ${round(createMs)} ms; API RSS ${mb(rssIdle)} -> peak ${mb(rssPeak)} MB`);
  console.log(`realtime TTFB, no batch:       ${fmt(idle)}`);
  console.log(`realtime TTFB, batch running:  ${fmt(during)}  (p95 ratio ${round(percentile(during, 95) / percentile(idle, 95), 2)})`);
  console.log(`batch:    ${round(batchS)} s, ${round(N / batchS)} items/s, ${round(audioS / batchS)} audio s/s`);
  console.log(`realtime: ${round(rtS)} s, ${round(N / rtS)} items/s, ${round(audioS / rtS)} audio s/s (same items, ${SLOTS} at a time)`);
} finally {
  await stack.stop();
  await rm(dataDir, { recursive: true, force: true });
}
