import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, inject, it } from 'vitest';
import { decodedDuration, probe } from './helpers/audio.ts';
import { waitFor } from './helpers/processes.ts';
import { ROOT, startStack, type Stack } from './helpers/stack.ts';
import { batchLine } from './helpers/batches.ts';

/*
 * `chorus batch` as real subprocesses (node + tsx) against the real stack: API in-process with DATA_DIR storage, one
 * worker process running the batch lane with espeak-ng and ffmpeg. The tests run concurrently and keep CLI runs
 * few (each costs ~1.5 s of start-up). MAX_AUDIO_SECONDS=3 makes a long input an item that fails at synthesis
 * (validation cannot see audio length); every other text stays well under 3 s of audio.
 */

const BIN = join(ROOT, 'apps/cli/bin/chorus.js');
const KEY = 'sk-cli-batch';
const LONG = 'This sentence is repeated until the audio is far longer than the limit allows. '.repeat(6);

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

let stack: Stack;
let dataDir: string;
beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'chorus-cli-batch-data-'));
  stack = await startStack({
    redisUrl: inject('redisUrl'),
    apiEnv: { API_KEYS: KEY, DATA_DIR: dataDir, MAX_AUDIO_SECONDS: '3' },
    workerEnv: { DATA_DIR: dataDir, WORKER_BATCH_CONCURRENCY: '2' },
  });
});
afterAll(async () => {
  await stack?.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

/** A running `chorus` with the stack's URL and key in the SDK's variables; `seen()` is its stdout so far. */
function start(args: string[]) {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    env: { ...process.env, OPENAI_BASE_URL: `${stack.baseUrl}/v1`, OPENAI_API_KEY: KEY },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<Run>((resolve, reject) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
  return { done, seen: () => stdout };
}
const chorus = (args: string[]) => start(args).done;

const line = batchLine;

async function tempDir(onTestFinished: (fn: () => Promise<void>) => void): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'chorus-cli-batch-'));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

describe.concurrent('chorus batch', { timeout: 120_000 }, () => {
  it('submit --wait -o DIR: progress lines, summary, exit 0; output.jsonl has a line per item, every audio file decodes', async ({ expect, onTestFinished }) => {
    const dir = await tempDir(onTestFinished);
    const items: [string, string][] = [['first', 'mp3'], ['second', 'wav'], ['../../escape/third', 'flac'], ['.hidden', 'opus']];
    const input = join(dir, 'in.jsonl');
    await writeFile(input, items.map(([id, format], i) => line(id, { input: `Item ${i + 1}.`, response_format: format })).join('\n') + '\n');
    const out = join(dir, 'out');
    const r = await chorus(['batch', 'submit', input, '--wait', '-o', out, '--poll', '0.3', '--metadata', 'run=cli', '--metadata', 'who=test']);
    expect(r.stderr).not.toMatch(/^chorus:/m);
    expect(r.code).toBe(0);
    const id = r.stdout.trim();
    expect(id).toMatch(/^batch_[0-9a-f]{28}$/);
    // Plain progress lines (stderr is not a terminal), the last with every item done; then the summary.
    const progress = r.stderr.split('\n').filter((l) => l.startsWith(`${id}: `));
    expect(progress.length).toBeGreaterThanOrEqual(1);
    expect(progress.at(-1)).toMatch(/^batch_\w+: completed 4\/4 \(100%\): 4 ok, 0 failed, \d+\.\d items\/s$/);
    expect(r.stderr).toMatch(new RegExp(`^${id} completed: 4 completed, 0 failed of 4 in \\S+$`, 'm'));
    expect(r.stderr).not.toContain('\r');

    // custom_ids become safe names inside DIR: no traversal, no hidden file.
    const names = (await readdir(out)).sort();
    expect(names).toEqual(['__.._escape_third.flac', '_hidden.opus', 'first.mp3', 'output.jsonl', 'second.wav']);
    expect((await readdir(dir)).sort()).toEqual(['in.jsonl', 'out']);
    const lines = (await readFile(join(out, 'output.jsonl'), 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l));
    expect(lines.map((l) => l.custom_id).sort()).toEqual(items.map(([c]) => c).sort());
    for (const [name, format] of [['first.mp3', 'mp3'], ['second.wav', 'wav'], ['__.._escape_third.flac', 'flac'], ['_hidden.opus', 'ogg']] as const) {
      const audio = await readFile(join(out, name));
      const l = lines.find((x) => x.response.body.bytes === audio.length);
      expect(l, name).toBeDefined();
      expect((await probe(audio, format)).channels).toBe(1);
      expect(Math.abs((await decodedDuration(audio)) - l.response.body.duration_s), name).toBeLessThan(0.1);
    }

    // The same batch: status --json has the metadata; download --archive writes the zip.
    const [status, archive] = await Promise.all([
      chorus(['batch', 'status', id, '--json']),
      chorus(['batch', 'download', id, '-o', join(dir, 'zip'), '--archive']),
    ]);
    expect([status.code, status.stderr]).toEqual([0, '']);
    expect(JSON.parse(status.stdout)).toMatchObject({ id, status: 'completed', metadata: { run: 'cli', who: 'test' }, request_counts: { total: 4, completed: 4, failed: 0 } });
    expect(archive.code).toBe(0);
    const zip = await readFile(join(dir, 'zip', `${id}.zip`));
    expect(zip.subarray(0, 4).toString('latin1')).toBe('PK\x03\x04');
    expect(await readdir(join(dir, 'zip'))).toEqual([`${id}.zip`]);
  });

  it('an item that fails: exit 3, the item\'s error printed; a malformed file: exit 4, every bad line printed', async ({ expect, onTestFinished }) => {
    const dir = await tempDir(onTestFinished);
    await writeFile(join(dir, 'fails.jsonl'), [line('ok', { input: 'This one is fine.' }), line('too-long', { input: LONG })].join('\n'));
    await writeFile(join(dir, 'bad.jsonl'), [line('ok', { input: 'Fine.' }), '{not json', line('ok', { input: 'Again.' }), line('v', { input: 'x', voice: 'nobody-at-all' })].join('\n'));
    const [fails, bad] = await Promise.all([
      chorus(['batch', 'submit', join(dir, 'fails.jsonl'), '--wait', '--poll', '0.3', '-o', join(dir, 'out')]),
      chorus(['batch', 'submit', join(dir, 'bad.jsonl')]),
    ]);
    expect(fails.stdout.trim()).toMatch(/^batch_\w+$/);
    expect(fails.stderr).toMatch(/ completed: 1 completed, 1 failed of 2 in /);
    expect(fails.stderr).toMatch(/^too-long: audio_too_long: The audio for this input would be longer than the limit of 3 seconds/m);
    expect(fails.stderr).toMatch(/^chorus: batch_\w+: 1 of 2 items failed\n$/m);
    expect(fails.code).toBe(3);
    // What completed is still downloaded, with the error file.
    expect((await readdir(join(dir, 'out'))).sort()).toEqual(['errors.jsonl', 'ok.mp3', 'output.jsonl']);
    expect(await decodedDuration(await readFile(join(dir, 'out', 'ok.mp3')))).toBeGreaterThan(0.5);

    expect(bad.code).toBe(4);
    expect(bad.stdout.trim()).toMatch(/^batch_\w+$/);
    const errs = bad.stderr.trim().split('\n');
    expect(errs).toEqual([
      expect.stringMatching(/^line 2: invalid_json: \S/),
      expect.stringMatching(/^line 3: duplicate_custom_id: \S/),
      expect.stringMatching(/^line 4: invalid_value: Invalid voice/),
      expect.stringMatching(/^chorus: batch_\w+ failed validation: nothing was run$/),
    ]);
  });

  // Cancelled at once: its 30 queued items would otherwise hold up the other tests' items on the one batch lane.
  it('cancel ends a running batch and the waiting submit exits 5; status and list --json show it', async ({ expect, onTestFinished }) => {
    const dir = await tempDir(onTestFinished);
    const input = join(dir, 'many.jsonl');
    await writeFile(input, Array.from({ length: 30 }, (_, i) => line(`m-${i}`, { input: `Item ${i}.` })).join('\n'));
    const waiting = start(['batch', 'submit', input, '--wait', '--poll', '0.3']);
    await waitFor(() => /^batch_\w+\n/.test(waiting.seen()), 60_000, 50);
    const id = waiting.seen().trim();
    const cancel = await chorus(['batch', 'cancel', id]);
    expect(cancel.code).toBe(0);
    expect(cancel.stdout).toMatch(new RegExp(`^${id} (cancelling|cancelled)\\n$`));

    const [r, status, listed] = await Promise.all([waiting.done, chorus(['batch', 'status', id]), chorus(['batch', 'list', '--json', '--limit', '100'])]);
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(new RegExp(`^chorus: ${id} was cancelled \\(\\d+ of 30 items completed\\)\\n$`, 'm'));
    expect(r.stderr).toMatch(new RegExp(`^${id}: cancelled `, 'm'));
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(new RegExp(`^${id} (cancelling|cancelled) \\d+/30 \\(\\d+%\\): \\d+ ok, 0 failed( output file-\\S+)?\\n$`));
    expect(listed.code).toBe(0);
    const page = JSON.parse(listed.stdout);
    expect(page).toMatchObject({ object: 'list', has_more: false });
    expect(page.data.map((b: { id: string }) => b.id)).toContain(id);
  });

  it('download of an unknown batch: one line, exit 1, nothing written', async ({ expect, onTestFinished }) => {
    const dir = await tempDir(onTestFinished);
    const r = await chorus(['batch', 'download', 'batch_0000000000000000000000000000', '-o', join(dir, 'x')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^chorus: 404 \S+ \(batch_id\): No such Batch object: batch_0+\n$/);
    expect(await readdir(dir)).toEqual([]);
  });
});
