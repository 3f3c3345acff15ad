/**
 * Batch synthesis (issue 11), through the real routes: a 1,000-item batch submitted with the official `openai` SDK
 * (`files.create` + `batches.create` on `/v1/batches`), and
 *  1. realtime time to first byte (300-character mp3, one request at a time, 150 ms apart) while the batch runs,
 *     against the same requests with no batch, before and after it (pooled);
 *  2. batch throughput (items and audio seconds per second) against the same items sent as realtime requests
 *     with the same concurrency budget: as many clients as the batch lane has slots (`WORKER_BATCH_CONCURRENCY`).
 * Batch throughput is taken from the moment the realtime round ends to the batch's end (items done then are read
 * from `request_counts`), so realtime work does not slow it; the whole-batch figure is reported too. Audio seconds
 * of the realtime run are the output file's `duration_s` of the same items (same text, voice and format: espeak-ng
 * is deterministic; the byte counts are compared to check it).
 *
 *   node --import tsx bench/batch.ts [--quick] [--items N] [--realtime-items N] [--requests N] [--out file.json]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import OpenAI, { toFile } from 'openai';
import type { Batch } from 'openai/resources/batches';
import { AGENT, speech, speechBody, type SpeechResult } from './lib/http-client.ts';
import { closedLoop, sleep } from './lib/load.ts';
import { isMain } from './lib/main.ts';
import { QUICK, markStart, printTable, verdicts, writeResults } from './lib/report.ts';
import { BenchStack } from './lib/stack.ts';
import { percentile, round } from './lib/stats.ts';
import { PARAGRAPH_300, textOfLength } from './lib/texts.ts';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean' },
    'wait-quiet': { type: 'boolean' },
    items: { type: 'string' },
    'realtime-items': { type: 'string' },
    requests: { type: 'string' },
    out: { type: 'string' },
  },
  allowPositionals: true,
  strict: false,
});
const int = (v: unknown, d: number) => (typeof v === 'string' ? Math.max(1, Number.parseInt(v, 10) || d) : d);

const ITEMS = int(args.items, QUICK ? 100 : 1000);
/** Realtime throughput is a rate: a prefix of the same items is enough (and halves the run). */
const REALTIME_ITEMS = Math.min(ITEMS, int(args['realtime-items'], QUICK ? 50 : 300));
const REQUESTS = int(args.requests, QUICK ? 6 : 25);
const GAP_MS = 150;
const WORKER_CONCURRENCY = 2;
const BATCH_CONCURRENCY = 1;
/** Short items (about 3.5 s of speech each), so 1,000 of them fit in a few minutes on two cores. */
const ITEM_CHARS = 60;
const ITEM_FORMAT = 'mp3';
const ENDPOINT = '/v1/audio/speech' as never;

const itemText = (i: number) => `${i + 1}. ${textOfLength(ITEM_CHARS)}`;

interface OutputLine { custom_id: string; response: { status_code: number; body: { bytes: number; duration_s: number } } }

async function realtimeRound(stack: BenchStack, n: number, stillRunning?: () => Promise<boolean>) {
  const ttfb: number[] = [];
  let errors = 0;
  let overlapped = 0;
  for (let i = 0; i < n; i++) {
    const r = await speech(stack.baseUrl, speechBody(PARAGRAPH_300, 'mp3'), { keepChunks: false });
    if (r.error) errors++;
    else ttfb.push(r.ttfbMs);
    // A "with batch" sample counts only if the batch was still running when it ended.
    if (stillRunning && (await stillRunning())) overlapped++;
    await sleep(GAP_MS);
  }
  return { ttfb, errors, overlapped };
}

const stat = (xs: number[], errors: number) => ({
  n: xs.length, errors, ttfbP50: round(percentile(xs, 50)), ttfbP95: round(percentile(xs, 95)),
});

async function waitBatch(client: OpenAI, id: string, timeoutMs: number): Promise<{ batch: Batch; endedAt: number }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const batch = await client.batches.retrieve(id);
    if (['completed', 'failed', 'cancelled', 'expired'].includes(batch.status)) return { batch, endedAt: performance.now() };
    if (Date.now() > deadline) throw new Error(`batch ${id} still ${batch.status} after ${timeoutMs / 1000} s: ${JSON.stringify(batch.request_counts)}`);
    await sleep(200);
  }
}

export async function runBatch() {
  markStart();
  const dataDir = await mkdtemp(path.join(tmpdir(), 'chorus-bench-batch-'));
  const stack = await BenchStack.start({
    workers: 1,
    apiEnv: { DATA_DIR: dataDir },
    workerEnv: { ENGINES: 'espeak', DATA_DIR: dataDir, WORKER_CONCURRENCY: String(WORKER_CONCURRENCY), WORKER_BATCH_CONCURRENCY: String(BATCH_CONCURRENCY) },
  });
  const client = new OpenAI({ baseURL: `${stack.baseUrl}/v1`, apiKey: 'bench', maxRetries: 0 });
  try {
    await closedLoop(1, 5, () => speech(stack.baseUrl, speechBody(PARAGRAPH_300, 'mp3'), { keepChunks: false }));

    // 1. Realtime TTFB without a batch, during one, and again without.
    const before = await realtimeRound(stack, REQUESTS);
    const lines = Array.from({ length: ITEMS }, (_, i) => JSON.stringify({
      custom_id: `item-${i}`, method: 'POST', url: '/v1/audio/speech',
      body: { model: 'tts-1', voice: 'alloy', input: itemText(i), response_format: ITEM_FORMAT },
    }));
    const file = await client.files.create({ file: await toFile(Buffer.from(`${lines.join('\n')}\n`), 'bench.jsonl'), purpose: 'batch' });
    const submittedAt = performance.now();
    let created = await client.batches.create({ input_file_id: file.id, endpoint: ENDPOINT, completion_window: '24h' });
    const createMs = performance.now() - submittedAt;
    // Validation runs in the background: the batch is queued once it leaves `validating`.
    while (created.status === 'validating') {
      await sleep(50);
      created = await client.batches.retrieve(created.id);
    }
    const validatedMs = performance.now() - submittedAt;
    if (created.status !== 'in_progress') throw new Error(`batch is ${created.status}: ${JSON.stringify(created.errors)}`);
    await sleep(500); // the batch lane's slot is busy, as in a running batch
    const running = async () => (await client.batches.retrieve(created.id)).status === 'in_progress';
    const during = await realtimeRound(stack, REQUESTS, running);
    const afterRoundAt = performance.now();
    const mid = await client.batches.retrieve(created.id);
    const doneAtRoundEnd = (mid.request_counts?.completed ?? 0) + (mid.request_counts?.failed ?? 0);
    const { batch, endedAt } = await waitBatch(client, created.id, 30 * 60_000);
    const after = await realtimeRound(stack, REQUESTS);

    if (batch.status !== 'completed' || !batch.output_file_id) throw new Error(`batch ended ${batch.status}: ${JSON.stringify(batch.request_counts)}`);
    const output = (await (await client.files.content(batch.output_file_id)).text())
      .split('\n').filter(Boolean).map((l) => JSON.parse(l) as OutputLine);
    const byId = new Map(output.map((o) => [o.custom_id, o.response.body]));
    const audioS = output.reduce((s, o) => s + o.response.body.duration_s, 0);
    const failed = batch.request_counts?.failed ?? 0;

    const batchWallS = (endedAt - submittedAt) / 1000;
    const tailS = (endedAt - afterRoundAt) / 1000;
    const tailItems = ITEMS - doneAtRoundEnd;
    const meanAudioS = audioS / Math.max(1, output.length);

    // 2. The same items as realtime requests, as many clients as the batch lane has slots.
    const rt = await closedLoop(BATCH_CONCURRENCY, REALTIME_ITEMS, (i) =>
      speech(stack.baseUrl, speechBody(itemText(i), ITEM_FORMAT), { keepChunks: false }));
    const rtOk = rt.results.map((r, i) => ({ r, i })).filter(({ r }) => !r.error);
    const rtAudioS = rtOk.reduce((s, { i }) => s + (byId.get(`item-${i}`)?.duration_s ?? 0), 0);
    // Same item, same bytes (give or take nothing): the audio seconds borrowed from the batch are the realtime ones.
    const byteMismatches = rtOk.filter(({ r, i }) => byId.has(`item-${i}`) && byId.get(`item-${i}`)!.bytes !== r.bytes).length;

    const rowsLatency = {
      without: stat([...before.ttfb, ...after.ttfb], before.errors + after.errors),
      with: stat(during.ttfb, during.errors),
    };
    const throughput = {
      batch: {
        items: ITEMS, completed: output.length, failed, wallS: round(batchWallS, 2),
        itemsPerS: round(ITEMS / batchWallS, 2), audioSPerS: round(audioS / batchWallS, 2),
        tailItems, tailS: round(tailS, 2),
        tailItemsPerS: round(tailItems / tailS, 2), tailAudioSPerS: round((tailItems * meanAudioS) / tailS, 2),
      },
      realtime: {
        items: REALTIME_ITEMS, completed: rtOk.length, failed: REALTIME_ITEMS - rtOk.length, wallS: round(rt.wallMs / 1000, 2),
        itemsPerS: round(rtOk.length / (rt.wallMs / 1000), 2), audioSPerS: round(rtAudioS / (rt.wallMs / 1000), 2),
        ttfbP50: round(percentile(rtOk.map(({ r }) => r.ttfbMs), 50)), byteMismatches,
      },
    };

    printTable(`Realtime TTFB, ${PARAGRAPH_300.length}-char mp3 one at a time, without / while a ${ITEMS}-item batch runs (ms)`,
      ['batch', 'requests', 'TTFB p50', 'TTFB p95', 'errors'],
      (['without', 'with'] as const).map((m) => [m, rowsLatency[m].n, rowsLatency[m].ttfbP50, rowsLatency[m].ttfbP95, rowsLatency[m].errors]));
    console.log(`'with' requests that ended while the batch was still in progress: ${during.overlapped} of ${REQUESTS}; items done when the round ended: ${doneAtRoundEnd} of ${ITEMS}`);
    printTable(`Throughput, ${ITEM_CHARS + 5}-char ${ITEM_FORMAT} items, ${BATCH_CONCURRENCY} slot(s) / client(s)`,
      ['mode', 'items', 'failed', 'wall s', 'items/s', 'audio s/s'],
      [
        ['batch (whole)', ITEMS, failed, throughput.batch.wallS, throughput.batch.itemsPerS, throughput.batch.audioSPerS],
        ['batch (after the realtime round)', tailItems, undefined, throughput.batch.tailS, throughput.batch.tailItemsPerS, throughput.batch.tailAudioSPerS],
        ['realtime requests', REALTIME_ITEMS, throughput.realtime.failed, throughput.realtime.wallS, throughput.realtime.itemsPerS, throughput.realtime.audioSPerS],
      ]);
    if (byteMismatches) console.log(`!! ${byteMismatches} realtime responses differ in size from the batch's file for the same item`);
    const targets = verdicts([
      { name: 'realtime TTFB p95 during a batch / without', measured: round(rowsLatency.with.ttfbP95 / rowsLatency.without.ttfbP95, 3), limit: 1.2, op: 'le' },
    ]);
    const ratios = {
      ttfbP50: round(rowsLatency.with.ttfbP50 / rowsLatency.without.ttfbP50, 3),
      ttfbP95: round(rowsLatency.with.ttfbP95 / rowsLatency.without.ttfbP95, 3),
      batchVsRealtimeItemsPerS: round(throughput.batch.tailItemsPerS / throughput.realtime.itemsPerS, 3),
    };
    console.log(`ratios: ${JSON.stringify(ratios)}; create answered in ${round(createMs)} ms, validated and queued in ${round(validatedMs)} ms`);
    const result = {
      params: {
        items: ITEMS, realtimeItems: REALTIME_ITEMS, itemChars: itemText(0).length, itemFormat: ITEM_FORMAT,
        requestsPerRound: REQUESTS, gapMs: GAP_MS, realtimeChars: PARAGRAPH_300.length, workerConcurrency: WORKER_CONCURRENCY,
        batchConcurrency: BATCH_CONCURRENCY, quick: QUICK,
      },
      latency: { ...rowsLatency, overlapped: during.overlapped, doneAtRoundEnd },
      throughput, ratios, createMs: round(createMs), validatedMs: round(validatedMs), targets,
    };
    writeResults('batch', result, typeof args.out === 'string' ? path.resolve(args.out) : undefined);
    return result;
  } finally {
    AGENT.destroy();
    await stack.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) await runBatch();
