import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { toFile } from 'openai';
import { S3Storage } from '../packages/shared/src/storage/s3.ts';
import { startStack, type Stack } from './helpers/stack.ts';
import { startS3Server, S3RVER_CREDENTIALS, useS3rverCredentials, type S3Server } from './helpers/s3-server.ts';
import { decodedDuration } from './helpers/audio.ts';

/*
 * A batch end to end on the S3 driver (s3rver): the worker streams each item's audio into the bucket, the
 * finalizer writes the output file there, and the API serves both back. No DATA_DIR anywhere.
 */

let s3: S3Server;
let stack: Stack;
let restoreCredentials: (() => void) | undefined;
beforeAll(async () => {
  s3 = await startS3Server();
  restoreCredentials = useS3rverCredentials();
  const env = { ...s3.env, S3_PREFIX: 'chorus/', DATA_DIR: '/nonexistent/never-used' };
  stack = await startStack({ redisUrl: inject('redisUrl'), apiEnv: env, workerEnv: env });
});
afterAll(async () => {
  await stack?.stop();
  await s3?.stop();
  restoreCredentials?.();
});

describe('batch on the S3 driver', () => {
  it('completes; audio and output live in the bucket and decode', async () => {
    const lines = Array.from({ length: 6 }, (_, i) =>
      JSON.stringify({ custom_id: `s-${i}`, method: 'POST', url: '/v1/audio/speech', body: { model: 'tts-1', voice: 'alloy', input: `Stored in a bucket, item ${i}.` } }));
    const client = stack.client;
    const file = await client.files.create({ file: await toFile(Buffer.from(lines.join('\n')), 'in.jsonl'), purpose: 'batch' });
    const batch = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/audio/speech' as never, completion_window: '24h' });
    let done = batch;
    const deadline = Date.now() + 40_000;
    while (done.status !== 'completed' && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      done = await client.batches.retrieve(batch.id);
    }
    expect(done.status).toBe('completed');
    expect(done.request_counts).toEqual({ total: 6, completed: 6, failed: 0 });

    const text = await (await client.files.content(done.output_file_id!)).text();
    const out = text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as {
      custom_id: string; response: { body: { file_id: string; bytes: number; duration_s: number } };
    });
    expect(out.map((l) => l.custom_id).sort()).toEqual(['s-0', 's-1', 's-2', 's-3', 's-4', 's-5']);

    const bucket = new S3Storage({ bucket: s3.bucket, endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, prefix: 'chorus/', credentials: S3RVER_CREDENTIALS });
    try {
      for (const l of out) {
        const head = await bucket.head(`files/${l.response.body.file_id}`);
        expect(head?.bytes).toBe(l.response.body.bytes);
        expect(head?.contentType).toBe('audio/mpeg');
        const audio = Buffer.from(await (await client.files.content(l.response.body.file_id)).arrayBuffer());
        expect(Math.abs((await decodedDuration(audio)) - l.response.body.duration_s)).toBeLessThan(0.1);
      }
      expect((await bucket.head(`files/${done.output_file_id}`))?.bytes).toBe(Buffer.byteLength(text));
    } finally {
      await bucket.close();
    }
  });
});
