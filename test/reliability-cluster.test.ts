import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { parseSse, readSomeSse } from './helpers/sse.ts';
import { spawnApi, startStack, type Stack } from './helpers/stack.ts';
import { startRedisCluster, type RedisClusterSet } from './helpers/redis-cluster.ts';
import { freePort } from './helpers/redis-server.ts';
import { waitFor } from './helpers/processes.ts';
import { batchLine, jsonlFile, submitBatch, untilBatch } from './helpers/batches.ts';

/*
 * Issue 14, Redis Cluster (REDIS_CLUSTER_NODES): 3 primaries + 3 replicas started by the test, two API replicas
 * (one in-process, one its own process) and two workers. The SDK's raw and SSE speech, a legacy SSE resume on the
 * OTHER replica, a batch, a SIGKILLed worker's jobs handed back by its peer (CLIENT LIST on every primary), and a
 * SIGKILLed primary: requests succeed again once its replica took over, and every request accepted before or
 * around the kill ends with its whole audio or a clean, retryable error.
 */

const SHORT = 'The cluster answers.';
const LONG = 'This sentence is repeated to make many chunks of audio for the cluster test. '.repeat(20);
const workerText = (i: number) =>
  Array.from({ length: 12 }, (_, s) => `Stream ${i}, sentence ${s + 1}, keeps a worker busy on the cluster for a while.`).join(' ');
/**
 * Locks far longer than the shipped 6 s: recovery by lock expiry could not resume a killed worker's stream before
 * 30 s, so a faster recovery is the peer watch's doing.
 */
const LOCK_ENV = { LOCK_DURATION_MS: '60000', STALLED_INTERVAL_MS: '30000' };
/** cluster-node-timeout is 2 s; the rest is the election, slot refreshes and a loaded 2-core machine. */
const FAILOVER_BOUND_MS = 45_000;

let cluster: RedisClusterSet;
let stack: Stack;
let other: Awaited<ReturnType<typeof spawnApi>>;
let dataDir: string;
let sdkA: OpenAI;
let sdkB: OpenAI;

beforeAll(async () => {
  cluster = await startRedisCluster({ nodeTimeoutMs: 2000 });
  dataDir = await mkdtemp(path.join(tmpdir(), 'chorus-cluster-'));
  const shared = { DATA_DIR: dataDir, QUEUE_TIMEOUT_S: '90' };
  stack = await startStack({
    // REDIS_URL only gives the URL form (no password here); the nodes come from REDIS_CLUSTER_NODES.
    redisUrl: `redis://127.0.0.1:${cluster.nodes[0]!.port}`,
    clusterNodes: cluster.seeds,
    workers: 2,
    apiEnv: shared,
    workerEnv: { DATA_DIR: dataDir, WORKER_CONCURRENCY: '1', ...LOCK_ENV },
  });
  // A generous start: tsx compiles the API while the workers start on the same 2 cores.
  other = await spawnApi({ ...stack.env, ...shared }, await freePort(), 90_000);
  sdkA = new OpenAI({ baseURL: `${stack.baseUrl}/v1`, apiKey: 'unused', maxRetries: 0 });
  sdkB = new OpenAI({ baseURL: `${other.baseUrl}/v1`, apiKey: 'unused', maxRetries: 0 });
}, 180_000);

afterAll(async () => {
  other?.process.kill('SIGKILL');
  // After a primary was killed, one of the API's close steps sometimes never returned (2 runs of 7): each step is
  // bounded in the API now (plugins/services.ts), so this returns.
  await stack?.stop();
  await cluster?.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

async function sdkRaw(client: OpenAI, input: string, format: 'mp3' | 'pcm' = 'mp3'): Promise<Buffer> {
  const res = await client.audio.speech.create({ model: 'tts-1', voice: 'alloy', input, response_format: format });
  return Buffer.from(await res.arrayBuffer());
}

interface Outcome {
  status: number;
  body: Buffer;
  /** A JSON error envelope's code, or `aborted` when the stream broke after its headers. */
  error?: string;
  firstChunk: Promise<void>;
}

/** A raw speech request that reports its first audio chunk as it arrives. */
function streaming(baseUrl: string, input: string): { done: Promise<Outcome>; firstChunk: Promise<void> } {
  let gotFirst!: () => void;
  const firstChunk = new Promise<void>((r) => (gotFirst = r));
  const done = (async (): Promise<Outcome> => {
    const res = await fetch(`${baseUrl}/v1/audio/speech`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tts-1', voice: 'alloy', input, response_format: 'mp3' }),
      signal: AbortSignal.timeout(150_000),
    });
    if (res.status !== 200) {
      const json = (await res.json().catch(() => ({}))) as { error?: { code?: string } };
      gotFirst();
      return { status: res.status, body: Buffer.alloc(0), error: json.error?.code ?? 'no envelope', firstChunk };
    }
    const chunks: Buffer[] = [];
    try {
      for await (const chunk of res.body!) {
        chunks.push(Buffer.from(chunk));
        gotFirst();
      }
    } catch {
      gotFirst();
      return { status: res.status, body: Buffer.concat(chunks), error: 'aborted', firstChunk };
    }
    gotFirst();
    return { status: 200, body: Buffer.concat(chunks), firstChunk };
  })();
  return { done, firstChunk };
}

describe('Redis Cluster: two API replicas, two workers', () => {
  it('speech, raw and SSE, through the official openai SDK on both replicas: the same audio', async () => {
    const a = await sdkRaw(sdkA, LONG);
    const b = await sdkRaw(sdkB, LONG);
    expect(a.length).toBeGreaterThan(10_000);
    expect(a.equals(b)).toBe(true);

    for (const client of [sdkA, sdkB]) {
      const res = await client.audio.speech.create({
        model: 'tts-1', voice: 'alloy', input: LONG, response_format: 'mp3', stream_format: 'sse',
      });
      expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
      const payloads = parseSse(await res.text()).map((e) => e.data);
      expect(payloads.at(-1)).toBe('[DONE]');
      const json = payloads.slice(0, -1).map((d) => JSON.parse(d) as { type: string; audio?: string });
      expect(json.at(-1)!.type).toBe('speech.audio.done');
      const audio = Buffer.concat(json.filter((j) => j.type === 'speech.audio.delta').map((j) => Buffer.from(j.audio!, 'base64')));
      expect(audio.equals(a)).toBe(true);
    }
  });

  it('a legacy SSE stream dropped on one replica resumes (Last-Event-ID) on the other, byte for byte', async () => {
    const k = 3;
    const first = await readSomeSse(`${stack.baseUrl}/api/generate_tts/stream`, { text: LONG, speaker: 'echo', format: 'pcm' }, 1 + k);
    const jobId = (JSON.parse(first[0]!.data) as { job_id: string }).job_id;
    expect(first.at(-1)!.id).toBe(String(k - 1));

    const resumed = await fetch(`${other.baseUrl}/api/jobs/${jobId}/events`, { headers: { 'last-event-id': first.at(-1)!.id! } });
    expect(resumed.status).toBe(200);
    const rest = parseSse(await resumed.text()).map((e) => JSON.parse(e.data) as { type: string; seq?: number; audio?: string });
    expect(rest[0]!.type).toBe('audio');
    expect(rest[0]!.seq).toBe(k);
    expect(rest.at(-1)!.type).toBe('done');
    const got = Buffer.concat([
      ...first.slice(1).map((e) => Buffer.from((JSON.parse(e.data) as { audio: string }).audio, 'base64')),
      ...rest.filter((e) => e.type === 'audio').map((e) => Buffer.from(e.audio!, 'base64')),
    ]);
    const whole = await fetch(`${other.baseUrl}/api/generate_tts`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text: LONG, speaker: 'echo', format: 'pcm' }),
    });
    expect(got.equals(Buffer.from(await whole.arrayBuffer()))).toBe(true);
  });

  it('a batch (/v1/files + /v1/batches) created on one replica completes and is read on the other', async () => {
    const lines = ['one', 'two', 'three'].map((id) => batchLine(id, { input: `Batch item ${id} on the cluster.`, response_format: 'mp3' }));
    const created = await submitBatch(sdkA, lines);
    const done = await untilBatch(sdkB, created.id, (b) => ['completed', 'failed', 'expired', 'cancelled'].includes(b.status), 120_000);
    expect(done.status).toBe('completed');
    expect(done.request_counts).toMatchObject({ total: 3, completed: 3, failed: 0 });
    const out = await jsonlFile<{ custom_id: string; response: { status_code: number; body: { file_id: string } } }>(sdkB, done.output_file_id!);
    expect(out.map((o) => o.custom_id).sort()).toEqual(['one', 'three', 'two']);
    for (const o of out) {
      expect(o.response.status_code).toBe(200);
      const audio = Buffer.from(await (await sdkA.files.content(o.response.body.file_id)).arrayBuffer());
      expect(audio.length).toBeGreaterThan(1000);
    }
    // Listed on both replicas (the indexes and the metadata live in different slots).
    expect((await sdkB.batches.list()).data.map((b) => b.id)).toContain(created.id);
    expect((await sdkA.files.list()).data.map((f) => f.id)).toContain(created.input_file_id);
  }, 150_000);

  it('a SIGKILLed worker\'s streams are handed back by its peer at once (CLIENT LIST on every primary)', async () => {
    const refs = await Promise.all([0, 1].map((i) => sdkRaw(sdkA, workerText(i))));
    const victim = stack.workers[0]!;
    const survivor = stack.workers[1]!;
    // One slot per worker: with both requests streaming, each worker holds one of them.
    const runs = [streaming(stack.baseUrl, workerText(0)), streaming(other.baseUrl, workerText(1))];
    await Promise.all(runs.map((r) => r.firstChunk));
    victim.process.kill('SIGKILL');
    const t0 = performance.now();
    const results = await Promise.all(runs.map((r) => r.done));
    const ms = performance.now() - t0;
    const log = survivor.output().split('\n').filter((l) => /handed back|handing/.test(l)).join('\n');
    console.log(`cluster worker failover: both streams done ${(ms / 1000).toFixed(1)} s after the kill\n${log}`);
    results.forEach((r, i) => {
      expect(r.status).toBe(200);
      expect(r.error).toBeUndefined();
      expect(r.body.equals(refs[i]!)).toBe(true);
    });
    expect(log).toMatch(/dead worker's jobs handed back/);
    // Lock expiry could not resume the victim's stream before 30 s (LOCK_ENV).
    expect(ms).toBeLessThan(25_000);
    await stack.addWorker();
    await stack.waitForWorkers(2);
  }, 120_000);

  it('a SIGKILLed primary: requests succeed again after the failover, and no accepted request is lost', async () => {
    const ref = await sdkRaw(sdkA, SHORT);
    const refLong = await sdkRaw(sdkA, workerText(2));
    // The primary holding the queues (and so the jobs): the one whose loss matters most.
    const victim = await cluster.primaryFor(stack.keys.bullPrefix());

    // Accepted before the kill: two streaming (one per worker slot), four waiting, on both replicas.
    const accepted = [
      streaming(stack.baseUrl, workerText(2)), streaming(other.baseUrl, workerText(2)),
      streaming(stack.baseUrl, SHORT), streaming(other.baseUrl, SHORT), streaming(stack.baseUrl, SHORT), streaming(other.baseUrl, SHORT),
    ];
    await Promise.all(accepted.slice(0, 2).map((r) => r.firstChunk));
    // Around the kill: requests sent while the primary dies.
    const around = [streaming(stack.baseUrl, SHORT), streaming(other.baseUrl, SHORT)];
    const logFrom = stack.workers.map((w) => w.output().length);
    await victim.kill();
    around.push(streaming(stack.baseUrl, SHORT), streaming(other.baseUrl, SHORT));

    const refused: { status: number; error?: string }[] = [];
    const backMs = await waitFor(async () => {
      for (const base of [stack.baseUrl, other.baseUrl]) {
        const r = await streaming(base, SHORT).done;
        if (r.status !== 200 || r.error || !r.body.equals(ref)) {
          refused.push({ status: r.status, error: r.error });
          return false;
        }
      }
      return true;
    }, FAILOVER_BOUND_MS + 30_000, 250);
    console.log(`cluster failover: requests succeed again ${(backMs / 1000).toFixed(1)} s after the primary died; ` +
      `${refused.length} refused meanwhile (${JSON.stringify(refused.slice(0, 5))})`);
    expect(backMs).toBeGreaterThanOrEqual(0);
    expect(backMs).toBeLessThan(FAILOVER_BOUND_MS);
    // While the slot had no primary: a retryable 503 in OpenAI's envelope, never a 500 or a hang.
    for (const f of refused) expect([f.status, f.error]).toEqual([503, 'backend_unavailable']);
    expect(await cluster.healthy()).toBe(true);

    const outcomes = await Promise.all([...accepted, ...around].map((r) => r.done));
    const tally = { completed: 0, retryable: 0, lost: 0 };
    outcomes.forEach((o, i) => {
      const want = i < 2 ? refLong : ref;
      if (o.status === 200 && !o.error && o.body.equals(want)) tally.completed++;
      else if (o.status === 503 && o.error === 'backend_unavailable') tally.retryable++;
      else tally.lost++;
    });
    console.log(`cluster failover: of ${outcomes.length} requests accepted before or around the kill ` +
      `${JSON.stringify(tally)}; ${JSON.stringify(outcomes.map((o) => [o.status, o.error ?? 'ok', o.body.length]))}`);
    // Every request accepted before the kill completes with its whole audio.
    for (const [i, o] of outcomes.slice(0, accepted.length).entries()) {
      expect([i, o.status, o.error]).toEqual([i, 200, undefined]);
      expect(o.body.equals(i < 2 ? refLong : ref)).toBe(true);
    }
    expect(tally.lost).toBe(0);
    // No live worker was taken for dead while the nodes changed (its jobs would have run twice).
    const falseDeaths = stack.workers.map((w, i) => w.output().slice(logFrom[i])).join('').match(/.*worker connections gone.*/g);
    expect(falseDeaths).toBeNull();
  }, 240_000);
});
