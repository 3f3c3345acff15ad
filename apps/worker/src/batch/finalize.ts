import { Readable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import {
  BATCH_DONE, BATCH_EXPIRED_MESSAGE, commitFileMeta, ERRORS, errorNameForCode, newFileId, StorageKeys, transitionBatch, type BatchStatus,
  type ItemOutcome,
} from '@chorus/shared';
import type { BatchDeps } from './storage-sink.ts';

/** The outcome hash, HSCANned: no batch is held in memory whole. */
async function* outcomes(deps: BatchDeps, batchId: string): AsyncGenerator<[string, ItemOutcome]> {
  let cursor = '0';
  do {
    const [next, flat] = await deps.redis.hscan(deps.keys.batchOutcomes(batchId), cursor, 'COUNT', 500);
    cursor = next;
    for (let i = 0; i < flat.length; i += 2) yield [flat[i]!, JSON.parse(flat[i + 1]!) as ItemOutcome];
  } while (cursor !== '0');
}

const lineId = () => `batch_req_${randomBytes(16).toString('hex')}`;

/** One output line (OpenAI's batch output shape; the body names the audio file). */
function outputLine(customId: string, o: Extract<ItemOutcome, { status: 'completed' }>): string {
  return JSON.stringify({
    id: lineId(), custom_id: customId,
    response: {
      status_code: 200, request_id: o.request_id,
      body: { file_id: o.file_id, content_type: o.content_type, bytes: o.bytes, duration_s: o.duration_s },
    },
    error: null,
  }) + '\n';
}

/** One error line: the status and OpenAI error body the realtime route would have answered. */
function errorLine(customId: string, o: Extract<ItemOutcome, { status: 'failed' }>): string {
  const spec = ERRORS[errorNameForCode(o.code)];
  return JSON.stringify({
    id: lineId(), custom_id: customId,
    response: {
      status_code: spec.status, request_id: o.request_id,
      body: { error: { message: o.message, type: spec.type, param: o.param, code: o.code } },
    },
    error: null,
  }) + '\n';
}

/** An item its batch's completion window ended before: OpenAI's `batch_expired` line (no response). */
function expiredLine(customId: string): string {
  return JSON.stringify({ id: lineId(), custom_id: customId, response: null, error: { code: 'batch_expired', message: BATCH_EXPIRED_MESSAGE } }) + '\n';
}

/**
 * Writes the output and error files of a batch whose items all have an outcome, and completes it (or, when it
 * was being cancelled or its window closed, cancels or expires it with the partial results). Runs as the control queue's `finalize` job: a
 * crash mid-way is retried, and a rerun only leaves unreferenced bytes behind (swept with other orphans).
 */
export async function finalizeBatch(deps: BatchDeps, batchId: string, log: Logger): Promise<void> {
  const key = deps.keys.batch(batchId);
  const b = await deps.redis.hgetall(key);
  const status = b.status as BatchStatus | undefined;
  // Gone (retention), finalized already, or still validating (no items yet, so none missing).
  if (!status || BATCH_DONE.has(status) || status === 'validating') return;
  const now = () => Math.floor(Date.now() / 1000);
  if (status === 'in_progress') await transitionBatch(deps.redis, deps.keys, batchId, ['in_progress'], { status: 'finalizing', finalizing_at: now() });

  const retentionS = Number(b.retention_s);
  const owner = b.owner || undefined;
  const writeFile = async (name: string, lines: () => AsyncGenerator<string>): Promise<string | undefined> => {
    const id = newFileId();
    const body = Readable.from(lines());
    const { bytes } = await deps.storage.put(StorageKeys.file(id), body, { contentType: 'application/jsonl' });
    if (bytes === 0) {
      await deps.storage.delete(StorageKeys.file(id));
      return undefined;
    }
    const t = now();
    await commitFileMeta(deps.redis, deps.keys, {
      id, bytes, created_at: t, expires_at: t + retentionS, filename: `${batchId}_${name}.jsonl`, purpose: 'batch_output',
      content_type: 'application/jsonl', ...(owner ? { owner } : {}),
    }, retentionS);
    return id;
  };
  const outputFileId = await writeFile('output', async function* () {
    for await (const [customId, o] of outcomes(deps, batchId)) if (o.status === 'completed') yield outputLine(customId, o);
  });
  const errorFileId = await writeFile('error', async function* () {
    for await (const [customId, o] of outcomes(deps, batchId)) {
      if (o.status === 'failed') yield errorLine(customId, o);
      else if (o.status === 'expired') yield expiredLine(customId);
    }
  });

  const end = status === 'cancelling' ? 'cancelled' : b.expiring_at ? 'expired' : 'completed';
  const done = await transitionBatch(deps.redis, deps.keys, batchId, end === 'cancelled' ? ['cancelling'] : ['finalizing', 'cancelling'], {
    status: end, [`${end}_at`]: now(), output_file_id: outputFileId ?? '', error_file_id: errorFileId ?? '',
  });
  if (done) deps.onBatch?.(end, Math.max(0, now() - Number(b.created_at)));
  log.info({ batchId, outputFileId, errorFileId, status: end, done }, 'batch finalized');
}
