import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BenchStack } from './lib/stack.ts';
import { rssBytes } from './lib/processes.ts';
import { startS3Server, type S3Server } from '../test/helpers/s3-server.ts';

/*
 * Issue 11 (storage): a large file through POST /v1/files and back through /content, on the filesystem or the S3
 * driver (s3rver). The body is generated and streamed by the client (chunked, no Content-Length), so neither side
 * holds it; the API's RSS is sampled every 50 ms to show that it does not either.
 *   node --import tsx bench/files-upload.ts [fs|s3] [MiB]
 */
const driver = process.argv[2] ?? 'fs';
const mib = Number(process.argv[3] ?? 150);
const dataDir = await mkdtemp(path.join(tmpdir(), 'chorus-bench-files-'));
let s3: S3Server | undefined;
if (driver === 's3') s3 = await startS3Server();
// One worker: the stack waits for /readyz, which needs one (files themselves need none).
const stack = await BenchStack.start({
  workers: 1,
  apiEnv: { DATA_DIR: dataDir, MAX_BATCH_FILE_BYTES: String(mib * 1024 * 1024 + 1), ...(s3?.env ?? {}) },
});
try {
  const pid = stack.api.pid;
  const idle = rssBytes(pid);
  let peak = idle;
  const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(pid))), 50);

  const boundary = 'benchboundary';
  const hash = createHash('sha256');
  const chunk = 256 * 1024;
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n` +
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\nContent-Type: application/jsonl\r\n\r\n`));
    },
    pull(c) {
      if (sent >= mib * 1024 * 1024) {
        c.enqueue(Buffer.from(`\r\n--${boundary}--\r\n`));
        c.close();
        return;
      }
      const b = randomBytes(chunk);
      hash.update(b);
      sent += b.length;
      c.enqueue(b);
    },
  });
  let t0 = performance.now();
  const res = await fetch(`${stack.baseUrl}/v1/files`, {
    method: 'POST', body, duplex: 'half', headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
  } as RequestInit);
  const file = (await res.json()) as { id: string; bytes: number };
  const upS = (performance.now() - t0) / 1000;
  const upPeak = peak;
  if (res.status !== 200) throw new Error(`upload: ${res.status} ${JSON.stringify(file)}`);

  peak = rssBytes(pid);
  t0 = performance.now();
  const down = await fetch(`${stack.baseUrl}/v1/files/${file.id}/content`);
  const back = createHash('sha256');
  let got = 0;
  for await (const c of down.body!) {
    back.update(c);
    got += c.length;
  }
  const downS = (performance.now() - t0) / 1000;
  clearInterval(sampler);
  const mb = (n: number) => (n / 1e6).toFixed(0);
  console.log(`driver ${driver}: ${mib} MiB (${file.bytes} bytes stored, ${got} read back, sha256 ${back.digest('hex') === hash.digest('hex') ? 'equal' : 'DIFFERENT'})`);
  console.log(`upload   ${upS.toFixed(2)} s (${(mib / upS).toFixed(0)} MiB/s), API RSS idle ${mb(idle)} MB, peak ${mb(upPeak)} MB`);
  console.log(`download ${downS.toFixed(2)} s (${(mib / downS).toFixed(0)} MiB/s), API RSS peak ${mb(peak)} MB`);
} finally {
  await stack.stop();
  await s3?.stop();
  await rm(dataDir, { recursive: true, force: true });
}
