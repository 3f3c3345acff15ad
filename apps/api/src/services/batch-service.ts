import { createInterface } from 'node:readline';
import type { Redis } from 'ioredis';
import { Queue, type JobsOptions } from 'bullmq';
import {
  BATCH_CONTROL_QUEUE, BATCH_ID_PATTERN, batchItemJobId, ChorusError, enqueueFinalize, JOB_CATALOG, JOB_NAMES,
  newBatchId, newFileId, newRequestId, parseOrThrow, PRIORITY, recordOutcome, remainingOutcomes, speechRequestSchema,
  speechSynthesisOptions, StorageKeys, transitionBatch, TtsJob, type BatchItemSink, type BatchStatus, type ItemOutcome,
  type ObjectStorage, type RedisKeys,
} from '@chorus/shared';
import type { SpeechService } from './speech-service.ts';

export const BATCH_ENDPOINT = '/v1/audio/speech';
/** Bad lines listed in `errors.data` (then one `too_many_errors` entry): a broken file cannot make a huge record. */
export const MAX_REPORTED_ERRORS = 1000;

/** One bad input line, as OpenAI reports it in `errors.data`. */
export interface LineError {
  code: string;
  message: string;
  param: string | null;
  line: number;
}

/** OpenAI's Batch object from the Redis hash. */
export function batchObject(h: Record<string, string>) {
  const num = (k: string) => (h[k] ? Number(h[k]) : null);
  const errors = h.errors ? (JSON.parse(h.errors) as LineError[]) : null;
  return {
    id: h.id!,
    object: 'batch' as const,
    endpoint: h.endpoint!,
    errors: errors ? { object: 'list' as const, data: errors } : null,
    input_file_id: h.input_file_id!,
    completion_window: h.completion_window!,
    status: h.status as BatchStatus,
    output_file_id: h.output_file_id || null,
    error_file_id: h.error_file_id || null,
    created_at: Number(h.created_at),
    in_progress_at: num('in_progress_at'),
    expires_at: num('expires_at'),
    finalizing_at: num('finalizing_at'),
    completed_at: num('completed_at'),
    failed_at: num('failed_at'),
    expired_at: num('expired_at'),
    cancelling_at: num('cancelling_at'),
    cancelled_at: num('cancelled_at'),
    request_counts: { total: Number(h.total ?? 0), completed: Number(h.completed ?? 0), failed: Number(h.failed ?? 0) },
    metadata: h.metadata ? (JSON.parse(h.metadata) as Record<string, string>) : null,
  };
}
export type BatchObject = ReturnType<typeof batchObject>;

interface Item {
  engine: string;
  job: TtsJob;
  customId: string;
  line: number;
}

/**
 * Batches (SPEC §2 Batch): validates the input file line by line (streamed from storage), records the batch in
 * Redis and enqueues one job per item on its engine's batch lane. Items then live on their own: workers write the
 * audio to storage, record outcomes and finalize (apps/worker/src/batch). Nothing here waits for them.
 */
export class BatchService {
  readonly #redis: Redis;
  readonly #keys: RedisKeys;
  readonly #storage: ObjectStorage;
  readonly #speech: SpeechService;
  readonly #retentionS: number;
  readonly #maxInputChars: number;
  readonly control: Queue;
  readonly #onCancelled: () => void;

  constructor(opts: {
    redis: Redis; keys: RedisKeys; storage: ObjectStorage; speech: SpeechService; retentionS: number; maxInputChars: number;
    /** An item removed from its queue by a cancel (metrics). */
    onCancelled?: () => void;
  }) {
    this.#onCancelled = opts.onCancelled ?? (() => {});
    this.#redis = opts.redis;
    this.#keys = opts.keys;
    this.#storage = opts.storage;
    this.#speech = opts.speech;
    this.#retentionS = opts.retentionS;
    this.#maxInputChars = opts.maxInputChars;
    this.control = new Queue(BATCH_CONTROL_QUEUE, { connection: opts.redis, prefix: opts.keys.bullPrefix() });
    this.control.on('error', () => {}); // surfaces on the request that hits it
  }

  /**
   * Reads the input file line by line from storage, handing each valid item to `onItem` and collecting bad lines
   * (the first MAX_REPORTED_ERRORS, then one summary entry). A 5xx while routing (Redis down) is thrown: it says
   * nothing about the file.
   */
  async #scan(fileId: string, owner: string | undefined, onItem: (item: Item) => Promise<void> | void) {
    const object = await this.#storage.get(StorageKeys.file(fileId));
    if (!object) throw new ChorusError('TTS_ERR_NOT_FOUND', `No such File object: ${fileId}`, { param: 'input_file_id' });
    const schema = speechRequestSchema(this.#maxInputChars);
    const errors: LineError[] = [];
    let badLines = 0;
    let items = 0;
    const engines = new Set<string>();
    const seen = new Set<string>();
    let line = 0;
    const lines = createInterface({ input: object.body, crlfDelay: Infinity });
    try {
      for await (const text of lines) {
        line += 1;
        if (text.trim() === '') continue;
        const bad = (code: string, message: string, param: string | null = null) => {
          badLines += 1;
          if (errors.length < MAX_REPORTED_ERRORS) errors.push({ code, message, param, line });
        };
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch {
          bad('invalid_json', 'This line is not valid JSON.');
          continue;
        }
        if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
          bad('invalid_request', 'Each line must be a JSON object {custom_id, method, url, body}.');
          continue;
        }
        const l = parsed as Record<string, unknown>;
        if (typeof l.custom_id !== 'string' || l.custom_id.length === 0 || l.custom_id.length > 512) {
          bad('missing_required_parameter', 'custom_id must be a string of 1 to 512 characters.', 'custom_id');
          continue;
        }
        if (seen.has(l.custom_id)) {
          bad('duplicate_custom_id', `The custom_id '${l.custom_id.slice(0, 100)}' appears on an earlier line; each must be unique.`, 'custom_id');
          continue;
        }
        seen.add(l.custom_id);
        if (l.method !== 'POST') {
          bad('invalid_value', "method must be 'POST'.", 'method');
          continue;
        }
        if (l.url !== BATCH_ENDPOINT) {
          bad('invalid_value', `url must be '${BATCH_ENDPOINT}', the batch's endpoint.`, 'url');
          continue;
        }
        let item: Item;
        try {
          // The same schema and routing as POST /v1/audio/speech.
          const body = parseOrThrow(schema, l.body, 'body.');
          const { job } = await this.#speech.buildJob({
            model: body.model, text: body.input, voice: typeof body.voice === 'string' ? body.voice : body.voice.id,
            format: body.response_format, options: speechSynthesisOptions(body), preset: body.preset, route: 'batch',
            requestId: newRequestId(), priority: 'batch', owner,
          });
          item = { engine: job.engine, job, customId: l.custom_id, line };
        } catch (err) {
          if (!(err instanceof ChorusError) || err.status >= 500) throw err;
          bad(err.code, err.message, paramUnder(err.param));
          continue;
        }
        items += 1;
        engines.add(item.engine);
        await onItem(item);
      }
    } finally {
      object.body.destroy();
    }
    if (badLines > errors.length) {
      errors.push({
        code: 'too_many_errors', param: null, line: 0,
        message: `${badLines - errors.length} more lines have errors; the first ${MAX_REPORTED_ERRORS} are listed.`,
      });
    }
    if (items === 0 && errors.length === 0) {
      errors.push({ code: 'empty_file', message: 'The input file has no requests.', param: null, line: 1 });
    }
    return { errors, items, engines };
  }

  /**
   * Two passes over the input file, so no batch is held in memory: the first validates every line (and counts
   * the items), the second, only for a valid file, enqueues the items 500 at a time.
   */
  async create(opts: {
    inputFileId: string; completionWindow: string; metadata: Record<string, string> | null; owner: string | undefined;
  }): Promise<BatchObject> {
    const { items, errors, engines } = await this.#scan(opts.inputFileId, opts.owner, () => {});
    const id = newBatchId();
    const now = Math.floor(Date.now() / 1000);
    const key = this.#keys.batch(id);
    const record: Record<string, string | number> = {
      id, owner: opts.owner ?? '', endpoint: BATCH_ENDPOINT, input_file_id: opts.inputFileId,
      completion_window: opts.completionWindow, created_at: now, expires_at: now + 24 * 3600,
      metadata: opts.metadata ? JSON.stringify(opts.metadata) : '', retention_s: this.#retentionS,
      total: errors.length > 0 ? 0 : items, completed: 0, failed: 0, cancelled: 0, engines: JSON.stringify([...engines]),
    };
    if (errors.length > 0) Object.assign(record, { status: 'failed', failed_at: now, errors: JSON.stringify(errors) });
    else Object.assign(record, { status: 'in_progress', in_progress_at: now });
    const index = this.#keys.ownerBatches(opts.owner);
    // The whole record before any item is queued: a fast worker finds `total` in place.
    await this.#redis.multi().hset(key, record).expire(key, this.#retentionS).zadd(index, 0, id).expire(index, this.#retentionS).exec();
    if (errors.length === 0) {
      try {
        const enqueued = await this.#enqueue(id, opts.inputFileId, opts.owner);
        if (enqueued !== items) throw new Error(`the input file changed between passes (${items} items, then ${enqueued})`);
      } catch (err) {
        await transitionBatch(this.#redis, this.#keys, id, ['in_progress'], {
          status: 'failed', failed_at: Math.floor(Date.now() / 1000),
          errors: JSON.stringify([{ code: 'enqueue_failed', message: 'The batch could not be queued.', param: null, line: 0 }]),
        }).catch(() => {});
        throw err;
      }
    }
    return batchObject(await this.#redis.hgetall(key));
  }

  /** The second pass: every item as a job on its engine's batch lane; returns how many. */
  async #enqueue(batchId: string, fileId: string, owner: string | undefined): Promise<number> {
    const opts: JobsOptions = { ...JOB_CATALOG[JOB_NAMES.synthesize].options, priority: PRIORITY.batch };
    let pending: { engine: string; name: string; data: TtsJob; opts: JobsOptions }[] = [];
    let index = 0;
    const flush = async () => {
      const byEngine = new Map<string, typeof pending>();
      for (const j of pending) byEngine.set(j.engine, [...(byEngine.get(j.engine) ?? []), j]);
      pending = [];
      for (const [engine, jobs] of byEngine) await this.#speech.queue(engine, 'batch').addBulk(jobs);
    };
    const { errors } = await this.#scan(fileId, owner, async (item) => {
      const sink: BatchItemSink = {
        type: 'storage', batchId, customId: item.customId, line: item.line, fileId: newFileId(),
        retentionS: this.#retentionS, ...(owner ? { owner } : {}),
      };
      pending.push({
        engine: item.engine, name: JOB_NAMES.synthesize, data: { ...item.job, sink, enqueuedAt: Date.now() },
        opts: { ...opts, jobId: batchItemJobId(batchId, index++) },
      });
      if (pending.length >= 500) await flush();
    });
    await flush();
    if (errors.length > 0) throw new Error(`the input file changed between passes (${errors.length} errors)`);
    return index;
  }

  /** The batch, or undefined (unknown id, expired). */
  async get(id: string): Promise<Record<string, string> | undefined> {
    if (!BATCH_ID_PATTERN.test(id)) return undefined;
    const h = await this.#redis.hgetall(this.#keys.batch(id));
    return h.id ? h : undefined;
  }

  /** Newest first, after the cursor; entries whose batch expired are dropped on the way. */
  async list(owner: string | undefined, after: string | undefined, limit: number) {
    const index = this.#keys.ownerBatches(owner);
    let from = after ? `(${after}` : '+';
    const data: BatchObject[] = [];
    for (;;) {
      const ids = await this.#redis.zrange(index, from, '-', 'BYLEX', 'REV', 'LIMIT', 0, limit + 1);
      if (ids.length === 0) return { data, hasMore: false };
      const pipe = this.#redis.pipeline();
      for (const id of ids) pipe.hgetall(this.#keys.batch(id));
      const rows = (await pipe.exec()) ?? [];
      const gone: string[] = [];
      for (let i = 0; i < ids.length; i++) {
        const h = rows[i]?.[1] as Record<string, string> | undefined;
        if (!h?.id) {
          gone.push(ids[i]!);
          continue;
        }
        if (data.length === limit) return { data, hasMore: true };
        data.push(batchObject(h));
      }
      if (gone.length > 0) await this.#redis.zrem(index, ...gone);
      if (ids.length < limit + 1) return { data, hasMore: false };
      from = `(${ids[ids.length - 1]}`;
    }
  }

  /**
   * Cancels a batch: `cancelling` at once; waiting items are removed (each recorded as cancelled), active ones are
   * flagged and aborted by their worker (which records them). The last outcome enqueues the finalizer, which sets
   * `cancelled` and writes the output file for what completed.
   */
  async cancel(h: Record<string, string>): Promise<void> {
    const id = h.id!;
    const now = Math.floor(Date.now() / 1000);
    if (!(await transitionBatch(this.#redis, this.#keys, id, ['validating', 'in_progress'], { status: 'cancelling', cancelling_at: now }))) return;
    const total = Number(h.total);
    const engines = JSON.parse(h.engines || '[]') as string[];
    const jobIds = Array.from({ length: total }, (_, i) => batchItemJobId(id, i));
    const flags = this.#redis.multi();
    for (const jobId of jobIds) flags.set(this.#keys.cancelFlag(jobId), '1', 'EX', 3600).publish(this.#keys.cancelChannel(), jobId);
    await flags.exec();
    for (let at = 0; at < jobIds.length; at += 50) {
      await Promise.all(jobIds.slice(at, at + 50).map(async (jobId) => {
        for (const engine of engines) {
          const job = await this.#speech.queue(engine, 'batch').getJob(jobId);
          if (!job) continue;
          const data = TtsJob.safeParse(job.data);
          if (!data.success || !data.data.sink) continue;
          try {
            await job.remove(); // throws while a worker holds it: that worker aborts it on the cancel message
          } catch {
            continue;
          }
          const outcome: ItemOutcome = { status: 'cancelled', request_id: data.data.requestId, line: data.data.sink.line };
          if ((await recordOutcome(this.#redis, this.#keys, id, data.data.sink.customId, outcome)).recorded) this.#onCancelled();
        }
      }));
    }
    if ((await remainingOutcomes(this.#redis, this.#keys, id)) === 0) await enqueueFinalize(this.control, id);
  }

  /**
   * Completed items whose audio file still exists, in input order, for the archive (metadata only: the audio is
   * streamed one file at a time).
   */
  async completedItems(id: string): Promise<{ customId: string; fileId: string; contentType: string }[]> {
    const out: { customId: string; fileId: string; contentType: string; line: number }[] = [];
    let cursor = '0';
    do {
      const [next, flat] = await this.#redis.hscan(this.#keys.batchOutcomes(id), cursor, 'COUNT', 1000);
      cursor = next;
      for (let i = 0; i < flat.length; i += 2) {
        const o = JSON.parse(flat[i + 1]!) as ItemOutcome;
        if (o.status === 'completed') out.push({ customId: flat[i]!, fileId: o.file_id, contentType: o.content_type, line: o.line });
      }
    } while (cursor !== '0');
    // Audio files deleted by their owner (DELETE /v1/files) or expired are left out, not a zip cut short.
    const alive: typeof out = [];
    for (let at = 0; at < out.length; at += 1000) {
      const chunk = out.slice(at, at + 1000);
      const pipe = this.#redis.pipeline();
      for (const o of chunk) pipe.exists(this.#keys.file(o.fileId));
      const res = (await pipe.exec()) ?? [];
      chunk.forEach((o, i) => res[i]?.[1] === 1 && alive.push(o));
    }
    return alive.sort((a, b) => a.line - b.line);
  }

  async close(): Promise<void> {
    await this.control.close();
  }
}

/** A body field's param as the line reports it (`body.voice`). */
function paramUnder(param: string | null): string | null {
  if (param === null) return 'body';
  return param.startsWith('body') ? param : `body.${param}`;
}
