import OpenAI, { toFile } from 'openai';
import type { Batch } from 'openai/resources/batches';

/** The batch endpoint, typed for the SDK (speech is Chorus's extension to OpenAI's list). */
export const BATCH_ENDPOINT = '/v1/audio/speech' as never;

/** One input line: a speech request with `tts-1` / `alloy` unless `body` says otherwise. */
export const batchLine = (customId: string, body: Record<string, unknown>) =>
  JSON.stringify({ custom_id: customId, method: 'POST', url: '/v1/audio/speech', body: { model: 'tts-1', voice: 'alloy', ...body } });

/** Uploads `lines` as a `purpose=batch` file and creates a batch on it. */
export async function submitBatch(
  client: OpenAI, lines: string[], opts: { window?: string; metadata?: Record<string, string> } = {},
): Promise<Batch> {
  const file = await client.files.create({ file: await toFile(Buffer.from(lines.join('\n') + '\n'), 'in.jsonl'), purpose: 'batch' });
  return client.batches.create({
    input_file_id: file.id, endpoint: BATCH_ENDPOINT, completion_window: (opts.window ?? '24h') as '24h',
    ...(opts.metadata ? { metadata: opts.metadata } : {}),
  });
}

/** Polls the batch until `done` holds; throws with its status and counts after `timeoutMs`. */
export async function untilBatch(client: OpenAI, id: string, done: (b: Batch) => boolean, timeoutMs: number): Promise<Batch> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const batch = await client.batches.retrieve(id);
    if (done(batch)) return batch;
    if (Date.now() > deadline) throw new Error(`batch ${id} still ${batch.status}: ${JSON.stringify(batch.request_counts)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** A JSONL file's lines, parsed. */
export async function jsonlFile<T>(client: OpenAI, fileId: string): Promise<T[]> {
  const text = await (await client.files.content(fileId)).text();
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as T);
}
