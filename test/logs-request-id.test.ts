import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { spawnApi, startStack, type Stack } from './helpers/stack.ts';
import { freePort } from './helpers/redis-server.ts';

/*
 * One request id from API to worker: the API process (spawned as in production, server.ts and its pino logger)
 * and the worker process both write pino JSON to stdout, and both carry the id of the same request.
 */

interface LogLine { level: number; name: string; msg: string; reqId?: string; jobId?: string; [k: string]: unknown }

function jsonLines(output: string): LogLine[] {
  return output.split('\n').filter((l) => l.trim() !== '').map((l) => {
    try {
      return JSON.parse(l) as LogLine;
    } catch {
      throw new Error(`not a JSON log line: ${l}`);
    }
  });
}

let stack: Stack;
let api: { process: ChildProcess; output: () => string; baseUrl: string };

beforeAll(async () => {
  stack = await startStack({ redisUrl: inject('redisUrl'), workerEnv: { LOG_LEVEL: 'info' } });
  api = await spawnApi({ ...stack.env, LOG_LEVEL: 'info' }, await freePort());
});
afterAll(async () => {
  if (api?.process.exitCode === null) {
    const exited = new Promise((r) => api.process.once('exit', r));
    api.process.kill('SIGTERM');
    await exited;
  }
  await stack?.stop();
});

describe('logs', () => {
  it('the API and the worker log the same request id for one request, as JSON', async () => {
    const res = await fetch(`${api.baseUrl}/v1/audio/speech`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer sk-secret-should-not-be-logged' },
      body: JSON.stringify({ model: 'tts-1', voice: 'alloy', input: 'Trace me through the logs.', response_format: 'mp3' }),
    });
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    const reqId = res.headers.get('x-request-id')!;
    const jobId = res.headers.get('x-job-id')!;
    expect(reqId).toMatch(/^req_[0-9a-f]{32}$/);

    const deadline = Date.now() + 10_000;
    let workerLines: LogLine[] = [];
    let apiLines: LogLine[] = [];
    while (Date.now() < deadline) {
      workerLines = jsonLines(stack.workers[0]!.output()).filter((l) => l.reqId === reqId);
      apiLines = jsonLines(api.output()).filter((l) => l.reqId === reqId);
      if (workerLines.some((l) => l.msg === 'job completed') && apiLines.some((l) => l.msg === 'request completed')) break;
      await new Promise((r) => setTimeout(r, 100));
    }

    expect(apiLines.map((l) => l.msg)).toEqual(expect.arrayContaining(['incoming request', 'request completed']));
    expect(apiLines.every((l) => l.name === 'chorus-api')).toBe(true);
    const done = workerLines.find((l) => l.msg === 'job completed');
    expect(done, api.output() + stack.workers[0]!.output()).toBeDefined();
    expect(done).toMatchObject({ name: 'chorus-worker', jobId, reqId, engine: 'espeak' });
    // The worker's log carries neither the key nor the text; the API's never the key.
    expect(api.output()).not.toContain('sk-secret-should-not-be-logged');
    expect(stack.workers[0]!.output()).not.toContain('Trace me through the logs.');
  });
});
