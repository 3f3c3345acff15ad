/**
 * Realtime under backlog: time to first byte of realtime requests (300-character mp3, one at a time, a user
 * every 150 ms) while 1,000 batch jobs wait on the same queue, against the same requests with the queue empty.
 * The backlog is queued directly with BullMQ at PRIORITY.batch, with payloads built as SpeechService.start
 * builds them (TtsJob, streamKey from RedisKeys.audioStream). Phases alternate without/with twice; between
 * them the backlog is drained and the worker allowed to go idle. Also reported: how long realtime jobs waited
 * for a worker slot (BullMQ's processedOn − timestamp), the part a batch backlog can add.
 *
 *   node --import tsx bench/backlog.ts [--quick]
 *   BENCH_BACKLOG_BATCH_FORMAT=pcm node --import tsx bench/backlog.ts   # batch items that need no ffmpeg
 */
import { randomBytes } from 'node:crypto';
import { AudioFormat, JOB_CATALOG, JOB_NAMES, newJobId, PRIORITY, TtsJob, type TtsJobInput } from '@chorus/shared';
import { alloySpeaker } from './lib/direct.ts';
import { AGENT, speech, speechBody, type SpeechResult } from './lib/http-client.ts';
import { closedLoop, sleep } from './lib/load.ts';
import { isMain } from './lib/main.ts';
import { QUICK, markStart, printTable, verdicts, writeResults } from './lib/report.ts';
import { BenchStack } from './lib/stack.ts';
import { percentile, round } from './lib/stats.ts';
import { PARAGRAPH_300 } from './lib/texts.ts';

const BACKLOG = QUICK ? 200 : 1000;
const REQUESTS = QUICK ? 6 : 25;
const PHASES = QUICK ? 1 : 2;
const GAP_MS = 150;
const WORKER_CONCURRENCY = 2;
/** Container of the batch items (mp3 like the realtime requests; `pcm` shows what ffmpeg's share is). */
const BATCH_FORMAT = AudioFormat.parse(process.env.BENCH_BACKLOG_BATCH_FORMAT ?? 'mp3');

/** 1,000 batch items, as the API would enqueue them (the batch route will go through SpeechService.start). */
async function enqueueBacklog(stack: BenchStack, n: number) {
  const relayId = `backlog${randomBytes(4).toString('hex')}`;
  const speaker = alloySpeaker();
  const jobs = Array.from({ length: n }, () => {
    const jobId = newJobId();
    const data: TtsJobInput = {
      v: 1, requestId: `req_${randomBytes(16).toString('hex')}`, streamKey: stack.keys.audioStream(relayId, jobId),
      engine: 'espeak', model: 'tts-1', text: PARAGRAPH_300, speaker, format: BATCH_FORMAT, speed: 1, route: 'batch',
      priority: 'batch', enqueuedAt: Date.now(),
    };
    return {
      name: JOB_NAMES.synthesize,
      data: TtsJob.parse(data),
      opts: { ...JOB_CATALOG[JOB_NAMES.synthesize].options, jobId, priority: PRIORITY.batch },
    };
  });
  await stack.queue('espeak', 'batch').addBulk(jobs);
}

async function realtimeRound(stack: BenchStack) {
  const results: SpeechResult[] = [];
  const waits: number[] = [];
  for (let i = 0; i < REQUESTS; i++) {
    const r = await speech(stack.baseUrl, speechBody(PARAGRAPH_300, 'mp3'), { keepChunks: false });
    results.push(r);
    if (r.jobId) {
      const job = await stack.queue('espeak').getJob(r.jobId);
      if (job?.processedOn) waits.push(job.processedOn - job.timestamp);
    }
    await sleep(GAP_MS);
  }
  return { results, waits };
}

async function waitIdle(stack: BenchStack) {
  const lanes = [stack.queue('espeak'), stack.queue('espeak', 'batch')];
  for (const q of lanes) await q.drain();
  const deadline = Date.now() + 60_000;
  for (const q of lanes) while ((await q.getActiveCount()) > 0 && Date.now() < deadline) await sleep(100);
  await sleep(300);
}

export async function runBacklog() {
  markStart();
  const stack = await BenchStack.start({ workers: 1, workerEnv: { ENGINES: 'espeak', WORKER_CONCURRENCY: String(WORKER_CONCURRENCY) } });
  try {
    await closedLoop(1, 5, () => speech(stack.baseUrl, speechBody(PARAGRAPH_300, 'mp3'), { keepChunks: false }));
    const acc = { without: { ttfb: [] as number[], waits: [] as number[], errors: 0 }, with: { ttfb: [] as number[], waits: [] as number[], errors: 0 } };
    let minBacklogLeft = Infinity;
    for (let phase = 0; phase < PHASES; phase++) {
      for (const mode of ['without', 'with'] as const) {
        await waitIdle(stack);
        if (mode === 'with') {
          await enqueueBacklog(stack, BACKLOG);
          await sleep(500); // the worker's slots fill with batch items first, as in a real backlog
        }
        const { results, waits } = await realtimeRound(stack);
        if (mode === 'with') minBacklogLeft = Math.min(minBacklogLeft, await stack.queue('espeak', 'batch').getPrioritizedCount());
        for (const r of results) {
          if (r.error) acc[mode].errors++;
          else acc[mode].ttfb.push(r.ttfbMs);
        }
        acc[mode].waits.push(...waits);
      }
    }
    await waitIdle(stack);
    const stat = (m: 'with' | 'without') => ({
      n: acc[m].ttfb.length, errors: acc[m].errors,
      ttfbP50: round(percentile(acc[m].ttfb, 50)), ttfbP95: round(percentile(acc[m].ttfb, 95)),
      queueWaitP50: round(percentile(acc[m].waits, 50)), queueWaitP95: round(percentile(acc[m].waits, 95)),
    });
    const rows = { without: stat('without'), with: stat('with') };
    printTable(`Realtime under backlog: ${PARAGRAPH_300.length}-char mp3, one worker × ${WORKER_CONCURRENCY} jobs, ${BACKLOG} batch jobs waiting (ms)`,
      ['backlog', 'requests', 'TTFB p50', 'TTFB p95', 'slot wait p50', 'slot wait p95', 'errors'],
      (['without', 'with'] as const).map((m) => [m, rows[m].n, rows[m].ttfbP50, rows[m].ttfbP95, rows[m].queueWaitP50, rows[m].queueWaitP95, rows[m].errors]));
    console.log(`batch jobs still waiting at the end of each 'with' phase: at least ${minBacklogLeft}`);
    const targets = verdicts([
      { name: 'realtime TTFB p95 with backlog / without', measured: round(rows.with.ttfbP95 / rows.without.ttfbP95, 3), limit: 1.2, op: 'le' },
    ]);
    writeResults(BATCH_FORMAT === 'mp3' ? 'backlog' : `backlog-batch-${BATCH_FORMAT}`, {
      params: { backlog: BACKLOG, batchFormat: BATCH_FORMAT, requestsPerPhase: REQUESTS, phases: PHASES, gapMs: GAP_MS, workerConcurrency: WORKER_CONCURRENCY, format: 'mp3', chars: PARAGRAPH_300.length, quick: QUICK },
      rows, minBacklogLeft, targets,
    });
  } finally {
    AGENT.destroy();
    await stack.stop();
  }
}

if (isMain(import.meta.url)) await runBacklog();
