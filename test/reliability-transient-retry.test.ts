import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { decodeRecord } from '@chorus/shared/stream-protocol';
import { JOB_CATALOG, JOB_NAMES, type TtsJobInput } from '@chorus/shared';
import { startStack, type Stack } from './helpers/stack.ts';
import { waitFor } from './helpers/processes.ts';
import { startModelStack } from './helpers/model-stack.ts';

/*
 * Issue 10 cleanup: a transient engine failure is retried and the retry resumes the stream at its byte offset
 * (the client gets the same bytes as a clean run); a permanent one fails at once with its own code; an engine
 * that crashes on every attempt ends with `engine_error` after the job's attempts.
 *
 * The failure is real: `espeak-ng` on the worker's PATH is a wrapper around the real binary that, when armed
 * through a file in its folder, lets part of one run's audio out and then kills itself with SIGKILL (or, armed
 * for every run, dies before any audio).
 */

const WRAPPER = `#!/bin/sh
# Not a synthesis run (--voices, --ipa): the real binary.
case " $* " in *" --stdout "*) ;; *) exec /usr/bin/espeak-ng "$@";; esac
dir=$(dirname "$0")
n=$(( $(cat "$dir/runs" 2>/dev/null || echo 0) + 1 ))
echo $n > "$dir/runs"
# Armed for every run: dies before any audio.
if [ -f "$dir/crash-always" ]; then kill -KILL $$; fi
crash=
if [ -f "$dir/crash-at" ] && [ "$(cat "$dir/crash-at")" = "$n" ]; then rm -f "$dir/crash-at"; crash=1; fi
if [ -n "$crash" ]; then
  /usr/bin/espeak-ng "$@" | head -c 30000
  kill -KILL $$
fi
exec /usr/bin/espeak-ng "$@"
`;

/** ~1,100 characters: espeak-ng gets the whole text in one run, which the wrapper kills after 30,000 bytes of it. */
const TEXT = Array.from({ length: 12 }, (_, i) =>
  `Sentence ${i + 1} of the retried request talks about rivers, lanterns and orchards for a while.`).join(' ');

async function speech(stack: Stack, format: string) {
  const res = await fetch(`${stack.baseUrl}/v1/audio/speech`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'tts-1', voice: 'alloy', input: TEXT, response_format: format }),
  });
  return { status: res.status, jobId: res.headers.get('x-job-id'), body: Buffer.from(await res.arrayBuffer()) };
}

describe('espeak-ng killed by a signal', () => {
  let stack: Stack;
  let bin: string;
  const runs = () => Number(readFileSync(path.join(bin, 'runs'), 'utf8'));

  beforeAll(async () => {
    bin = mkdtempSync(path.join(tmpdir(), 'chorus-espeak-'));
    writeFileSync(path.join(bin, 'espeak-ng'), WRAPPER);
    chmodSync(path.join(bin, 'espeak-ng'), 0o755);
    stack = await startStack({
      redisUrl: inject('redisUrl'),
      // No warm espeak-ng: the wrapper counts process starts, one per attempt here; warm ones start ahead of time.
      workerEnv: { PATH: `${bin}:${process.env.PATH}`, LOG_LEVEL: 'info', ESPEAK_POOL_SIZE: '0' },
    });
  });
  afterAll(async () => {
    await stack?.stop();
    rmSync(bin, { recursive: true, force: true });
  });

  it('once, mid-stream: the job is retried and the client gets exactly the bytes of a clean run', async () => {
    for (const format of ['pcm', 'mp3'] as const) {
      writeFileSync(path.join(bin, 'runs'), '0');
      writeFileSync(path.join(bin, 'crash-at'), '1');
      const crashed = await speech(stack, format);
      expect(runs(), format).toBe(2); // one run per attempt: the first crashed mid-text, the retry ran it again
      const clean = await speech(stack, format);
      expect(runs(), format).toBe(3);
      expect(crashed.status, format).toBe(200);
      expect(clean.status, format).toBe(200);
      expect(crashed.body.length, format).toBe(clean.body.length);
      expect(crashed.body.equals(clean.body), `${format} bytes`).toBe(true);
      // The end record goes out a moment before BullMQ marks the job completed.
      await expect.poll(() => stack.queue().getJobState(crashed.jobId!), { timeout: 10_000 }).toBe('completed');
      const job = await stack.queue().getJob(crashed.jobId!);
      expect(job!.attemptsMade, format).toBe(2); // one failed attempt, one that completed
    }
    const log = stack.workers[0]!.output();
    expect(log).toContain('transient failure; job will be retried');
    expect(log).toContain('resuming a stream left by an earlier attempt');
    expect(log).toMatch(/espeak-ng killed by SIGKILL/);
  });

  it('on every attempt: the client gets engine_error once the attempts are spent', async () => {
    const attempts = JOB_CATALOG[JOB_NAMES.synthesize].options.attempts;
    expect(attempts).toBeGreaterThan(1);
    writeFileSync(path.join(bin, 'runs'), '0');
    writeFileSync(path.join(bin, 'crash-always'), '');
    try {
      const res = await fetch(`${stack.baseUrl}/v1/audio/speech`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'tts-1', voice: 'alloy', input: 'This engine never gets through.', response_format: 'mp3' }),
      });
      expect(res.status).toBe(500);
      const body = (await res.json()) as { error: { code: string; message: string; type: string } };
      expect(body.error).toMatchObject({ code: 'engine_error', type: 'server_error', message: 'Speech synthesis failed.' });
      expect(body.error.message).not.toMatch(/SIGKILL|espeak/);
      expect(runs()).toBe(attempts); // one segment, one run per attempt
      // The error record goes out a moment before BullMQ marks the job failed.
      await expect.poll(async () => (await stack.queue().getFailed()).length, { timeout: 10_000 }).toBe(1);
      const failed = await stack.queue().getFailed();
      expect(failed[0]!.attemptsMade).toBe(attempts);
    } finally {
      rmSync(path.join(bin, 'crash-always'), { force: true });
    }
  });
});

describe('an unknown Piper voice on the worker that took the job', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startModelStack(inject('redisUrl'), 'espeak,piper');
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('fails at once with invalid_value (a 400-class code), using one attempt', async () => {
    // As the API would enqueue it had it routed by a worker that has this voice (the taker's MODELS_DIR lacks it).
    const jobId = `perm${randomUUID().replace(/-/g, '').slice(0, 12)}`;
    const streamKey = stack.keys.audioStream('test', jobId);
    const job: TtsJobInput = {
      v: 1, requestId: 'req-perm', streamKey, engine: 'piper', model: 'piper', text: 'Hello there.',
      speaker: { id: 'piper:en_US-nobody-low', name: 'en_US-nobody-low', engine: 'piper', voice: 'en_US-nobody-low', language: 'en-US' },
      format: 'wav', speed: 1, enqueuedAt: Date.now(),
    };
    await stack.queue('piper').add(JOB_NAMES.synthesize, job, { ...JOB_CATALOG[JOB_NAMES.synthesize].options, jobId });
    const records = async () => (await stack.redis.xrangeBuffer(streamKey, '-', '+')).map(([, f]) => decodeRecord(f));
    expect(await waitFor(async () => (await records()).some((r) => r.type !== 'audio'), 20_000)).toBeGreaterThanOrEqual(0);
    const all = await records();
    expect(all).toHaveLength(1);
    expect(all[0]).toMatchObject({ type: 'error', code: 'invalid_value', param: 'voice' });
    expect((all[0] as { message: string }).message).toContain('en_US-nobody-low');
    const q = stack.queue('piper');
    expect(await waitFor(async () => (await q.getJobState(jobId)) === 'failed', 10_000)).toBeGreaterThanOrEqual(0);
    const done = await q.getJob(jobId);
    expect(done!.attemptsMade).toBe(1);
    expect(done!.attemptsStarted).toBe(1);
  });
});
