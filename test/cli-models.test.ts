import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { startFakeHub } from './helpers/fake-hub.ts';

/*
 * `chorus models` as a real subprocess against a local server in the Hugging Face hub's URL layout (fake-hub.ts).
 * The files are random bytes and valid JSON configs; the worker's own tests check that models load.
 */

const ROOT = join(import.meta.dirname, '..');
const BIN = join(ROOT, 'apps/cli/bin/chorus.js');
const PIPER = 'rhasspy/piper-voices';
const KOKORO = 'onnx-community/Kokoro-82M-v1.0-ONNX';
const DEFAULT_VOICES = ['af_heart', 'af_alloy', 'af_bella', 'af_nova', 'af_sky', 'am_echo', 'am_michael', 'am_onyx', 'bf_emma', 'bm_george'];

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function chorus(args: string[], env: Record<string, string | undefined> = {}, cmd?: string[]): Promise<Run> {
  const base = { ...process.env };
  delete base.HF_TOKEN;
  delete base.MODELS_DIR;
  const [file, argv] = cmd ? [cmd[0]!, cmd.slice(1)] : [process.execPath, [BIN, ...args]];
  const child = spawn(file, argv, { cwd: ROOT, env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 150_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The CLI's error is its last stderr line (progress lines come before it). */
const lastLine = (s: string) => s.trim().split('\n').at(-1);
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
/**
 * A file's bytes as size + sha256, for `expect(content(got)).toEqual(content(want))`: the same exact-content check as
 * toEqual on the Buffers, which walks them element by element (about 5 s of CPU per MB, most of this file's time).
 */
const content = (b: Buffer) => ({ size: b.length, sha256: sha256(b) });

function piperConfig(sampleRate: number): Buffer {
  const phonemes = ['_', '^', '$', ' ', 'a', 'b', 'd', 'e', 'h', 'l', 'o', 'ə', 'ɪ'];
  return Buffer.from(
    JSON.stringify({
      audio: { sample_rate: sampleRate, quality: 'medium' },
      espeak: { voice: 'en-us' },
      inference: { noise_scale: 0.667, length_scale: 1, noise_w: 0.8 },
      phoneme_type: 'espeak',
      phoneme_map: {},
      phoneme_id_map: Object.fromEntries(phonemes.map((p, i) => [p, [i]])),
      num_speakers: 1,
      speaker_id_map: {},
    }),
  );
}

function piperVoice(voice: string, dir: string, modelBytes: number) {
  return { voice, dir, onnx: randomBytes(modelBytes), json: piperConfig(22050), onnxPath: `${PIPER}/${dir}/${voice}.onnx` };
}

/** Fixture data, made once; every test gets its own hub (tests run concurrently) and its own MODELS_DIR. */
const lessac = piperVoice('en_US-lessac-medium', 'en/en_US/lessac/medium', 1_500_000);
const thorsten = piperVoice('de_DE-thorsten-low', 'de/de_DE/thorsten/low', 600_000);
const ryan = piperVoice('en_US-ryan-high', 'en/en_US/ryan/high', 300_000);
const kokoro = new Map<string, Buffer>();
{
  const vocab = Object.fromEntries(['$', ';', ':', ',', '.', '!', '?', ' ', 'a', 'b', 'ə', 'ɪ'].map((s, i) => [s, i]));
  kokoro.set('onnx/model.onnx', randomBytes(800_000));
  kokoro.set('config.json', Buffer.from(JSON.stringify({ n_token: 178, vocab })));
  kokoro.set('tokenizer.json', Buffer.from(JSON.stringify({ model: { type: 'WordLevel', vocab } })));
  for (const v of [...DEFAULT_VOICES, 'zf_xiaobei']) kokoro.set(`voices/${v}.bin`, randomBytes(4096));
}

type Manifest = {
  files: Record<string, { size: number; sha256: string; repo: string; revision: string; path: string; commit?: string }>;
};

async function fixture(onTestFinished: (fn: () => Promise<void>) => void) {
  const hub = await startFakeHub();
  for (const v of [lessac, thorsten, ryan]) {
    hub.add(PIPER, `${v.dir}/${v.voice}.onnx`, v.onnx, { lfs: true });
    hub.add(PIPER, `${v.dir}/${v.voice}.onnx.json`, v.json, { lfs: false });
  }
  for (const [path, data] of kokoro) hub.add(KOKORO, path, data, { lfs: !path.endsWith('.json') });
  const dir = await mkdtemp(join(tmpdir(), 'chorus-models-'));
  onTestFinished(async () => {
    await hub.close();
    await rm(dir, { recursive: true, force: true });
  });
  return {
    hub,
    dir,
    env: () => ({ HF_ENDPOINT: hub.endpoint, MODELS_DIR: dir }),
    manifest: async () => JSON.parse(await readFile(join(dir, '.chorus-manifest.json'), 'utf8')) as Manifest,
  };
}

// Each run is a fresh node + tsx process (~1 CPU-second): generous timeouts for a busy 2-core machine.
describe.concurrent('chorus models pull', { timeout: 180_000 }, () => {
  it('downloads a Piper voice into MODELS_DIR/piper, through the CDN redirect, with a manifest and plain progress lines', async ({ expect, onTestFinished }) => {
    const { hub, dir, env, manifest } = await fixture(onTestFinished);
    const r = await chorus(['models', 'pull', 'piper:en_US-lessac-medium'], env());
    expect(r.stderr).not.toContain('chorus:');
    expect(r.code).toBe(0);
    expect(content(await readFile(join(dir, 'piper/en_US-lessac-medium.onnx')))).toEqual(content(lessac.onnx));
    expect(content(await readFile(join(dir, 'piper/en_US-lessac-medium.onnx.json')))).toEqual(content(lessac.json));
    expect((await readdir(join(dir, 'piper'))).sort()).toEqual(['en_US-lessac-medium.onnx', 'en_US-lessac-medium.onnx.json']);

    const m = await manifest();
    expect(m.files['piper/en_US-lessac-medium.onnx']).toMatchObject({
      size: 1_500_000,
      sha256: sha256(lessac.onnx),
      repo: PIPER,
      revision: 'main',
      path: 'en/en_US/lessac/medium/en_US-lessac-medium.onnx',
      commit: 'c0ffee0000000000000000000000000000000001',
    });
    expect(m.files['piper/en_US-lessac-medium.onnx.json']).toMatchObject({ size: lessac.json.length, sha256: sha256(lessac.json) });

    // The model's bytes came from the CDN server; the config (a git file) straight from the hub.
    expect(hub.requests.some((q) => q.server === 'cdn' && q.method === 'GET')).toBe(true);
    expect(hub.requests.some((q) => q.server === 'hub' && q.method === 'GET' && q.url.endsWith('.onnx.json'))).toBe(true);
    // Not a terminal: plain lines with percentages, rate and ETA; no bar redraws.
    expect(r.stderr).toMatch(/piper\/en_US-lessac-medium\.onnx: \d+% [\d.]+ [kM]B\/1\.5 MB [\d.]+ [kM]?B\/s ETA [\d.]+s\n/);
    expect(r.stderr).toMatch(/piper\/en_US-lessac-medium\.onnx: done, 1\.5 MB .*sha256 verified/);
    expect(r.stderr).toMatch(/piper\/en_US-lessac-medium\.onnx\.json: done, .*git-sha1 verified/);
    expect(r.stderr).not.toMatch(/[\r\x1b]/);
    expect(r.stdout).toContain('pulled piper:en_US-lessac-medium: 2 files');

    // Again: nothing downloaded, the checksums already match.
    hub.requests.length = 0;
    const again = await chorus(['models', 'pull', 'piper:en_US-lessac-medium'], env());
    expect(again.code).toBe(0);
    expect(again.stderr).toContain('up to date');
    expect(hub.requests.filter((q) => q.method === 'GET')).toEqual([]);
  });

  it('resumes with a Range request after the server drops the connection mid-file', async ({ expect, onTestFinished }) => {
    const { hub, dir, env } = await fixture(onTestFinished);
    hub.dropAfter.set(lessac.onnxPath, 400_000);
    const r = await chorus(['models', 'pull', 'piper:en_US-lessac-medium'], env());
    expect(r.stderr).not.toContain('chorus:');
    expect(r.code).toBe(0);
    const gets = hub.requests.filter((q) => q.server === 'cdn' && q.method === 'GET');
    expect(gets).toHaveLength(2);
    expect(gets[0]!.range).toBeUndefined();
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(gets[1]!.range ?? '')?.[1]);
    expect(resumedAt).toBeGreaterThan(0);
    expect(resumedAt).toBeLessThanOrEqual(400_000);
    expect(r.stderr).toMatch(/connection lost at .*retrying in/);
    expect(r.stderr).toMatch(/resuming at/);
    expect(content(await readFile(join(dir, 'piper/en_US-lessac-medium.onnx')))).toEqual(content(lessac.onnx));
    expect(existsSync(join(dir, 'piper/en_US-lessac-medium.onnx.part'))).toBe(false);
  });

  it('keeps the partial file when a run gives up, and the next run resumes it', async ({ expect, onTestFinished }) => {
    const { hub, dir, env } = await fixture(onTestFinished);
    hub.dropAfter.set(thorsten.onnxPath, 250_000);
    const first = await chorus(['models', 'pull', 'piper:de_DE-thorsten-low', '--retries', '0'], env());
    expect(first.code).toBe(1);
    expect(first.stderr.trim().split('\n').at(-1)).toMatch(/^chorus: piper\/de_DE-thorsten-low\.onnx: connection lost .*run pull again to resume/);
    expect(existsSync(join(dir, 'piper/de_DE-thorsten-low.onnx'))).toBe(false);
    const part = await stat(join(dir, 'piper/de_DE-thorsten-low.onnx.part'));
    expect(part.size).toBeGreaterThan(0);

    hub.requests.length = 0;
    const second = await chorus(['models', 'pull', 'piper:de_DE-thorsten-low'], env());
    expect(second.code).toBe(0);
    const gets = hub.requests.filter((q) => q.server === 'cdn' && q.method === 'GET');
    expect(gets.map((q) => q.range)).toEqual([`bytes=${part.size}-`]);
    expect(content(await readFile(join(dir, 'piper/de_DE-thorsten-low.onnx')))).toEqual(content(thorsten.onnx));
  });

  it('starts over when the server ignores Range and answers 200', async ({ expect, onTestFinished }) => {
    const { hub, dir, env } = await fixture(onTestFinished);
    hub.dropAfter.set(thorsten.onnxPath, 250_000);
    hub.ignoreRange = true;
    const r = await chorus(['models', 'pull', 'piper:de_DE-thorsten-low'], env());
    expect(r.code).toBe(0);
    const gets = hub.requests.filter((q) => q.server === 'cdn' && q.method === 'GET');
    expect(gets).toHaveLength(2);
    expect(gets[1]!.range).toMatch(/^bytes=\d+-$/);
    expect(r.stderr).toContain('ignored the Range request');
    expect(content(await readFile(join(dir, 'piper/de_DE-thorsten-low.onnx')))).toEqual(content(thorsten.onnx));
  });

  it('refuses a file whose checksum does not match the published one: non-zero exit, no final file, partial removed', async ({ expect, onTestFinished }) => {
    const { hub, dir, env } = await fixture(onTestFinished);
    hub.corrupt.add(ryan.onnxPath);
    const r = await chorus(['models', 'pull', 'piper:en_US-ryan-high'], env());
    expect(r.code).toBe(1);
    expect(lastLine(r.stderr)).toMatch(/^chorus: piper\/en_US-ryan-high\.onnx: checksum mismatch: the hub publishes sha256 [0-9a-f]{64}, .*refused, partial file removed$/);
    expect(existsSync(join(dir, 'piper/en_US-ryan-high.onnx'))).toBe(false);
    expect(existsSync(join(dir, 'piper/en_US-ryan-high.onnx.part'))).toBe(false);
    expect((await readdir(join(dir, 'piper'))).filter((f) => f.startsWith('en_US-ryan'))).toEqual([]);
  });

  it('sends HF_TOKEN to the hub only (not to the CDN), and says to set it on 401', async ({ expect, onTestFinished }) => {
    const { hub, dir, env } = await fixture(onTestFinished);
    hub.requireToken = 'hf_test_secret';
    const without = await chorus(['models', 'pull', 'piper:en_US-ryan-high'], env());
    expect(without.code).toBe(1);
    expect(lastLine(without.stderr)).toMatch(/^chorus: rhasspy\/piper-voices@main: authentication required \(401\); set HF_TOKEN/);

    hub.requests.length = 0;
    const r = await chorus(['models', 'pull', 'piper:en_US-ryan-high'], { ...env(), HF_TOKEN: 'hf_test_secret' });
    expect(r.code).toBe(0);
    const hubReqs = hub.requests.filter((q) => q.server === 'hub');
    const cdnReqs = hub.requests.filter((q) => q.server === 'cdn');
    expect(hubReqs.length).toBeGreaterThan(0);
    expect(cdnReqs.length).toBeGreaterThan(0);
    expect(hubReqs.every((q) => q.authorization === 'Bearer hf_test_secret')).toBe(true);
    expect(cdnReqs.every((q) => q.authorization === undefined)).toBe(true);
    expect(content(await readFile(join(dir, 'piper/en_US-ryan-high.onnx')))).toEqual(content(ryan.onnx));
  });

  it('names what is missing on 404, and rejects unknown names and revisions in one line', async ({ expect, onTestFinished }) => {
    const { dir, env } = await fixture(onTestFinished);
    const [missing, rev, unknown] = await Promise.all([
      chorus(['models', 'pull', 'piper:fr_FR-nobody-medium'], env()),
      chorus(['models', 'pull', 'piper:en_US-ryan-high', '--revision', 'v9'], env()),
      chorus(['models', 'pull', 'whisper'], env()),
    ]);
    for (const r of [missing, rev, unknown]) expect(r.code).toBe(1);
    expect(lastLine(missing.stderr)).toBe(
      'chorus: no such file in repo rhasspy/piper-voices@main: fr/fr_FR/nobody/medium/fr_FR-nobody-medium.onnx',
    );
    expect(lastLine(rev.stderr)).toBe('chorus: no revision "v9" in repo rhasspy/piper-voices');
    expect(unknown.stderr.trim()).toMatch(/^chorus: unknown model "whisper": expected piper:<voice>/);
    expect(existsSync(join(dir, 'piper'))).toBe(false);
  });

  it('pulls the Kokoro model folder with its default voices, and one more voice by name', async ({ expect, onTestFinished }) => {
    const { hub, dir, env, manifest } = await fixture(onTestFinished);
    hub.redirectLfs = false; // LFS files served by the hub itself: X-Linked-Etag still carries the sha256
    const r = await chorus(['models', 'pull', 'kokoro'], env());
    expect(r.stderr).not.toContain('chorus:');
    expect(r.code).toBe(0);
    for (const [path, data] of kokoro) {
      if (path === 'voices/zf_xiaobei.bin') continue;
      expect(content(await readFile(join(dir, 'kokoro', path)))).toEqual(content(data));
    }
    expect((await readdir(join(dir, 'kokoro/voices'))).sort()).toEqual(DEFAULT_VOICES.map((v) => `${v}.bin`).sort());
    expect(JSON.parse(await readFile(join(dir, 'kokoro/config.json'), 'utf8')).vocab).toBeTypeOf('object');

    const one = await chorus(['models', 'pull', 'kokoro:zf_xiaobei'], env());
    expect(one.code).toBe(0);
    expect(content(await readFile(join(dir, 'kokoro/voices/zf_xiaobei.bin')))).toEqual(content(kokoro.get('voices/zf_xiaobei.bin')!));
    expect(Object.keys((await manifest()).files)).toHaveLength(3 + DEFAULT_VOICES.length + 1);

    const list = await chorus(['models', 'list'], env());
    expect(list.stdout).toMatch(/kokoro {2}model 800 kB, 11 voices: af_alloy, af_bella, /);

    // rm one voice, then the whole model folder.
    expect((await chorus(['models', 'rm', 'kokoro:zf_xiaobei'], env())).code).toBe(0);
    expect(existsSync(join(dir, 'kokoro/voices/zf_xiaobei.bin'))).toBe(false);
    expect(existsSync(join(dir, 'kokoro/voices/af_bella.bin'))).toBe(true);
    const rmAll = await chorus(['models', 'rm', 'kokoro'], env());
    expect(rmAll.stdout).toContain(`removed kokoro: ${3 + DEFAULT_VOICES.length} files`);
    expect(existsSync(join(dir, 'kokoro'))).toBe(false);
    expect((await manifest()).files).toEqual({});
  });

  it.skipIf(!existsSync('/usr/bin/script'))('draws a progress bar with bytes, rate and ETA on a terminal', async ({ expect, onTestFinished }) => {
    const { dir, env } = await fixture(onTestFinished);
    // script(1) gives the CLI a pseudo-terminal; the arguments are fixed strings, not user input.
    const cmd = `${process.execPath} ${BIN} models pull piper:en_US-lessac-medium`;
    const r = await chorus([], env(), ['/usr/bin/script', '-qefc', cmd, '/dev/null']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/piper\/en_US-lessac-medium\.onnx +\|[\u2588\u2591]+\| 100% 1\.5 MB\/1\.5 MB .*\/s ETA/);
    expect(content(await readFile(join(dir, 'piper/en_US-lessac-medium.onnx')))).toEqual(content(lessac.onnx));
  });
});

describe.concurrent('chorus models list / verify / rm', { timeout: 180_000 }, () => {
  /** A MODELS_DIR as one pull left it, copied for each test. */
  let pulled: string;
  beforeAll(async () => {
    const hub = await startFakeHub();
    hub.add(PIPER, `${ryan.dir}/${ryan.voice}.onnx`, ryan.onnx, { lfs: true });
    hub.add(PIPER, `${ryan.dir}/${ryan.voice}.onnx.json`, ryan.json, { lfs: false });
    pulled = await mkdtemp(join(tmpdir(), 'chorus-models-pulled-'));
    const r = await chorus(['models', 'pull', 'piper:en_US-ryan-high'], { HF_ENDPOINT: hub.endpoint, MODELS_DIR: pulled });
    await hub.close();
    expect(r.code).toBe(0);
    return () => rm(pulled, { recursive: true, force: true });
  }, 180_000);
  async function pulledDir(onTestFinished: (fn: () => Promise<void>) => void) {
    const dir = await mkdtemp(join(tmpdir(), 'chorus-models-'));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    await cp(pulled, dir, { recursive: true });
    return { dir, env: () => ({ MODELS_DIR: dir }) };
  }

  it('list shows each voice with sizes and sha256, notes files not in the manifest, and has --json', async ({ expect, onTestFinished }) => {
    const { dir, env } = await pulledDir(onTestFinished);
    await writeFile(join(dir, 'piper/en_GB-extra-low.onnx'), Buffer.from('stray'));
    await writeFile(join(dir, 'piper/en_US-amy-low.onnx.part'), randomBytes(1234));
    const [r, j] = await Promise.all([
      chorus(['models', 'list', '--models-dir', dir]),
      chorus(['models', 'list', '--json'], env()),
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`models in ${dir}`);
    expect(r.stdout).toMatch(/piper:en_US-ryan-high {2}300 kB\n/);
    expect(r.stdout).toMatch(new RegExp(`piper/en_US-ryan-high\\.onnx +300 kB {2}sha256 ${sha256(ryan.onnx)}\\n`));
    expect(r.stdout).toContain(`sha256 ${sha256(ryan.json)}`);
    expect(r.stdout).toMatch(/piper:en_GB-extra-low .*incomplete: no en_GB-extra-low\.onnx\.json/);
    expect(r.stdout).toContain(`sha256 ${sha256(Buffer.from('stray'))}  (not in manifest)`);
    expect(r.stdout).toContain('partial download: piper/en_US-amy-low.onnx.part (1.2 kB; pull again to resume)');

    const inv = JSON.parse(j.stdout) as { piper: { voice: string; files: { path: string; size: number; sha256: string; inManifest: boolean }[] }[] };
    const ryanEntry = inv.piper.find((v) => v.voice === 'en_US-ryan-high');
    expect(ryanEntry?.files).toEqual([
      expect.objectContaining({ path: 'piper/en_US-ryan-high.onnx', size: 300_000, sha256: sha256(ryan.onnx), inManifest: true }),
      expect.objectContaining({ path: 'piper/en_US-ryan-high.onnx.json', size: ryan.json.length, sha256: sha256(ryan.json) }),
    ]);
  });

  it('verify passes on intact files and fails (non-zero) on a corrupted or missing one', async ({ expect, onTestFinished }) => {
    const { dir, env } = await pulledDir(onTestFinished);
    const ok = await chorus(['models', 'verify'], env());
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain('2 ok, 0 mismatched, 0 missing');

    const model = join(dir, 'piper/en_US-ryan-high.onnx');
    const bytes = await readFile(model);
    bytes[1000] = bytes[1000]! ^ 1; // same size, one bit off
    await writeFile(model, bytes);
    await rm(join(dir, 'piper/en_US-ryan-high.onnx.json'));
    const bad = await chorus(['models', 'verify'], env());
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(new RegExp(`MISMATCH +piper/en_US-ryan-high\\.onnx: sha256 ${sha256(bytes)}, manifest ${sha256(ryan.onnx)}`));
    expect(bad.stdout).toMatch(/MISSING +piper\/en_US-ryan-high\.onnx\.json/);
    expect(bad.stderr.trim()).toMatch(/^chorus: verify failed in .*: 1 mismatched, 1 missing$/);
  });

  it('rm removes the voice files and their manifest entries; a second rm fails', async ({ expect, onTestFinished }) => {
    const { dir, env } = await pulledDir(onTestFinished);
    const r = await chorus(['models', 'rm', 'piper:en_US-ryan-high'], env());
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('removed piper:en_US-ryan-high: 2 files');
    expect(existsSync(join(dir, 'piper'))).toBe(false);
    expect(JSON.parse(await readFile(join(dir, '.chorus-manifest.json'), 'utf8'))).toEqual({ version: 1, files: {} });
    const again = await chorus(['models', 'rm', 'piper:en_US-ryan-high'], env());
    expect(again.code).toBe(1);
    expect(again.stderr.trim()).toBe(`chorus: piper:en_US-ryan-high is not installed in ${dir}`);
  });
});
