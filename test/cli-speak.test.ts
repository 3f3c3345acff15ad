import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, inject, it } from 'vitest';
import { decodedDuration, probe } from './helpers/audio.ts';
import { waitFor } from './helpers/processes.ts';
import { ROOT, startStack, type Stack } from './helpers/stack.ts';

/*
 * `chorus speak` as a real subprocess (node + tsx) against the real stack: API in-process, one worker process,
 * espeak-ng and ffmpeg. One keyed stack serves every test; the tests run concurrently (each CLI run costs ~1 CPU-s
 * of start-up). MAX_AUDIO_SECONDS=2 gives a stream that breaks off after its first bytes; the texts of the other
 * tests stay well under 2 s of audio. Two tiny local HTTP servers stand in for what the stack cannot be: a proxy's
 * HTML error page, and a response that never ends (to interrupt mid-stream).
 */

const BIN = join(ROOT, 'apps/cli/bin/chorus.js');
const KEY = 'sk-cli-speak';
const LIMIT_S = 2;
// ~20 s of speech: its pcm stream starts, then is cut at the limit (see audio-limit.test.ts).
const LONG = 'This sentence is repeated until the audio is far longer than the limit allows. '.repeat(20);

interface Run {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ redisUrl: inject('redisUrl'), apiEnv: { API_KEYS: KEY, MAX_AUDIO_SECONDS: String(LIMIT_S) } });
});
afterAll(async () => {
  await stack?.stop();
});

/** The stack's base URL and key in the OpenAI SDK's variables, unless the test says otherwise. */
function chorus(args: string[], opts: { env?: Record<string, string | undefined>; stdin?: string; cwd?: string } = {}): Promise<Run> {
  const env: Record<string, string | undefined> = { ...process.env, OPENAI_BASE_URL: `${stack.baseUrl}/v1`, OPENAI_API_KEY: KEY, ...opts.env };
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: opts.cwd ?? ROOT,
    env,
    stdio: [opts.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  if (opts.stdin !== undefined) child.stdin!.end(opts.stdin);
  const out: Buffer[] = [];
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => out.push(d));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out), stderr });
    });
  });
}

async function tempDir(onTestFinished: (fn: () => Promise<void>) => void): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'chorus-speak-'));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A port nothing listens on: bound by the kernel's choice, then released. */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as { port: number };
  await new Promise((r) => srv.close(r));
  return port;
}

describe.concurrent('chorus speak', { timeout: 120_000 }, () => {
  it('writes a decodable mp3 to the file; --verbose names the engine on stderr', async ({ expect, onTestFinished }) => {
    const dir = await tempDir(onTestFinished);
    const file = join(dir, 'hello.mp3');
    const r = await chorus(['speak', 'Hello from the command line.', '-v', 'alloy', '-m', 'tts-1', '-o', file, '--verbose']);
    expect(r.code).toBe(0);
    const audio = await readFile(file);
    expect((await probe(audio, 'mp3')).codec).toBe('mp3');
    expect(await decodedDuration(audio)).toBeGreaterThan(0.5);
    expect(r.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(/^chorus: engine espeak, job tts_\w+, request req_\w+, mp3$/),
      expect.stringMatching(/^chorus: \d+ bytes to \S+hello\.mp3 in \d+\.\d\d s$/),
    ]);
    expect(r.stderr).toContain(`${audio.length} bytes`);
    expect(await readdir(dir)).toEqual(['hello.mp3']); // the .part became the file
  });

  it('-o - writes the audio to stdout (mp3 by default); --base-url and --api-key win over the environment', async ({ expect }) => {
    const r = await chorus(['speak', 'Straight to standard output.', '-o', '-', '--base-url', `${stack.baseUrl}/v1`, '--api-key', KEY], {
      env: { OPENAI_BASE_URL: `http://127.0.0.1:${await closedPort()}/v1`, OPENAI_API_KEY: 'sk-wrong' },
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect((await probe(r.stdout, 'mp3')).codec).toBe('mp3');
    expect(await decodedDuration(r.stdout)).toBeGreaterThan(0.5);
  });

  it('reads the text from stdin when it is absent or "-"; the format follows the extension (wav: 24 kHz)', async ({ expect, onTestFinished }) => {
    const dir = await tempDir(onTestFinished);
    const [absent, dash] = await Promise.all([
      chorus(['speak', '-o', join(dir, 'piped.wav')], { stdin: 'Hello from standard input.\n' }),
      chorus(['speak', '-', '-o', join(dir, 'dash.flac')], { stdin: 'And from a dash.' }),
    ]);
    expect(absent.stderr).toBe('');
    expect(absent.code).toBe(0);
    const wav = await readFile(join(dir, 'piped.wav'));
    expect(await probe(wav, 'wav')).toMatchObject({ codec: 'pcm_s16le', sampleRate: 24_000, channels: 1 });
    expect(await decodedDuration(wav)).toBeGreaterThan(0.8);

    expect([dash.code, dash.stderr]).toEqual([0, '']);
    expect((await probe(await readFile(join(dir, 'dash.flac')), 'flac')).codec).toBe('flac');
  });

  it('-f wins over the extension', async ({ expect, onTestFinished }) => {
    const dir = await tempDir(onTestFinished);
    const r = await chorus(['speak', 'Forced wav.', '-f', 'wav', '-o', join(dir, 'b.mp3')]);
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect((await probe(await readFile(join(dir, 'b.mp3')), 'wav')).codec).toBe('pcm_s16le');
  });

  it('a bad voice: non-zero exit, one line with status, code, param and message, no output file', async ({ expect, onTestFinished }) => {
    const dir = await tempDir(onTestFinished);
    const r = await chorus(['speak', 'Nobody speaks this.', '-v', 'nosuchvoice', '-o', join(dir, 'x.mp3')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^chorus: 400 invalid_value \(voice\): Invalid voice 'nosuchvoice'.*\n$/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(await readdir(dir)).toEqual([]);
  });

  it('an unreachable server, or one that is not the API: non-zero exit, one line naming the URL', async ({ expect, onTestFinished }) => {
    const dir = await tempDir(onTestFinished);
    const port = await closedPort();
    // A proxy's error page: HTML, no envelope.
    const proxy = createHttpServer((_req, res) => res.writeHead(502, { 'content-type': 'text/html' }).end('<html>\n<h1>502 Bad Gateway</h1>\n</html>'));
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    onTestFinished(() => new Promise((r) => proxy.close(() => r())));
    const proxyUrl = `http://127.0.0.1:${(proxy.address() as { port: number }).port}/v1`;
    const [refused, html] = await Promise.all([
      chorus(['speak', 'Anyone there?', '-o', join(dir, 'x.mp3'), '--retries', '0'], { env: { OPENAI_BASE_URL: `http://127.0.0.1:${port}/v1` } }),
      chorus(['speak', 'Anyone there?', '-o', join(dir, 'y.mp3'), '--retries', '0', '--base-url', proxyUrl]),
    ]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe(`chorus: cannot reach http://127.0.0.1:${port}/v1: connect ECONNREFUSED 127.0.0.1:${port}\n`);
    expect(html.code).toBe(1);
    expect(html.stderr).toBe(`chorus: 502 from ${proxyUrl}, not an API error (a proxy? wrong URL?): 502 <html> <h1>502 Bad Gateway</h1> </html>\n`);
    expect(await readdir(dir)).toEqual([]);
  });

  // With the key in OPENAI_API_KEY every other test here gets audio from this keyed stack.
  it('without OPENAI_API_KEY: 401, and no Authorization header at all (not a placeholder key)', async ({ expect, onTestFinished }) => {
    const dir = await tempDir(onTestFinished);
    const r = await chorus(['speak', 'Keyless.', '-o', join(dir, 'none.mp3')], { env: { OPENAI_API_KEY: undefined } });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('chorus: 401 invalid_api_key: You did not provide an API key (Authorization: Bearer <key>).\n');
    expect(await readdir(dir)).toEqual([]);
  });

  it('a stream that breaks off mid-audio: non-zero exit, one line, neither the file nor its .part is left', async ({ expect, onTestFinished }) => {
    const dir = await tempDir(onTestFinished);
    const r = await chorus(['speak', LONG, '-o', join(dir, 'long.pcm'), '--retries', '0']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^chorus: the audio stream broke off after [1-9]\d* bytes \(the server closed the connection\); .*long\.pcm not written\n$/);
    expect(await readdir(dir)).toEqual([]);
  });

  it('Ctrl-C mid-stream: exit 130, and neither the file nor its .part is left', async ({ expect, onTestFinished }) => {
    const dir = await tempDir(onTestFinished);
    // A server that starts an audio response and never finishes it: the run is mid-stream for as long as we like.
    const hang = createHttpServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'audio/mpeg' });
      res.write(Buffer.alloc(4096, 0xff));
    });
    await new Promise<void>((r) => hang.listen(0, '127.0.0.1', r));
    onTestFinished(() => new Promise((r) => { hang.closeAllConnections(); hang.close(() => r()); }));
    const url = `http://127.0.0.1:${(hang.address() as { port: number }).port}/v1`;
    const out = join(dir, 'x.mp3');
    const child = spawn(process.execPath, [BIN, 'speak', 'Interrupted.', '-o', out, '--base-url', url], { cwd: ROOT, stdio: 'ignore' });
    const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
    const partSeen = await waitFor(async () => (await readdir(dir)).includes('x.mp3.part'), 60_000, 50);
    child.kill('SIGINT');
    expect(partSeen).toBeGreaterThanOrEqual(0);
    expect(await exited).toBe(130);
    expect(await readdir(dir)).toEqual([]);
  });

  it('-o is required (audio never goes to a terminal by default): one usage line', async ({ expect }) => {
    const r = await chorus(['speak', 'x']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toBe("error: required option '-o, --output <file>' not specified\n");
  });
});
