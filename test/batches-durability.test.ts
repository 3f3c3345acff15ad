import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI, { toFile } from 'openai';
import type { Batch } from 'openai/resources/batches';
import { Redis } from 'ioredis';
import { Queue } from 'bullmq';
import { liveWorkers, RedisKeys, speechQueueName } from '@chorus/shared';
import { spawnApi, spawnWorker, type WorkerProcess } from './helpers/stack.ts';
import { freePort, startRedisServer, type RedisServer } from './helpers/redis-server.ts';
import { decodeAllToPcm, rms } from './helpers/audio.ts';

/*
 * Batch durability (SPEC §2 Batch): "restarting the API, a worker or Redis (AOF) during a batch loses nothing and
 * runs no completed item twice; the batch finishes once every item has an outcome". A 200-item batch, submitted
 * with the official SDK, lives through three faults in a row, each once progress is visible: a worker SIGKILLed,
 * the API process SIGKILLed and started again on the same port, redis-server SIGKILLed and restarted (AOF,
 * appendfsync always). Then every item has exactly one outcome, one output line, one audio object and one zip
 * entry, and every file decodes to the duration its line reports.
 */

const execFileAsync = promisify(execFile);
const ITEMS = 200;
const FORMATS = ['wav', 'mp3', 'opus', 'flac', 'pcm', 'aac'] as const;
/** Sentences of different lengths: items of one to a few seconds of audio, so the batch lasts long enough to hurt. */
const SENTENCES = [
  'The quick brown fox jumps over the lazy dog.',
  'A batch keeps going while the machines around it fail.',
  'Every item is spoken once and written once.',
  'Redis comes back with everything it had.',
];
const customId = (i: number) => `d-${String(i).padStart(3, '0')}`;
const formatOf = (i: number) => FORMATS[i % FORMATS.length]!;
const inputOf = (i: number) => `Item ${i}. ${SENTENCES.slice(0, 1 + (i % SENTENCES.length)).join(' ')}`;

interface OutputLine {
  custom_id: string;
  response: { status_code: number; request_id: string; body: { file_id: string; content_type: string; bytes: number; duration_s: number } };
  error: null;
}

let redisServer: RedisServer;
let redis: Redis;
let keys: RedisKeys;
let dataDir: string;
let port: number;
let env: Record<string, string>;
let workerEnv: Record<string, string>;
let api: Awaited<ReturnType<typeof spawnApi>> | undefined;
const workers: WorkerProcess[] = [];
/** Every pino line any worker printed (the killed one's too, up to its death), parsed. */
const workerLogs: { worker: number; msg: string; jobId?: string }[] = [];

function addWorker(): WorkerProcess {
  const w = spawnWorker(workerEnv);
  const index = workers.push(w) - 1;
  // Our own reader: WorkerProcess.output() keeps only the last 200 kB, and we need every line.
  let partial = '';
  w.process.stdout!.on('data', (d: Buffer) => {
    const lines = (partial + d.toString()).split('\n');
    partial = lines.pop()!;
    for (const l of lines) {
      try {
        const j = JSON.parse(l) as { msg?: string; jobId?: string };
        workerLogs.push({ worker: index, msg: j.msg ?? '', jobId: j.jobId });
      } catch {
        // not a log line
      }
    }
  });
  return w;
}

async function waitForLiveWorkers(n: number) {
  const deadline = Date.now() + 30_000;
  while ((await liveWorkers(redis, keys)).length < n) {
    const dead = workers.some((w) => w.process.exitCode !== null);
    if (dead || Date.now() > deadline) throw new Error(`workers did not start:\n${workers.map((w) => w.output()).join('\n---\n')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  redisServer = await startRedisServer({ appendonly: true });
  dataDir = await mkdtemp(path.join(tmpdir(), 'chorus-batch-durab-'));
  const prefix = `t${randomUUID().replace(/-/g, '').slice(0, 12)}`;
  keys = new RedisKeys(prefix);
  redis = new Redis(redisServer.url, { maxRetriesPerRequest: null });
  redis.on('error', () => {}); // Redis is killed on purpose; ioredis would print every reconnect failure
  env = { REDIS_URL: redisServer.url, REDIS_PREFIX: prefix, DATA_DIR: dataDir, LOG_LEVEL: 'warn' };
  // Workers log at info: their 'job completed' lines are the evidence that no item ran to completion twice.
  workerEnv = { ...env, LOG_LEVEL: 'info', WORKER_BATCH_CONCURRENCY: '2', HEARTBEAT_INTERVAL_MS: '500' };
  port = await freePort();
  addWorker();
  addWorker();
  api = await spawnApi(env, port);
  await waitForLiveWorkers(2);
}, 60_000);

afterAll(async () => {
  api?.process.kill('SIGKILL');
  await Promise.all(workers.map((w) => w.stop('SIGKILL')));
  redis?.disconnect();
  await redisServer?.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

describe('a 200-item batch through a worker SIGKILL, an API restart and a Redis restart', () => {
  it('completes with every item exactly once: one outcome, one output line, one audio object, one zip entry', async () => {
    const t0 = performance.now();
    const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'unused', maxRetries: 0 });
    const lines = Array.from({ length: ITEMS }, (_, i) => JSON.stringify({
      custom_id: customId(i), method: 'POST', url: '/v1/audio/speech',
      body: { model: 'tts-1', voice: 'alloy', input: inputOf(i), response_format: formatOf(i) },
    }));
    const input = await client.files.create({ file: await toFile(Buffer.from(lines.join('\n') + '\n'), 'in.jsonl'), purpose: 'batch' });
    const created = await client.batches.create({ input_file_id: input.id, endpoint: '/v1/audio/speech' as never, completion_window: '24h' });
    // `validating` once validation runs in the background; the counts are checked at the end.
    expect(['validating', 'in_progress']).toContain(created.status);

    /** Polls the batch until `done`; connection errors (API down) and 503s (Redis down) are waited out. */
    const until = async (what: string, done: (b: Batch) => boolean, timeoutMs: number): Promise<Batch> => {
      const deadline = Date.now() + timeoutMs;
      let last: Batch | undefined;
      let lastError: unknown;
      for (;;) {
        try {
          last = await client.batches.retrieve(created.id);
          if (done(last)) return last;
        } catch (err) {
          if (!(err instanceof OpenAI.APIConnectionError) && !(err instanceof OpenAI.InternalServerError)) throw err;
          lastError = err;
        }
        if (Date.now() > deadline) {
          throw new Error(`${what}: batch still ${last?.status} ${JSON.stringify(last?.request_counts)} (last error: ${String(lastError)})`);
        }
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    const log: string[] = [];
    const mark = (what: string, b: Batch) => log.push(`${((performance.now() - t0) / 1000).toFixed(1)} s ${what} at ${b.request_counts!.completed}/${ITEMS}`);
    // Each fault waits for 20 more completed items than the last: it lands mid-batch, after progress resumed.
    const STEP = 20;

    // 1. A worker dies holding items (2 each, the lane is never idle). A replacement starts at once: the batch
    //    keeps two workers' pace (the test stays short) and a worker that joins mid-batch is covered too; the dead
    //    one's items come back by stall recovery on whichever worker gets them.
    let b = await until('first progress', (x) => x.request_counts!.completed >= STEP, 60_000);
    await workers[0]!.stop('SIGKILL');
    mark('worker 0 SIGKILLed', b);
    addWorker();
    let before = b.request_counts!.completed;

    // 2. The API process dies and comes back on the same port and environment (nothing of a batch lives in it).
    b = await until('progress after the worker kill', (x) => x.request_counts!.completed >= before + STEP, 60_000);
    api!.process.kill('SIGKILL');
    await new Promise((r) => api!.process.once('exit', r));
    mark('API SIGKILLed', b);
    api = await spawnApi(env, port);
    before = b.request_counts!.completed;

    // 3. Redis dies (SIGKILL, a second down) and restarts from its AOF; API and workers reconnect by themselves.
    b = await until('progress after the API restart', (x) => x.request_counts!.completed >= before + STEP, 60_000);
    expect(b.request_counts!.completed, 'the batch must still be running when Redis dies').toBeLessThan(ITEMS - STEP);
    await redisServer.kill();
    mark('redis SIGKILLed', b);
    await new Promise((r) => setTimeout(r, 1000));
    await redisServer.restart();

    const done = await until('completion', (x) => x.status === 'completed', 120_000);
    mark('completed', done);
    console.log(log.join('\n'));

    expect(done.request_counts).toEqual({ total: ITEMS, completed: ITEMS, failed: 0 });
    expect(done.error_file_id).toBeNull();
    expect(await redis.hlen(keys.batchOutcomes(created.id))).toBe(ITEMS);

    // The output file: exactly one line per custom_id, each naming its own file.
    const out = (await (await client.files.content(done.output_file_id!)).text())
      .split('\n').filter(Boolean).map((l) => JSON.parse(l) as OutputLine);
    expect(out).toHaveLength(ITEMS);
    expect(out.map((l) => l.custom_id).sort()).toEqual(Array.from({ length: ITEMS }, (_, i) => customId(i)));
    expect(new Set(out.map((l) => l.response.body.file_id)).size).toBe(ITEMS);

    // Every audio file downloads whole (4 at a time) and decodes to the duration its line reports.
    const queue = [...out];
    const encoded: { line: OutputLine; audio: Buffer }[] = [];
    await Promise.all(Array.from({ length: 4 }, async () => {
      for (let l = queue.shift(); l; l = queue.shift()) {
        expect(l.response.status_code).toBe(200);
        const audio = Buffer.from(await (await client.files.content(l.response.body.file_id)).arrayBuffer());
        expect(audio.length, l.custom_id).toBe(l.response.body.bytes);
        expect(l.response.body.duration_s, l.custom_id).toBeGreaterThan(1);
        if (formatOf(Number(l.custom_id.slice(2))) === 'pcm') {
          // Raw 24 kHz s16le mono: the duration is in the byte count.
          expect(audio.length % 2).toBe(0);
          expect(Math.abs(audio.length / 48_000 - l.response.body.duration_s), l.custom_id).toBeLessThan(0.001);
          expect(rms(audio), l.custom_id).toBeGreaterThan(100);
        } else {
          encoded.push({ line: l, audio });
        }
      }
    }));
    // Decoded by ffmpeg to 24 kHz s16le, many files per ffmpeg run (4 runs); encoder padding (mp3, opus, aac) is tens
    // of milliseconds.
    expect(encoded).toHaveLength(Array.from({ length: ITEMS }, (_, i) => formatOf(i)).filter((f) => f !== 'pcm').length);
    const runs = Array.from({ length: 4 }, (_, r) => encoded.filter((_, k) => k % 4 === r));
    await Promise.all(runs.map(async (run) => {
      const pcms = await decodeAllToPcm(run.map((x) => x.audio), run.map((x) => x.line.custom_id));
      run.forEach(({ line: l }, k) => {
        const pcm = pcms[k]!;
        const format = formatOf(Number(l.custom_id.slice(2)));
        expect(Math.abs(pcm.length / 48_000 - l.response.body.duration_s), `${l.custom_id} (${format})`).toBeLessThan(0.1);
        expect(rms(pcm), l.custom_id).toBeGreaterThan(100);
      });
    }));

    // Storage (FsStorage: `files/<id>`, its content type in `.<id>.meta` beside it): exactly the 200 audio objects the
    // output names. An item written a second time under another id would be an extra one here.
    const filesDir = path.join(dataDir, 'files');
    const audioObjects: string[] = [];
    for (const name of await readdir(filesDir)) {
      if (name.startsWith('.')) continue; // metadata, and temp files a killed attempt left
      const meta = JSON.parse(await readFile(path.join(filesDir, `.${name}.meta`), 'utf8')) as { contentType: string };
      if (meta.contentType.startsWith('audio/')) audioObjects.push(name);
    }
    expect(audioObjects.sort()).toEqual(out.map((l) => l.response.body.file_id).sort());

    // The archive, listed by unzip: the 200 custom_id-named entries, nothing else.
    const zipDir = await mkdtemp(path.join(tmpdir(), 'chorus-zip-'));
    try {
      const res = await fetch(`http://127.0.0.1:${port}/v1/batches/${created.id}/archive`);
      expect(res.status).toBe(200);
      await writeFile(path.join(zipDir, 'all.zip'), Buffer.from(await res.arrayBuffer()));
      const { stdout } = await execFileAsync('unzip', ['-Z1', path.join(zipDir, 'all.zip')], { maxBuffer: 1 << 20 });
      expect(stdout.split('\n').filter(Boolean).sort())
        .toEqual(Array.from({ length: ITEMS }, (_, i) => `${customId(i)}.${formatOf(i)}`).sort());
    } finally {
      await rm(zipDir, { recursive: true, force: true });
    }

    /*
     * No completed item ran twice. A batch item's attempt logs 'job completed' (with its BullMQ job id) right after
     * StorageSink.end wrote its file and recorded its outcome; an item delivered again once its outcome exists is
     * skipped ('duplicate delivery ignored'). Across every worker's whole log, the killed worker's up to its death,
     * no item may have two 'job completed' lines. This proves that no item was synthesized and recorded to the end
     * twice, which the counters cannot show (HSETNX keeps a second recording out of them). It cannot see an attempt
     * that was cut off before its end (a killed worker's items restart from scratch by design: nothing of them was
     * completed), nor a completion whose log line was lost in the instant between recording and logging when its
     * worker died: hence at most the dead worker's 2 slots may lack a line.
     */
    const lane = new Queue(speechQueueName('espeak', 'batch'), { connection: redis, prefix: keys.bullPrefix() });
    try {
      const jobs = (await lane.getJobs(['completed', 'failed', 'active', 'waiting', 'prioritized', 'delayed']))
        .filter((j) => j.id!.startsWith(`${created.id}-`));
      expect(jobs).toHaveLength(ITEMS);
      expect(await Promise.all(jobs.map((j) => j.getState()))).toEqual(jobs.map(() => 'completed'));
      const completions = new Map<string, number>();
      for (const l of workerLogs) {
        if (l.msg === 'job completed' && l.jobId?.startsWith(`${created.id}-`)) completions.set(l.jobId, (completions.get(l.jobId) ?? 0) + 1);
      }
      const twice = [...completions].filter(([, n]) => n > 1).map(([id]) => id);
      const skipped = workerLogs.filter((l) => l.msg.startsWith('batch item has its outcome already')).length;
      const restarted = jobs.filter((j) => j.attemptsStarted > 1).length;
      console.log(`no-rerun evidence: ${completions.size} items logged one completion, ${twice.length} two or more; ` +
        `${skipped} duplicate deliveries skipped; ${restarted} jobs started more than once`);
      expect(twice).toEqual([]);
      expect(completions.size).toBeGreaterThanOrEqual(ITEMS - 2);
      // The dead worker's items really were taken over (else the SIGKILL proved nothing).
      expect(restarted).toBeGreaterThan(0);
    } finally {
      await lane.close();
    }
    console.log(`durability run: ${((performance.now() - t0) / 1000).toFixed(1)} s from upload to all checks done`);
  }, 300_000);
});
