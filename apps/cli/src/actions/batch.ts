import { createReadStream, type ReadStream } from 'node:fs';
import { mkdir, open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { createInterface } from 'node:readline';
import type OpenAI from 'openai';
import type { Batch } from 'openai/resources/batches';
import { FORMAT_INFO } from '@chorus/shared/audio-formats';
import { apiErrorLine, createApiClient } from '../api-client.ts';
import type { ApiOpts } from '../api-options.ts';
import type { CommonOpts } from '../commands/batch.ts';
import { CliError } from '../errors.ts';
import { formatDuration } from '../format.ts';
import { createItemProgress, describeItems } from '../item-progress.ts';
import type { ProgressMode } from '../progress.ts';
import { toFile } from './speak.ts';

/*
 * `chorus batch` (its flags: commands/batch.ts): OpenAI's Batch API with `/v1/audio/speech` as the endpoint (README
 * "Batches"), through the SDK. stdout carries data (the new batch's id, `--json`, list lines); progress, summaries
 * and errors go to stderr.
 */

const ENDPOINT = '/v1/audio/speech' as never; // speech is Chorus's extension: the SDK's type lists OpenAI's only

/** Exit statuses of `submit --wait` (README "Command line"); 1 stays "the command itself failed". */
export const EXIT = { itemsFailed: 3, batchFailed: 4, cancelled: 5, expired: 6 } as const;

const TERMINAL = new Set(['completed', 'failed', 'expired', 'cancelled']);
/** Item errors printed after a wait; the rest are in the error file. */
const MAX_ERROR_LINES = 20;
/** Audio files fetched at once by `download`. */
const DOWNLOAD_CONCURRENCY = 4;

/** Runs an SDK call; its errors become one CliError line naming the base URL. */
async function api<T>(baseUrl: string, call: Promise<T>): Promise<T> {
  try {
    return await call;
  } catch (err) {
    const line = apiErrorLine(err, baseUrl);
    throw line === undefined ? err : new CliError(line);
  }
}

const counts = (b: Batch) => ({ total: b.request_counts?.total ?? 0, completed: b.request_counts?.completed ?? 0, failed: b.request_counts?.failed ?? 0 });

function validationLines(b: Batch): string[] {
  return (b.errors?.data ?? []).map((e) => `${e.line ? `line ${e.line}` : 'file'}: ${e.code ?? 'error'}: ${e.message ?? ''}`);
}

export async function submit(
  file: string,
  opts: CommonOpts & { wait?: boolean; output?: string; metadata?: Record<string, string>; poll: number; completionWindow: string },
) {
  const info = await stat(file).catch((e: NodeJS.ErrnoException) => {
    throw new CliError(`cannot read ${file}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`);
  });
  if (!info.isFile()) throw new CliError(`${file} is not a file`);
  const { client, baseUrl } = createApiClient(opts);
  // A stream, not the file's bytes: an input file can be large (MAX_BATCH_FILE_BYTES).
  const uploaded = await api(baseUrl, client.files.create({ file: createReadStream(file) as ReadStream, purpose: 'batch' }));
  let b = await api(
    baseUrl,
    client.batches.create({
      input_file_id: uploaded.id, endpoint: ENDPOINT, completion_window: opts.completionWindow as '24h',
      ...(opts.metadata ? { metadata: opts.metadata } : {}),
    }),
  );
  process.stdout.write(`${b.id}\n`);
  // Validation runs in the background; its verdict is worth waiting for even without --wait (bad lines, exit 4).
  while (b.status === 'validating') {
    await new Promise((r) => setTimeout(r, Math.min(opts.poll, 0.5) * 1000));
    b = await api(baseUrl, client.batches.retrieve(b.id));
  }
  if (opts.wait || opts.output) b = await follow(client, baseUrl, b, opts);
  else if (!TERMINAL.has(b.status)) return;
  await conclude(client, baseUrl, b, opts);
}

/** Polls until the batch ends, drawing its progress. */
async function follow(client: OpenAI, baseUrl: string, first: Batch, opts: CommonOpts & { poll: number }): Promise<Batch> {
  const t0 = performance.now();
  const bar = createItemProgress(process.stderr, opts.progress, first.id);
  let b = first;
  try {
    for (;;) {
      bar.update(counts(b), b.status);
      if (TERMINAL.has(b.status)) break;
      await new Promise((r) => setTimeout(r, opts.poll * 1000));
      b = await api(baseUrl, client.batches.retrieve(b.id));
    }
  } finally {
    bar.stop();
  }
  const c = counts(b);
  const s = (performance.now() - t0) / 1000;
  process.stderr.write(`${b.id} ${b.status}: ${c.completed} completed, ${c.failed} failed of ${c.total} in ${formatDuration(s)}\n`);
  return b;
}

/** The end of `submit`: errors printed, results downloaded, and the exit status the batch's outcome calls for. */
async function conclude(client: OpenAI, baseUrl: string, b: Batch, opts: CommonOpts & { output?: string }) {
  if (b.status === 'failed') {
    for (const l of validationLines(b)) process.stderr.write(`${l}\n`);
    throw new CliError(`${b.id} failed${b.errors?.data?.length ? ' validation: nothing was run' : ''}`, EXIT.batchFailed);
  }
  if (opts.output) await fetchResults(client, baseUrl, b, opts.output, opts.progress);
  if (b.error_file_id) await printItemErrors(client, baseUrl, b.error_file_id);
  const c = counts(b);
  if (b.status === 'cancelled') throw new CliError(`${b.id} was cancelled (${c.completed} of ${c.total} items completed)`, EXIT.cancelled);
  if (b.status === 'expired') throw new CliError(`${b.id} expired (${c.completed} of ${c.total} items completed)`, EXIT.expired);
  if (c.failed > 0) throw new CliError(`${b.id}: ${c.failed} of ${c.total} items failed`, EXIT.itemsFailed);
}

interface ErrorLine {
  custom_id?: string;
  response?: { status_code?: number; body?: { error?: { code?: string | null; message?: string } } } | null;
  /** Set instead of a response for an item that never ran (`batch_expired`). */
  error?: { code?: string | null; message?: string } | null;
}

async function printItemErrors(client: OpenAI, baseUrl: string, fileId: string) {
  const text = await (await api(baseUrl, client.files.content(fileId))).text();
  const lines = text.split('\n').filter(Boolean);
  for (const raw of lines.slice(0, MAX_ERROR_LINES)) {
    let l: ErrorLine;
    try {
      l = JSON.parse(raw) as ErrorLine;
    } catch {
      continue;
    }
    const e = l.response?.body?.error ?? l.error;
    process.stderr.write(`${l.custom_id}: ${e?.code ?? l.response?.status_code ?? 'error'}: ${e?.message ?? ''}\n`);
  }
  if (lines.length > MAX_ERROR_LINES) process.stderr.write(`… and ${lines.length - MAX_ERROR_LINES} more in the error file ${fileId}\n`);
}

export async function status(id: string, opts: ApiOpts & { json?: boolean }) {
  const { client, baseUrl } = createApiClient(opts);
  const b = await api(baseUrl, client.batches.retrieve(id));
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(b, null, 2)}\n`);
    return;
  }
  process.stdout.write(`${b.id} ${describeItems(counts(b), b.status)}${files(b)}\n`);
  for (const l of validationLines(b)) process.stderr.write(`${l}\n`);
}

const files = (b: Batch) => `${b.output_file_id ? ` output ${b.output_file_id}` : ''}${b.error_file_id ? ` errors ${b.error_file_id}` : ''}`;

export async function list(opts: ApiOpts & { limit: number; after?: string; json?: boolean }) {
  const { client, baseUrl } = createApiClient(opts);
  const page = await api(baseUrl, client.batches.list({ limit: opts.limit, ...(opts.after ? { after: opts.after } : {}) }));
  if (opts.json) {
    const { data, has_more } = page;
    const body = { object: 'list', data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more };
    process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
    return;
  }
  for (const b of page.data) {
    const c = counts(b);
    const created = new Date(b.created_at * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
    process.stdout.write(`${b.id}\t${b.status}\t${c.completed + c.failed}/${c.total}\t${c.failed} failed\t${created}\n`);
  }
  if (page.has_more) process.stderr.write(`more: chorus batch list --after ${page.data.at(-1)!.id}\n`);
}

export async function cancel(id: string, opts: ApiOpts) {
  const { client, baseUrl } = createApiClient(opts);
  const b = await api(baseUrl, client.batches.cancel(id));
  process.stdout.write(`${b.id} ${b.status}\n`);
}

export async function download(id: string, opts: CommonOpts & { output: string; archive?: boolean }) {
  const { client, baseUrl } = createApiClient(opts);
  if (opts.archive) {
    await mkdir(opts.output, { recursive: true });
    const res = await api(
      baseUrl,
      client.get(`/batches/${encodeURIComponent(id)}/archive`, { headers: { Accept: 'application/zip' }, __binaryResponse: true }) as Promise<Response>,
    );
    const file = join(opts.output, `${safeName(id)}.zip`);
    await save(res, file);
    process.stderr.write(`wrote ${file}\n`);
    return;
  }
  const b = await api(baseUrl, client.batches.retrieve(id));
  await fetchResults(client, baseUrl, b, opts.output, opts.progress);
}

/** Writes a response body to `file` through `<file>.part` (speak's toFile). */
async function save(res: Response, file: string) {
  if (!res.body) throw new CliError(`${file}: the API answered ${res.status} with no body`);
  try {
    await toFile(Readable.fromWeb(res.body as WebReadableStream<Uint8Array>), file);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.syscall) throw new CliError(`cannot write ${file}: ${e.message}`);
    throw new CliError(`${file}: the download broke off (${e.message === 'terminated' ? 'the server closed the connection' : e.message})`);
  }
}

interface OutputLine {
  custom_id?: unknown;
  response?: { body?: { file_id?: unknown; content_type?: unknown } };
}

const EXT_BY_TYPE = new Map(Object.values(FORMAT_INFO).map((f) => [f.contentType, f.extension]));

/**
 * A custom_id as a file name in DIR: the archive's rule (characters outside `A-Za-z0-9._ -` become `_`, no leading
 * dot or space, so never `..`, a hidden file or a path), unique within DIR even on a case-insensitive file system.
 */
export function fileNamer(reserved: string[] = []) {
  const used = new Set(reserved.map((n) => n.toLowerCase()));
  return (customId: string, ext: string) => {
    const base = safeName(customId);
    let name = `${base}.${ext}`;
    for (let n = 2; used.has(name.toLowerCase()); n++) name = `${base}~${n}.${ext}`;
    used.add(name.toLowerCase());
    return name;
  };
}

function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9._ -]/g, '_').replace(/^[.\s]+/, '_').slice(0, 200) || '_';
}

/** output.jsonl, errors.jsonl and every completed item's audio into `dir`. */
async function fetchResults(client: OpenAI, baseUrl: string, b: Batch, dir: string, mode: ProgressMode) {
  if (!b.output_file_id && !b.error_file_id) {
    if (!TERMINAL.has(b.status)) throw new CliError(`${b.id} is ${b.status}: no results yet (follow it with chorus batch status ${b.id})`);
    process.stderr.write(`${b.id} ${b.status}: no results to download\n`);
    return;
  }
  await mkdir(dir, { recursive: true });
  if (b.error_file_id) await save(await api(baseUrl, client.files.content(b.error_file_id)), join(dir, 'errors.jsonl'));
  if (!b.output_file_id) return;
  const outputFile = join(dir, 'output.jsonl');
  await save(await api(baseUrl, client.files.content(b.output_file_id)), outputFile);

  // Read back from disk line by line: a large batch's output never sits in memory whole.
  const name = fileNamer(['output.jsonl', 'errors.jsonl']);
  const jobs: { fileId: string; file: string }[] = [];
  const fh = await open(outputFile);
  let n = 0;
  for await (const raw of createInterface({ input: fh.createReadStream(), crlfDelay: Infinity })) {
    n++;
    if (!raw.trim()) continue;
    const l = JSON.parse(raw) as OutputLine;
    const fileId = l.response?.body?.file_id;
    if (typeof l.custom_id !== 'string' || typeof fileId !== 'string') throw new CliError(`${outputFile} line ${n}: no custom_id or file_id`);
    const type = typeof l.response?.body?.content_type === 'string' ? l.response.body.content_type : '';
    jobs.push({ fileId, file: join(dir, name(l.custom_id, EXT_BY_TYPE.get(type.split(';')[0]!.trim()) ?? 'bin')) });
  }
  const bar = createItemProgress(process.stderr, mode, `${b.id} download`);
  let done = 0;
  const next = jobs[Symbol.iterator]();
  bar.update({ total: jobs.length, completed: 0, failed: 0 }, 'downloading'); // the rate counts from here
  let failure: unknown;
  const worker = async () => {
    // After a failure no new file starts; those in flight finish, so the error is the last line printed.
    for (let j = next.next(); !j.done && failure === undefined; j = next.next()) {
      await save(await api(baseUrl, client.files.content(j.value.fileId)), j.value.file);
      bar.update({ total: jobs.length, completed: ++done, failed: 0 }, 'downloading');
    }
  };
  await Promise.all(Array.from({ length: Math.min(DOWNLOAD_CONCURRENCY, jobs.length) }, () => worker().catch((e) => void (failure ??= e))));
  bar.stop();
  if (failure !== undefined) throw failure;
  process.stderr.write(`wrote ${jobs.length} audio files, output.jsonl${b.error_file_id ? ' and errors.jsonl' : ''} to ${dir}\n`);
}
