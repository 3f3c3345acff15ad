import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it, onTestFinished } from 'vitest';
import OpenAI, { toFile } from 'openai';
import { S3Storage } from '../packages/shared/src/storage/s3.ts';
import { startStack, type Stack } from './helpers/stack.ts';
import { startS3Server, S3RVER_CREDENTIALS, useS3rverCredentials, type S3Server } from './helpers/s3-server.ts';

/*
 * OpenAI's Files API (/v1/files) driven by the official SDK: upload, list, retrieve, content, delete; files belong
 * to the key that uploaded them; limits, purpose, retention; the same routes on the S3 driver against s3rver.
 */

const MAX = 1024 * 1024;
const jsonl = (n: number) =>
  Buffer.from(
    Array.from({ length: n }, (_, i) =>
      JSON.stringify({ custom_id: `r${i}`, method: 'POST', url: '/v1/audio/speech', body: { model: 'tts-1', voice: 'alloy', input: `line ${i}` } }),
    ).join('\n') + '\n',
  );

const client = (stack: Stack, key: string) => new OpenAI({ baseURL: `${stack.baseUrl}/v1`, apiKey: key, maxRetries: 0 });

/** Everything under DATA_DIR, hidden temp and metadata files included. */
async function onDisk(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true }).catch(() => [])).map(String).filter((n) => n !== 'files').sort();
}

async function fileKeys(stack: Stack): Promise<string[]> {
  return (await stack.redis.keys(`${stack.prefix}:file:*`)).sort();
}

describe('/v1/files on the filesystem driver (API_KEYS=sk-a,sk-b, ADMIN_API_KEY=sk-admin)', () => {
  let stack: Stack;
  let dataDir: string;
  let a: OpenAI;
  let b: OpenAI;
  let admin: OpenAI;
  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'chorus-files-'));
    stack = await startStack({
      redisUrl: inject('redisUrl'), workers: 0,
      apiEnv: { API_KEYS: 'sk-a,sk-b', ADMIN_API_KEY: 'sk-admin', DATA_DIR: dataDir, MAX_BATCH_FILE_BYTES: String(MAX) },
    });
    [a, b, admin] = ['sk-a', 'sk-b', 'sk-admin'].map((k) => client(stack, k)) as [OpenAI, OpenAI, OpenAI];
  });
  afterAll(async () => {
    await stack?.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('upload, retrieve, list, content and delete through the SDK; bytes live under DATA_DIR', async () => {
    const body = jsonl(200);
    const created = await a.files.create({ file: await toFile(body, 'input.jsonl'), purpose: 'batch' });
    const now = Date.now() / 1000;
    expect(created).toMatchObject({ object: 'file', bytes: body.length, filename: 'input.jsonl', purpose: 'batch', status: 'processed' });
    expect(created.id).toMatch(/^file-[0-9a-f]{28}$/);
    expect(Math.abs(created.created_at - now)).toBeLessThan(60);
    expect(created.expires_at! - created.created_at).toBe(30 * 86_400);
    expect(await readFile(path.join(dataDir, 'files', created.id))).toEqual(body);

    expect(await a.files.retrieve(created.id)).toEqual(created);
    const listed = await a.files.list();
    expect(listed.data.map((f) => f.id)).toContain(created.id);
    expect(listed.data.find((f) => f.id === created.id)).toEqual(created);

    const content = await a.files.content(created.id);
    expect(content.headers.get('content-length')).toBe(String(body.length));
    expect(content.headers.get('content-type')).toBe('application/octet-stream');
    expect(Buffer.from(await content.arrayBuffer())).toEqual(body);

    expect(await a.files.delete(created.id)).toEqual({ id: created.id, object: 'file', deleted: true });
    await expect(a.files.retrieve(created.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(a.files.content(created.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(a.files.delete(created.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    expect((await a.files.list()).data.map((f) => f.id)).not.toContain(created.id);
    expect(await onDisk(dataDir)).not.toContain(path.join('files', created.id));
  });

  it("another key cannot see, read or delete a key's file (the 404 of no file); the admin key is refused (401)", async () => {
    const file = await a.files.create({ file: await toFile(jsonl(3), 'mine.jsonl', { type: 'application/jsonl' }), purpose: 'batch' });
    const missing = `file-${'0'.repeat(28)}`;
    for (const id of [file.id, missing]) {
      const err = await b.files.retrieve(id).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OpenAI.NotFoundError);
      expect((err as InstanceType<typeof OpenAI.NotFoundError>).error).toEqual({
        message: `No such File object: ${id}`, type: 'invalid_request_error', param: 'file_id', code: 'not_found',
      });
      await expect(b.files.content(id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
      await expect(b.files.delete(id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    }
    expect((await b.files.list()).data.map((f) => f.id)).not.toContain(file.id);
    const noKey = await fetch(`${stack.baseUrl}/v1/files/${file.id}`);
    expect(noKey.status).toBe(401);

    // The admin key is the operator's (/admin/*), not a client key: it reads no one's files.
    await expect(admin.files.retrieve(file.id)).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    await expect(admin.files.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    await expect(admin.files.content(file.id)).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    const content = await a.files.content(file.id);
    expect(content.headers.get('content-type')).toBe('application/jsonl');
    expect(Buffer.from(await content.arrayBuffer())).toEqual(jsonl(3));
    expect((await a.files.retrieve(file.id)).id).toBe(file.id); // the delete attempts above changed nothing
  });

  it('lists newest first with OpenAI cursors (limit, after, has_more, order) and a purpose filter', async () => {
    const c = client(stack, 'sk-b');
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      ids.push((await c.files.create({ file: await toFile(jsonl(1), `f${i}.jsonl`), purpose: 'batch' })).id);
      await new Promise((r) => setTimeout(r, 3)); // ids order by millisecond
    }
    const newest = [...ids].reverse();
    const page = await c.files.list({ limit: 2 });
    expect(page.data.map((f) => f.id)).toEqual(newest.slice(0, 2));
    expect(page.has_more).toBe(true);
    const all: string[] = [];
    for await (const f of c.files.list({ limit: 2 })) all.push(f.id); // the SDK follows `after`
    expect(all).toEqual(newest);
    const asc = await fetch(`${stack.baseUrl}/v1/files?order=asc&after=${ids[1]}&limit=2`, { headers: { authorization: 'Bearer sk-b' } });
    expect(await asc.json()).toMatchObject({ object: 'list', data: [{ id: ids[2] }, { id: ids[3] }], first_id: ids[2], last_id: ids[3], has_more: true });
    expect((await c.files.list({ purpose: 'batch_output' })).data).toEqual([]);
    expect((await c.files.list({ purpose: 'batch' })).data).toHaveLength(5);

    await c.files.delete(ids[2]!);
    const after = [];
    for await (const f of c.files.list({ limit: 1 })) after.push(f.id);
    expect(after).toEqual(newest.filter((id) => id !== ids[2]));

    for (const [q, param] of [['limit=0', 'limit'], ['limit=x', 'limit'], ['order=up', 'order'], ['after=../x', 'after']]) {
      const res = await fetch(`${stack.baseUrl}/v1/files?${q}`, { headers: { authorization: 'Bearer sk-b' } });
      expect(res.status, q).toBe(400);
      expect(((await res.json()) as { error: { param: string } }).error.param, q).toBe(param);
    }
  });

  it('an upload over MAX_BATCH_FILE_BYTES is a 413 and stores nothing (streamed and declared sizes)', async () => {
    const beforeDisk = await onDisk(dataDir);
    const beforeKeys = await fileKeys(stack);
    // Just over the limit: within the Content-Length slack, so the stream itself must be cut.
    const err = await a.files.create({ file: await toFile(randomBytes(MAX + 1), 'big.jsonl'), purpose: 'batch' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(413);
    expect((err as InstanceType<typeof OpenAI.APIError>).error).toMatchObject({ code: 'payload_too_large', param: 'file', type: 'invalid_request_error' });
    // Exactly the limit is fine.
    const exact = await a.files.create({ file: await toFile(randomBytes(MAX), 'exact.jsonl'), purpose: 'batch' });
    expect(exact.bytes).toBe(MAX);
    await a.files.delete(exact.id);
    // Far over: refused from its Content-Length.
    const form = new FormData();
    form.append('purpose', 'batch');
    form.append('file', new Blob([randomBytes(3 * MAX)]), 'huge.jsonl');
    const res = await fetch(`${stack.baseUrl}/v1/files`, { method: 'POST', headers: { authorization: 'Bearer sk-a' }, body: form });
    expect(res.status).toBe(413);
    expect(await res.json()).toMatchObject({ error: { code: 'payload_too_large', param: 'file' } });

    expect(await onDisk(dataDir)).toEqual(beforeDisk);
    expect(await fileKeys(stack)).toEqual(beforeKeys);
  });

  it('a wrong or missing purpose, a missing file, or a JSON body is a 400/415 envelope and stores nothing', async () => {
    const beforeDisk = await onDisk(dataDir);
    const beforeKeys = await fileKeys(stack);
    const bad = await a.files
      .create({ file: await toFile(jsonl(2), 'x.jsonl'), purpose: 'fine-tune' })
      .catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(OpenAI.BadRequestError);
    expect((bad as InstanceType<typeof OpenAI.BadRequestError>).error).toMatchObject({ param: 'purpose', code: 'invalid_value' });

    const post = (form: FormData) => fetch(`${stack.baseUrl}/v1/files`, { method: 'POST', headers: { authorization: 'Bearer sk-a' }, body: form });
    const noPurpose = new FormData();
    noPurpose.append('file', new Blob([jsonl(1)]), 'x.jsonl');
    const r1 = await post(noPurpose);
    expect(r1.status).toBe(400);
    expect(await r1.json()).toMatchObject({ error: { param: 'purpose', code: 'missing_required_parameter' } });

    const noFile = new FormData();
    noFile.append('purpose', 'batch');
    const r2 = await post(noFile);
    expect(r2.status).toBe(400);
    expect(await r2.json()).toMatchObject({ error: { param: 'file', code: 'missing_required_parameter' } });

    const two = new FormData();
    two.append('purpose', 'batch');
    two.append('file', new Blob([jsonl(1)]), 'x.jsonl');
    two.append('file', new Blob([jsonl(1)]), 'y.jsonl');
    const r3 = await post(two);
    expect(r3.status).toBe(400);
    expect(await r3.json()).toMatchObject({ error: { param: 'file', type: 'invalid_request_error' } });

    const json = await fetch(`${stack.baseUrl}/v1/files`, {
      method: 'POST', headers: { authorization: 'Bearer sk-a', 'content-type': 'application/json' }, body: '{"purpose":"batch"}',
    });
    expect(json.status).toBe(415);
    expect(await json.json()).toMatchObject({ error: { code: 'unsupported_media_type' } });

    expect(await onDisk(dataDir)).toEqual(beforeDisk);
    expect(await fileKeys(stack)).toEqual(beforeKeys);
  });

  it('a malformed multipart body (no boundary, garbage, a body that ends mid-file) is a 400 and stores nothing', async () => {
    const beforeDisk = await onDisk(dataDir);
    const beforeKeys = await fileKeys(stack);
    const cases: [string, string][] = [
      ['multipart/form-data', 'xx'],
      ['multipart/form-data; boundary=zz', 'garbage'],
      ['multipart/form-data; boundary=zz', '--zz\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n' +
        '--zz\r\nContent-Disposition: form-data; name="file"; filename="cut.jsonl"\r\n\r\n{"custom_id":'],
    ];
    for (const [type, body] of cases) {
      const res = await fetch(`${stack.baseUrl}/v1/files`, {
        method: 'POST', headers: { authorization: 'Bearer sk-a', 'content-type': type }, body, signal: AbortSignal.timeout(20_000),
      });
      expect(res.status, body).toBe(400);
      expect(await res.json(), body).toMatchObject({ error: { type: 'invalid_request_error', code: 'invalid_value' } });
    }
    // The same cut body delivered at once (busboy has destroyed the part before the route reads it) must not hang.
    const cut = await stack.app.inject({
      method: 'POST', url: '/v1/files', payload: cases[2]![1],
      headers: { authorization: 'Bearer sk-a', 'content-type': 'multipart/form-data; boundary=zz' },
    });
    expect(cut.statusCode).toBe(400);
    expect(await onDisk(dataDir)).toEqual(beforeDisk);
    expect(await fileKeys(stack)).toEqual(beforeKeys);
  });

  it('a client that disconnects mid-upload leaves nothing behind, and the API keeps serving', async () => {
    const beforeDisk = await onDisk(dataDir);
    const beforeKeys = await fileKeys(stack);
    const boundary = 'chorusboundary';
    const head =
      `--${boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="cut.jsonl"\r\nContent-Type: application/jsonl\r\n\r\n`;
    const { port } = new URL(stack.baseUrl);
    const socket = connect(Number(port), '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    socket.write(
      `POST /v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-a\r\n` +
        `Content-Type: multipart/form-data; boundary=${boundary}\r\nContent-Length: ${MAX / 2 + head.length + 100}\r\n\r\n${head}`,
    );
    socket.write(randomBytes(MAX / 4));
    // While the upload is open, its bytes are only a hidden temp file (waited for: an empty list would pass anything).
    const newOnDisk = async () => (await onDisk(dataDir)).filter((f) => !beforeDisk.includes(f));
    await expect.poll(async () => (await newOnDisk()).length, { timeout: 20_000, interval: 50 }).toBeGreaterThan(0);
    const during = await newOnDisk();
    expect(during.every((f) => path.basename(f).startsWith('.')), during.join(', ')).toBe(true);
    socket.destroy();
    const deadline = Date.now() + 10_000;
    while ((await onDisk(dataDir)).length !== beforeDisk.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(await onDisk(dataDir)).toEqual(beforeDisk);
    expect(await fileKeys(stack)).toEqual(beforeKeys);
    expect(Array.isArray((await a.files.list()).data)).toBe(true);
  });
});

describe('/v1/files retention (FILE_RETENTION_S=2, keys off)', () => {
  let stack: Stack;
  let dataDir: string;
  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'chorus-files-'));
    stack = await startStack({ redisUrl: inject('redisUrl'), workers: 0, apiEnv: { DATA_DIR: dataDir, FILE_RETENTION_S: '2' } });
  });
  afterAll(async () => {
    await stack?.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('an expired file is gone from every route at once, and the sweep removes its bytes', async () => {
    const file = await stack.client.files.create({ file: await toFile(jsonl(2), 'short.jsonl'), purpose: 'batch' });
    expect(file.expires_at! - file.created_at).toBe(2);
    // Polled, not slept: the first route to say "gone" starts the checks below.
    const gone = async () => stack.client.files.retrieve(file.id).then(() => false, (err) => err instanceof OpenAI.NotFoundError);
    await expect.poll(gone, { timeout: 20_000, interval: 100 }).toBe(true);
    // Uploaded after the first expired. Its metadata's TTL is stretched (expiry is that TTL) so that a slow machine
    // cannot run its 2 s out while the rest of the test runs.
    const kept = await stack.client.files.create({ file: await toFile(jsonl(1), 'kept.jsonl'), purpose: 'batch' });
    expect(await stack.redis.expire(stack.keys.file(kept.id), 600)).toBe(1);
    await expect(stack.client.files.content(file.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    expect((await stack.client.files.list()).data.map((f) => f.id)).toEqual([kept.id]);

    expect(await onDisk(dataDir)).toContain(path.join('files', file.id));
    expect(await stack.app.files.sweep(3600_000)).toBe(0); // within the grace: could be an upload being committed
    expect(await stack.app.files.sweep(0)).toBe(1);
    expect(await onDisk(dataDir)).not.toContain(path.join('files', file.id));
    expect(await onDisk(dataDir)).toContain(path.join('files', kept.id));
  });
});

describe('/v1/files on the S3 driver (s3rver)', () => {
  let s3: S3Server;
  let stack: Stack;
  let restoreCredentials: (() => void) | undefined;
  beforeAll(async () => {
    s3 = await startS3Server();
    restoreCredentials = useS3rverCredentials();
    stack = await startStack({
      redisUrl: inject('redisUrl'), workers: 0,
      apiEnv: { ...s3.env, S3_PREFIX: 'chorus/', DATA_DIR: '/nonexistent/never-used', MAX_BATCH_FILE_BYTES: String(8 * MAX) },
    });
  });
  afterAll(async () => {
    await stack?.stop();
    await s3?.stop();
    restoreCredentials?.();
  });

  it('uploads (multipart-sized), lists, downloads and deletes with the bytes in the bucket', async () => {
    const bucket = new S3Storage({ bucket: s3.bucket, endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, prefix: '', credentials: S3RVER_CREDENTIALS });
    const inBucket = async () => {
      const out: string[] = [];
      for await (const o of bucket.list('')) out.push(`${o.key}:${o.bytes}`);
      return out;
    };
    const body = jsonl(50_000);
    expect(body.length).toBeGreaterThan(5 * MAX); // more than one S3 part
    const file = await stack.client.files.create({ file: await toFile(body, 'big.jsonl'), purpose: 'batch' });
    expect(file.bytes).toBe(body.length);
    expect(await inBucket()).toEqual([`chorus/files/${file.id}:${body.length}`]);
    expect((await stack.client.files.list()).data.map((f) => f.id)).toEqual([file.id]);
    const content = await stack.client.files.content(file.id);
    expect(content.headers.get('content-length')).toBe(String(body.length));
    expect(Buffer.from(await content.arrayBuffer()).equals(body)).toBe(true);

    const over = await stack.client.files.create({ file: await toFile(randomBytes(8 * MAX + 1), 'over.jsonl'), purpose: 'batch' }).catch((e: unknown) => e);
    expect((over as InstanceType<typeof OpenAI.APIError>).status).toBe(413);
    expect(await inBucket()).toEqual([`chorus/files/${file.id}:${body.length}`]);

    await stack.client.files.delete(file.id);
    expect(await inBucket()).toEqual([]);
    await expect(stack.client.files.content(file.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await bucket.close();
  });
});

describe('/v1/files with storage unreachable (S3 endpoint on a closed port)', () => {
  let stack: Stack;
  beforeAll(async () => {
    const { freePort } = await import('@chorus/shared/free-port');
    const port = await freePort();
    stack = await startStack({
      redisUrl: inject('redisUrl'), workers: 0,
      apiEnv: {
        STORAGE_DRIVER: 's3', S3_BUCKET: 'chorus-test', S3_ENDPOINT: `http://127.0.0.1:${port}`, S3_FORCE_PATH_STYLE: 'true',
      },
    });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('an upload is a 503 backend_unavailable with Retry-After, and no metadata is written', async () => {
    // Credentials present, so what fails is reaching the store (the SDK reads them from the environment).
    const saved = { ...process.env };
    process.env.AWS_ACCESS_KEY_ID ??= 'unused';
    process.env.AWS_SECRET_ACCESS_KEY ??= 'unused';
    onTestFinished(() => {
      for (const k of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY']) if (saved[k] === undefined) delete process.env[k];
    });
    const form = new FormData();
    form.append('purpose', 'batch');
    form.append('file', new Blob([jsonl(3)]), 'x.jsonl');
    const res = await fetch(`${stack.baseUrl}/v1/files`, { method: 'POST', body: form, signal: AbortSignal.timeout(30_000) });
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('1');
    expect(await res.json()).toMatchObject({ error: { type: 'server_error', code: 'backend_unavailable' } });
    expect(await fileKeys(stack)).toEqual([]);
  });
});
