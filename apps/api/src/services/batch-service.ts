import { createInterface } from 'node:readline';
import type { RedisClient } from '@chorus/shared';
import type { Logger } from 'pino';
import { Worker, type Job, type JobsOptions, type Queue } from 'bullmq';
import {
  BATCH_CONTROL_QUEUE, BATCH_DONE, BATCH_ID_PATTERN, BATCH_LIFECYCLE_QUEUE, batchItemJobId, ChorusError, enqueueFinalize,
  EXPIRE_JOB, JOB_CATALOG, JOB_NAMES, newBatchId, newFileId, newRequestId, parseOrThrow, PRIORITY, recordOutcome,
  remainingOutcomes, speechRequestSchema, speechSynthesisOptions, StorageKeys, transitionBatch, TtsJob, VALIDATE_JOB,
  type BatchItemSink, type BatchStatus, type ItemOutcome, type ObjectStorage, type RedisKeys,
} from '@chorus/shared';
import type { SpeechService } from './speech-service.ts';
import { ProducerQueues } from './producer-queues.ts';

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

interface ScanResult {
  errors: LineError[];
  items: number;
  engines: Set<string>;
}

/** Lifecycle jobs: retried through Redis blips; the last failure of a `validate` fails its batch (see #onFailed). */
const LIFECYCLE_JOB_OPTIONS: JobsOptions = {
  attempts: 8, backoff: { type: 'exponential', delay: 1000 }, removeOnComplete: true, removeOnFail: { age: 7 * 86_400 },
};

const nowS = () => Math.floor(Date.now() / 1000);

/**
 * Batches (SPEC §2 Batch). POST /v1/batches records the batch as `validating` and queues a `validate` job on the
 * lifecycle queue, which the API replicas process: it reads the input file line by line (streamed from storage),
 * then queues one job per item on its engine's batch lane. An API that dies mid-way loses nothing: BullMQ hands the
 * stalled job to another replica (or to this one restarted), and every step is idempotent (item job ids are
 * derived from the batch id and line, outcomes are recorded once). Items then live on their own: workers write the
 * audio to storage, record outcomes and finalize (apps/worker/src/batch). A delayed `expire` job ends a batch still
 * open when its completion window closes.
 */
export class BatchService {
  readonly #redis: RedisClient;
  readonly #keys: RedisKeys;
  readonly #storage: ObjectStorage;
  readonly #speech: SpeechService;
  readonly #retentionS: number;
  readonly #maxInputChars: number;
  readonly #maxOpenBatches: number;
  readonly #maxItems: number;
  readonly #lifecycleLockMs: number;
  readonly #queues: ProducerQueues;
  #lifecycleWorker: Worker | undefined;
  readonly #onItemEnded: (outcome: 'cancelled' | 'expired') => void;

  constructor(opts: {
    redis: RedisClient; keys: RedisKeys; storage: ObjectStorage; speech: SpeechService; retentionS: number; maxInputChars: number;
    maxOpenBatches?: number; maxItems?: number;
    /** BATCH_LIFECYCLE_LOCK_MS: the lifecycle jobs' lock; their stall check runs every half of it. */
    lifecycleLockMs?: number;
    /** An item removed from its queue by a cancel or by expiry (metrics). */
    onItemEnded?: (outcome: 'cancelled' | 'expired') => void;
  }) {
    this.#onItemEnded = opts.onItemEnded ?? (() => {});
    this.#redis = opts.redis;
    this.#keys = opts.keys;
    this.#storage = opts.storage;
    this.#speech = opts.speech;
    this.#retentionS = opts.retentionS;
    this.#maxInputChars = opts.maxInputChars;
    this.#maxOpenBatches = opts.maxOpenBatches ?? 100;
    this.#maxItems = opts.maxItems ?? 50_000;
    this.#lifecycleLockMs = opts.lifecycleLockMs ?? 20_000;
    this.#queues = new ProducerQueues(opts.redis, opts.keys);
  }

  /** The batch finalizers' queue (workers run them). */
  get control(): Queue {
    return this.#queues.get(BATCH_CONTROL_QUEUE);
  }

  /** Validation and expiry jobs (API replicas run them). */
  get lifecycle(): Queue {
    return this.#queues.get(BATCH_LIFECYCLE_QUEUE);
  }

  /**
   * Starts processing lifecycle jobs. `connection` must allow blocking commands (maxRetriesPerRequest null): it is
   * BullMQ's worker connection.
   */
  startLifecycle(connection: RedisClient, log: Logger): void {
    this.#lifecycleWorker = new Worker(
      BATCH_LIFECYCLE_QUEUE,
      async (job: Job<{ batchId: string }>) => {
        if (job.name === VALIDATE_JOB) await this.validate(job.data.batchId);
        else if (job.name === EXPIRE_JOB) await this.expire(job.data.batchId);
        else throw new Error(`unknown lifecycle job ${job.name}`);
      },
      {
        connection, prefix: this.#keys.bullPrefix(), concurrency: 2,
        // An API SIGKILLed mid-validation: another replica (or this one restarted) takes the job over at the first
        // stall check after its lock expired (BATCH_LIFECYCLE_LOCK_MS, default 20 s, checks every 10 s: within ~30 s).
        lockDuration: this.#lifecycleLockMs, stalledInterval: Math.round(this.#lifecycleLockMs / 2), maxStalledCount: 5,
      },
    );
    this.#lifecycleWorker.on('error', (err) => log.warn({ err: err.message }, 'batch lifecycle worker error'));
    this.#lifecycleWorker.on('failed', (job, err) => {
      if (!job) return;
      log.warn({ batchId: job.data.batchId, job: job.name, attempt: job.attemptsMade, err: err.message }, 'batch lifecycle job failed');
      if (job.name === VALIDATE_JOB && job.attemptsMade >= (job.opts.attempts ?? 1)) {
        transitionBatch(this.#redis, this.#keys, job.data.batchId, ['validating'], {
          status: 'failed', failed_at: nowS(),
          errors: JSON.stringify([{ code: 'validation_failed', message: 'The input file could not be read; try again.', param: null, line: 0 }]),
        }).catch(() => {});
      }
    });
  }

  /**
   * Reads the input file line by line from storage, handing each valid item to `onItem` and collecting bad lines
   * (the first MAX_REPORTED_ERRORS, then one summary entry). A 5xx while routing (Redis down) is thrown: it says
   * nothing about the file.
   */
  async #scan(fileId: string, owner: string | undefined, onItem: (item: Item) => Promise<void> | void): Promise<ScanResult> {
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
        if (items === this.#maxItems) {
          // Counting on would only report the same thing again; the file is refused as a whole.
          bad('too_many_requests', `A batch holds at most ${this.#maxItems} requests (MAX_BATCH_ITEMS); split the file.`);
          break;
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
   * Records a batch as `validating` and queues its validation and its expiry; answers at once (a large file is
   * validated in the background, as OpenAI's). Refused when the key has MAX_OPEN_BATCHES open already.
   */
  async create(opts: {
    inputFileId: string; completionWindow: string; windowS: number; metadata: Record<string, string> | null;
    owner: string | undefined;
  }): Promise<BatchObject> {
    const open = await this.#openBatches(opts.owner);
    if (open >= this.#maxOpenBatches) {
      throw new ChorusError(
        'TTS_ERR_TOO_MANY_BATCHES',
        `This key has ${open} open batches, the most allowed (MAX_OPEN_BATCHES); wait for one to end or cancel one.`,
        { retryAfterS: 60 },
      );
    }
    const id = newBatchId();
    const now = nowS();
    const key = this.#keys.batch(id);
    const record: Record<string, string | number> = {
      id, owner: opts.owner ?? '', endpoint: BATCH_ENDPOINT, input_file_id: opts.inputFileId, status: 'validating',
      completion_window: opts.completionWindow, created_at: now, expires_at: now + opts.windowS,
      metadata: opts.metadata ? JSON.stringify(opts.metadata) : '', retention_s: this.#retentionS,
      total: 0, completed: 0, failed: 0, cancelled: 0, engines: '[]',
    };
    const index = this.#keys.ownerBatches(opts.owner);
    const openSet = this.#keys.ownerOpenBatches(opts.owner);
    // The indexes first, then the batch (three Cluster slots: no one transaction). An index entry whose batch is
    // missing is pruned by list() and #openBatches().
    await Promise.all([
      this.#redis.multi().zadd(index, 0, id).expire(index, this.#retentionS).exec(),
      this.#redis.multi().sadd(openSet, id).expire(openSet, this.#retentionS).exec(),
    ]);
    await this.#redis.multi().hset(key, record).expire(key, this.#retentionS).exec();
    try {
      await this.lifecycle.add(VALIDATE_JOB, { batchId: id }, { ...LIFECYCLE_JOB_OPTIONS, jobId: `validate-${id}` });
      await this.lifecycle.add(EXPIRE_JOB, { batchId: id }, {
        ...LIFECYCLE_JOB_OPTIONS, jobId: `expire-${id}`, delay: opts.windowS * 1000,
      });
    } catch (err) {
      await transitionBatch(this.#redis, this.#keys, id, ['validating'], {
        status: 'failed', failed_at: nowS(),
        errors: JSON.stringify([{ code: 'enqueue_failed', message: 'The batch could not be queued.', param: null, line: 0 }]),
      }).catch(() => {});
      throw err;
    }
    return batchObject(await this.#redis.hgetall(key));
  }

  /**
   * The owner's batches that have not ended. Pruned only when the count reaches the limit, so the set stays about
   * MAX_OPEN_BATCHES long and creating a batch costs one SCARD. Two creates racing at the limit may both pass.
   */
  async #openBatches(owner: string | undefined): Promise<number> {
    const openSet = this.#keys.ownerOpenBatches(owner);
    if ((await this.#redis.scard(openSet)) < this.#maxOpenBatches) return 0;
    const ids = await this.#redis.smembers(openSet);
    // One command per batch (each has its own Cluster slot); ioredis sends them back to back.
    const rows = await Promise.all(ids.map((id) => this.#redis.hget(this.#keys.batch(id), 'status')));
    const ended = ids.filter((_, i) => {
      const status = rows[i] as BatchStatus | null | undefined;
      return !status || BATCH_DONE.has(status);
    });
    if (ended.length > 0) await this.#redis.srem(openSet, ...ended);
    return ids.length - ended.length;
  }

  /**
   * The `validate` job: first pass over the file (every line checked, items counted); a bad file fails the batch
   * with every bad line, a good one goes `in_progress` with its total; then the second pass queues the items. Run
   * again after a crash, it picks up where the batch is: validation redone if still `validating`, the items queued
   * again (BullMQ ignores a job id it holds; items with an outcome are skipped) until `enqueued` is set.
   */
  async validate(batchId: string): Promise<void> {
    let h = await this.#redis.hgetall(this.#keys.batch(batchId));
    if (!h.id) return; // gone (retention)
    const owner = h.owner || undefined;
    if (h.status === 'validating') {
      let scanned: ScanResult;
      try {
        scanned = await this.#scan(h.input_file_id!, owner, () => {});
      } catch (err) {
        if (!(err instanceof ChorusError) || err.status !== 404) throw err;
        scanned = {
          items: 0, engines: new Set(),
          errors: [{ code: 'not_found', message: `The input file ${h.input_file_id} was deleted before it was read.`, param: 'input_file_id', line: 0 }],
        };
      }
      if (scanned.errors.length > 0) {
        await transitionBatch(this.#redis, this.#keys, batchId, ['validating'], {
          status: 'failed', failed_at: nowS(), errors: JSON.stringify(scanned.errors),
        });
      } else {
        await transitionBatch(this.#redis, this.#keys, batchId, ['validating'], {
          status: 'in_progress', in_progress_at: nowS(), total: scanned.items, engines: JSON.stringify([...scanned.engines]),
        });
      }
      h = await this.#redis.hgetall(this.#keys.batch(batchId));
    }
    // Cancelled while validating: nothing was queued, so nothing is left to wait for.
    if (h.status === 'cancelling' && !h.in_progress_at) {
      await transitionBatch(this.#redis, this.#keys, batchId, ['cancelling'], { status: 'cancelled', cancelled_at: nowS() });
      return;
    }
    if (!h.in_progress_at || h.enqueued || BATCH_DONE.has(h.status as BatchStatus)) return;
    const enqueued = await this.#enqueue(batchId, h.input_file_id!, owner);
    if (enqueued !== Number(h.total)) throw new Error(`the input file changed between passes (${h.total} items, then ${enqueued})`);
    await transitionBatch(this.#redis, this.#keys, batchId, ['in_progress', 'cancelling', 'finalizing'], { enqueued: 1 });
    // A cancel or the expiry that came while items were being queued missed the ones queued after it: sweep again.
    h = await this.#redis.hgetall(this.#keys.batch(batchId));
    if (h.status === 'cancelling') await this.#sweep(h, 'cancelled');
    else if (h.status === 'in_progress' && h.expiring_at) await this.#sweep(h, 'expired');
    if ((await remainingOutcomes(this.#redis, this.#keys, batchId)) === 0) await enqueueFinalize(this.control, batchId);
  }

  /** The second pass: every item as a job on its engine's batch lane (those with an outcome skipped); returns how many. */
  async #enqueue(batchId: string, fileId: string, owner: string | undefined): Promise<number> {
    const opts: JobsOptions = { ...JOB_CATALOG[JOB_NAMES.synthesize].options, priority: PRIORITY.batch };
    let pending: { engine: string; name: string; data: TtsJob; opts: JobsOptions }[] = [];
    let index = 0;
    const flush = async () => {
      const batch = pending;
      pending = [];
      const done = await this.#redis.hmget(this.#keys.batchOutcomes(batchId), ...batch.map((j) => j.data.sink!.customId));
      const byEngine = new Map<string, typeof batch>();
      batch.forEach((j, i) => done[i] === null && byEngine.set(j.engine, [...(byEngine.get(j.engine) ?? []), j]));
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
    if (pending.length > 0) await flush();
    if (errors.length > 0) throw new Error(`the input file changed between passes (${errors.length} errors)`);
    return index;
  }

  /**
   * The `expire` job, at the end of the completion window: a batch still validating expires as it is; one in
   * progress has its waiting items removed (each an `expired` outcome: a `batch_expired` error line) while running
   * ones finish, and its finalizer ends it `expired` with the results it has.
   */
  async expire(batchId: string): Promise<void> {
    if (await transitionBatch(this.#redis, this.#keys, batchId, ['validating'], { status: 'expired', expired_at: nowS() })) return;
    if (!(await transitionBatch(this.#redis, this.#keys, batchId, ['in_progress'], { expiring_at: nowS() }))) return;
    const h = await this.#redis.hgetall(this.#keys.batch(batchId));
    await this.#sweep(h, 'expired');
    if ((await remainingOutcomes(this.#redis, this.#keys, batchId)) === 0) await enqueueFinalize(this.control, batchId);
  }

  /** Removes the batch's items still waiting in their queues, recording each as `outcome`; running ones are left. */
  async #sweep(h: Record<string, string>, outcome: 'cancelled' | 'expired'): Promise<void> {
    const id = h.id!;
    const total = Number(h.total);
    const engines = JSON.parse(h.engines || '[]') as string[];
    for (let at = 0; at < total; at += 50) {
      const jobIds = Array.from({ length: Math.min(50, total - at) }, (_, i) => batchItemJobId(id, at + i));
      await Promise.all(jobIds.map(async (jobId) => {
        for (const engine of engines) {
          const job = await this.#speech.queue(engine, 'batch').getJob(jobId);
          if (!job) continue;
          const data = TtsJob.safeParse(job.data);
          if (!data.success || !data.data.sink) continue;
          try {
            await job.remove(); // throws while a worker holds it
          } catch {
            continue;
          }
          const o: ItemOutcome = { status: outcome, request_id: data.data.requestId, line: data.data.sink.line };
          if ((await recordOutcome(this.#redis, this.#keys, id, data.data.sink.customId, o)).recorded) this.#onItemEnded(outcome);
        }
      }));
    }
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
      const rows = await Promise.all(ids.map((id) => this.#redis.hgetall(this.#keys.batch(id))));
      const gone: string[] = [];
      for (let i = 0; i < ids.length; i++) {
        const h = rows[i];
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
   * Cancels a batch: `cancelling` at once. One still validating ends `cancelled` when its validation sees the flag
   * (nothing was queued). Otherwise waiting items are removed (each recorded as cancelled), active ones are
   * flagged and aborted by their worker (which records them); the last outcome enqueues the finalizer, which sets
   * `cancelled` and writes the output file for what completed.
   */
  async cancel(id: string): Promise<void> {
    if (!(await transitionBatch(this.#redis, this.#keys, id, ['validating', 'in_progress'], { status: 'cancelling', cancelling_at: nowS() }))) return;
    const h = await this.#redis.hgetall(this.#keys.batch(id));
    if (!h.in_progress_at) return;
    const total = Number(h.total);
    // Per item (the flags spread over Cluster slots), a thousand in flight at a time.
    for (let at = 0; at < total; at += 1000) {
      await Promise.all(Array.from({ length: Math.min(1000, total - at) }, (_, k) => {
        const jobId = batchItemJobId(id, at + k);
        return this.#redis.multi().set(this.#keys.cancelFlag(jobId), '1', 'EX', 3600).publish(this.#keys.cancelChannel(), jobId).exec();
      }));
    }
    await this.#sweep(h, 'cancelled');
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
      const res = await Promise.all(chunk.map((o) => this.#redis.exists(this.#keys.file(o.fileId))));
      chunk.forEach((o, i) => res[i] === 1 && alive.push(o));
    }
    return alive.sort((a, b) => a.line - b.line);
  }

  /** Stops taking lifecycle jobs; one running past `graceMs` is left to BullMQ's stall recovery (another replica). */
  async close(graceMs = 5000): Promise<void> {
    const worker = this.#lifecycleWorker;
    if (worker) {
      let timer: NodeJS.Timeout | undefined;
      const gave = await Promise.race([
        worker.close().then(() => false),
        new Promise<boolean>((r) => (timer = setTimeout(() => r(true), graceMs))),
      ]);
      clearTimeout(timer);
      if (gave) await worker.close(true);
    }
    await this.#queues.close();
  }
}

/** A body field's param as the line reports it (`body.voice`). */
function paramUnder(param: string | null): string | null {
  if (param === null) return 'body';
  return param.startsWith('body') ? param : `body.${param}`;
}
