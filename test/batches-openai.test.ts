import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import OpenAI, { toFile } from 'openai';
import type { Batch } from 'openai/resources/batches';
import { startStack, type Stack } from './helpers/stack.ts';
import { decodedDuration } from './helpers/audio.ts';
import { BATCH_ENDPOINT, batchLine, jsonlFile, submitBatch, untilBatch } from './helpers/batches.ts';
import { parseExposition } from './helpers/prom-text.ts';
import { freePort } from '../packages/shared/src/free-port.ts';

/*
 * OpenAI's Batch API with `/v1/audio/speech` as the endpoint, driven by the official SDK end to end: upload,
 * create, poll, list, cancel, output and error files, each item's audio as a file, the zip archive.
 */

const execFileAsync = promisify(execFile);
const ENDPOINT = BATCH_ENDPOINT;

interface OutputLine {
  id: string;
  custom_id: string;
  response: { status_code: number; request_id: string; body: { file_id: string; content_type: string; bytes: number; duration_s: number } };
  error: null;
}

const line = batchLine;

let stack: Stack;
let dataDir: string;
let a: OpenAI;
let b: OpenAI;
let workerMetricsPort: number;
beforeAll(async () => {
  workerMetricsPort = await freePort();
  dataDir = await mkdtemp(path.join(tmpdir(), 'chorus-batches-'));
  stack = await startStack({
    redisUrl: inject('redisUrl'),
    // MAX_AUDIO_SECONDS: one item of the last test passes it and fails on the worker.
    apiEnv: { API_KEYS: 'sk-a,sk-b', DATA_DIR: dataDir, MAX_AUDIO_SECONDS: '20' },
    workerEnv: { DATA_DIR: dataDir, WORKER_BATCH_CONCURRENCY: '2', METRICS_PORT: String(workerMetricsPort), METRICS_HOST: '127.0.0.1' },
  });
  [a, b] = ['sk-a', 'sk-b'].map((k) => new OpenAI({ baseURL: `${stack.baseUrl}/v1`, apiKey: k, maxRetries: 0 })) as [OpenAI, OpenAI];
});
afterAll(async () => {
  await stack?.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

const submit = (client: OpenAI, lines: string[]) => submitBatch(client, lines, { metadata: { run: 'test' } });

// Generous: the 20-item batch took 15-39 s at load averages 11-14 on 2 cores.
const until = (client: OpenAI, id: string, done: (b: Batch) => boolean, timeoutMs = 120_000) => untilBatch(client, id, done, timeoutMs);

/** chorus_batch_items_total by outcome (worker + API) and finalized batches by status (worker). */
type BatchMetrics = Awaited<ReturnType<typeof batchMetrics>>;
async function batchMetrics() {
  const worker = parseExposition(await (await fetch(`http://127.0.0.1:${workerMetricsPort}/metrics`)).text()).samples;
  const api = parseExposition(await (await fetch(`${stack.baseUrl}/metrics`, { headers: { authorization: 'Bearer sk-a' } })).text()).samples;
  const items = (outcome: string) => [...worker, ...api]
    .filter((x) => x.name === 'chorus_batch_items_total' && x.labels.outcome === outcome).reduce((n, x) => n + x.value, 0);
  const batches = (status: string) => worker.find((x) => x.name === 'chorus_batch_duration_seconds_count' && x.labels.status === status)?.value ?? 0;
  return { completed: items('completed'), failed: items('failed'), cancelled: items('cancelled'), batchesCompleted: batches('completed'), batchesCancelled: batches('cancelled') };
}

/** What the counters gained since `before`: each test asserts its own batch, whichever tests ran before it. */
async function metricsSince(before: BatchMetrics): Promise<BatchMetrics> {
  const now = await batchMetrics();
  return Object.fromEntries(Object.entries(now).map(([k, v]) => [k, v - before[k as keyof BatchMetrics]])) as BatchMetrics;
}

const jsonl = jsonlFile;

describe('/v1/batches with /v1/audio/speech', { timeout: 180_000 }, () => {
  it('a batch of 20 items completes: one output line per item, every audio file decodes with its reported duration, the zip holds them all', async () => {
    const formats = ['mp3', 'wav', 'flac', 'opus', 'mp3'];
    const lines = Array.from({ length: 20 }, (_, i) => line(`item-${i}`, { input: `Batch item number ${i}.`, response_format: formats[i % formats.length] }));
    const metricsBefore = await batchMetrics();
    const created = await submit(a, lines);
    expect(created).toMatchObject({
      object: 'batch', endpoint: '/v1/audio/speech', completion_window: '24h', status: 'validating', errors: null,
      request_counts: { total: 0, completed: 0, failed: 0 }, metadata: { run: 'test' }, output_file_id: null, in_progress_at: null,
    });
    expect(created.expires_at).toBe(created.created_at + 24 * 3600);
    expect(created.id).toMatch(/^batch_[0-9a-f]{28}$/);

    const done = await until(a, created.id, (x) => x.status === 'completed');
    expect(done.request_counts).toEqual({ total: 20, completed: 20, failed: 0 });
    expect(done.error_file_id).toBeNull();
    expect(done.completed_at).toBeGreaterThanOrEqual(done.in_progress_at!);
    expect(done.finalizing_at).not.toBeNull();
    expect(await metricsSince(metricsBefore)).toMatchObject({ completed: 20, failed: 0, cancelled: 0, batchesCompleted: 1 });

    const out = await jsonl<OutputLine>(a, done.output_file_id!);
    expect(out.map((l) => l.custom_id).sort()).toEqual(Array.from({ length: 20 }, (_, i) => `item-${i}`).sort());
    for (const l of out) {
      expect(l.response.status_code).toBe(200);
      expect(l.error).toBeNull();
      const i = Number(l.custom_id.split('-')[1]);
      const format = formats[i % formats.length]!;
      const res = await a.files.content(l.response.body.file_id);
      const audio = Buffer.from(await res.arrayBuffer());
      expect(audio.length).toBe(l.response.body.bytes);
      expect((await a.files.retrieve(l.response.body.file_id)).purpose).toBe('batch_output');
      const seconds = await decodedDuration(audio);
      expect(l.response.body.duration_s).toBeGreaterThan(0.5);
      // Encoder padding (mp3, opus) is tens of milliseconds.
      expect(Math.abs(seconds - l.response.body.duration_s), `${l.custom_id} (${format})`).toBeLessThan(0.1);
    }

    // The archive, unpacked by the unzip tool: every item by custom_id, byte for byte the item's file.
    const res = await fetch(`${stack.baseUrl}/v1/batches/${created.id}/archive`, { headers: { authorization: 'Bearer sk-a' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/zip');
    const dir = await mkdtemp(path.join(tmpdir(), 'chorus-zip-'));
    try {
      await writeFile(path.join(dir, 'all.zip'), Buffer.from(await res.arrayBuffer()));
      await execFileAsync('unzip', ['-q', path.join(dir, 'all.zip'), '-d', path.join(dir, 'x')]);
      const names = (await readdir(path.join(dir, 'x'))).sort();
      expect(names).toEqual(Array.from({ length: 20 }, (_, i) => `item-${i}.${formats[i % formats.length]}`).sort());
      for (const l of out) {
        const ext = formats[Number(l.custom_id.split('-')[1]) % formats.length];
        const bytes = await readFile(path.join(dir, 'x', `${l.custom_id}.${ext}`));
        expect(bytes.length).toBe(l.response.body.bytes);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }

    // An audio file deleted by its owner is left out of the archive; the rest is still a whole zip.
    const gone = out.find((l) => l.custom_id === 'item-3')!;
    await a.files.delete(gone.response.body.file_id);
    const after = await fetch(`${stack.baseUrl}/v1/batches/${created.id}/archive`, { headers: { authorization: 'Bearer sk-a' } });
    const dir2 = await mkdtemp(path.join(tmpdir(), 'chorus-zip-'));
    try {
      await writeFile(path.join(dir2, 'all.zip'), Buffer.from(await after.arrayBuffer()));
      const { stdout } = await execFileAsync('unzip', ['-Z1', path.join(dir2, 'all.zip')]);
      const listed = stdout.split('\n').filter(Boolean);
      expect(listed).toHaveLength(19);
      expect(listed).not.toContain('item-3.opus');
    } finally {
      await rm(dir2, { recursive: true, force: true });
    }

    // Owned by the key: another key sees no such batch.
    await expect(b.batches.retrieve(created.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    expect((await b.batches.list()).data.map((x) => x.id)).not.toContain(created.id);
  });

  it('a malformed file fails validation, every bad line reported with its line number', async () => {
    const lines = [
      line('ok-1', { input: 'Fine.' }),
      '{not json',
      JSON.stringify({ method: 'POST', url: '/v1/audio/speech', body: { model: 'tts-1', voice: 'alloy', input: 'x' } }),
      '',
      line('ok-1', { input: 'Duplicate id.' }),
      line('bad-voice', { input: 'Who?', voice: 'nobody-at-all' }),
      JSON.stringify({ custom_id: 'get', method: 'GET', url: '/v1/audio/speech', body: {} }),
      line('no-input', { input: undefined }),
      line('bad-model', { input: 'x', model: 'no-such-model' }),
      line('ok-2', { input: 'Fine too.' }),
    ];
    const batch = await until(a, (await submit(a, lines)).id, (x) => x.status !== 'validating');
    expect(batch.status).toBe('failed');
    expect(batch.failed_at).not.toBeNull();
    expect(batch.in_progress_at).toBeNull();
    expect(batch.errors?.data?.map((e) => [e.line, e.code, e.param])).toEqual([
      [2, 'invalid_json', null],
      [3, 'missing_required_parameter', 'custom_id'],
      [5, 'duplicate_custom_id', 'custom_id'],
      [6, 'invalid_value', 'body.voice'],
      [7, 'invalid_value', 'method'],
      [8, 'missing_required_parameter', 'body.input'],
      [9, 'model_not_found', 'body.model'],
    ]);
    for (const e of batch.errors!.data!) expect(e.message).toBeTruthy();
    // Nothing was queued.
    expect(await stack.redis.exists(stack.keys.batchOutcomes(batch.id))).toBe(0);
  });

  it('a file with more than 1000 bad lines lists the first 1000 and a summary entry', async () => {
    const created = await submit(a, [...Array.from({ length: 1005 }, () => '{bad'), line('fine', { input: 'ok' })]);
    const batch = await until(a, created.id, (x) => x.status !== 'validating');
    expect(batch.status).toBe('failed');
    const errors = batch.errors!.data!;
    expect(errors.length).toBe(1001);
    expect(errors[999]).toMatchObject({ line: 1000, code: 'invalid_json' });
    expect(errors[1000]).toMatchObject({ code: 'too_many_errors' });
    expect(errors[1000]!.message).toContain('5 more lines');
  });

  it('create errors: wrong endpoint, unknown file, another key\'s file', async () => {
    const file = await a.files.create({ file: await toFile(Buffer.from(line('x', { input: 'x' }) + '\n'), 'in.jsonl'), purpose: 'batch' });
    await expect(a.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' }))
      .rejects.toMatchObject({ status: 400, param: 'endpoint' });
    for (const window of ['1d', '0s', '169h', '24 h', '']) {
      await expect(a.batches.create({ input_file_id: file.id, endpoint: ENDPOINT, completion_window: window as '24h' }))
        .rejects.toMatchObject({ status: 400, param: 'completion_window', type: 'invalid_request_error' });
    }
    await expect(a.batches.create({ input_file_id: 'file-nope', endpoint: ENDPOINT, completion_window: '24h' }))
      .rejects.toMatchObject({ status: 404 });
    await expect(b.batches.create({ input_file_id: file.id, endpoint: ENDPOINT, completion_window: '24h' }))
      .rejects.toMatchObject({ status: 404 });
  });

  it('a cancelled batch ends cancelled with partial results; list pages newest first', async () => {
    const long = 'A batch item that takes a little while to speak, sentence after sentence. '.repeat(4);
    const lines = Array.from({ length: 40 }, (_, i) => line(`c-${i}`, { input: long, response_format: 'mp3' }));
    // Two older batches of this key for the listing below (they fail validation at once, no items run), so the
    // test pages through three batches however many other tests ran before it.
    for (let i = 0; i < 2; i++) await until(a, (await submit(a, ['{bad'])).id, (x) => x.status === 'failed');
    const metricsBefore = await batchMetrics();
    const batch = await submit(a, lines);
    await until(a, batch.id, (x) => x.request_counts!.completed >= 2);
    const cancelling = await a.batches.cancel(batch.id);
    expect(['cancelling', 'cancelled']).toContain(cancelling.status);
    const done = await until(a, batch.id, (x) => x.status === 'cancelled');
    expect(done.cancelled_at).not.toBeNull();
    const { completed, failed, total } = done.request_counts!;
    expect(total).toBe(40);
    expect(completed).toBeGreaterThanOrEqual(2);
    expect(completed).toBeLessThan(40);
    expect(failed).toBe(0);
    // Every item counted once: this batch's completed ones, the rest cancelled.
    expect(await metricsSince(metricsBefore)).toMatchObject({ completed, failed: 0, cancelled: 40 - completed, batchesCancelled: 1, batchesCompleted: 0 });
    const out = await jsonl<OutputLine>(a, done.output_file_id!);
    expect(out.length).toBe(completed);
    for (const l of out.slice(0, 3)) {
      const audio = Buffer.from(await (await a.files.content(l.response.body.file_id)).arrayBuffer());
      expect(Math.abs((await decodedDuration(audio)) - l.response.body.duration_s)).toBeLessThan(0.1);
    }
    // No item of the batch is left on the queue, and none starts after the cancel settled.
    const lane = stack.app.speech.queue('espeak', 'batch');
    expect(await lane.getWaitingCount() + (await lane.getPrioritizedCount()) + (await lane.getActiveCount())).toBe(0);
    await new Promise((r) => setTimeout(r, 1000));
    expect((await a.batches.retrieve(batch.id)).request_counts).toEqual(done.request_counts);

    // Cancelling again changes nothing.
    expect((await a.batches.cancel(batch.id)).status).toBe('cancelled');

    const page1 = await a.batches.list({ limit: 1 });
    expect(page1.data.map((x) => x.id)).toEqual([batch.id]);
    expect(page1.has_more).toBe(true);
    const all: string[] = [];
    for await (const x of a.batches.list({ limit: 1 })) all.push(x.id);
    expect(all.length).toBeGreaterThanOrEqual(3);
    expect(all[0]).toBe(batch.id);
    expect([...all].sort().reverse()).toEqual(all);
  });

  it('an item that fails on the worker goes to the error file with its status and error body; the batch completes', async () => {
    const lines = [
      line('short-1', { input: 'Short and fine.' }),
      line('too-long', { input: 'This item is far longer than the audio limit allows, on purpose. '.repeat(12) }),
      line('short-2', { input: 'Also fine.', response_format: 'wav' }),
    ];
    const batch = await submit(a, lines);
    const done = await until(a, batch.id, (x) => x.status === 'completed');
    expect(done.request_counts).toEqual({ total: 3, completed: 2, failed: 1 });
    const out = await jsonl<OutputLine>(a, done.output_file_id!);
    expect(out.map((l) => l.custom_id).sort()).toEqual(['short-1', 'short-2']);
    const errors = await jsonl<{ custom_id: string; response: { status_code: number; request_id: string; body: { error: { code: string; type: string; param: string | null; message: string } } }; error: null }>(a, done.error_file_id!);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({
      custom_id: 'too-long', error: null,
      response: { status_code: 400, body: { error: { code: 'audio_too_long', type: 'invalid_request_error', param: 'input' } } },
    });
    expect(errors[0]!.response.request_id).toMatch(/^req_/);
    expect(errors[0]!.response.body.error.message).toContain('20 seconds');
  });
});
