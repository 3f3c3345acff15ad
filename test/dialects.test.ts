import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { EventSourceMessage } from 'eventsource-parser';
import { parseSse, readSomeSse } from './helpers/sse.ts';
import { startStack, postJson, type Stack } from './helpers/stack.ts';
import { decodedDuration, probe } from './helpers/audio.ts';

const TEXT =
  'Both dialects ride one job pipeline. They differ only in how the relay frames the bytes, ' +
  'so every client hears exactly the same audio, whichever door it came in through.';
const LONG = 'This sentence is repeated to make many chunks of audio for the resume test. '.repeat(25);

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ redisUrl: inject('redisUrl') });
});
afterAll(async () => {
  await stack?.stop();
});

/** Reads a whole SSE response with eventsource-parser; also returns the raw text. */
async function readSse(res: Response): Promise<{ events: EventSourceMessage[]; text: string }> {
  const text = await res.text();
  return { events: parseSse(text), text };
}


function sameWavModuloSizes(a: Buffer, b: Buffer): boolean {
  const norm = (x: Buffer) => {
    const c = Buffer.from(x);
    c.writeUInt32LE(0, 4);
    c.writeUInt32LE(0, 40);
    return c;
  };
  return norm(a).equals(norm(b));
}

async function raw(format: string) {
  const res = await stack.client.audio.speech.create({ model: 'tts-1', voice: 'nova', input: TEXT, response_format: format as 'mp3' });
  return Buffer.from(await res.arrayBuffer());
}

async function openaiSse(format: string) {
  const res = await postJson(stack, '/v1/audio/speech', {
    model: 'tts-1', voice: 'nova', input: TEXT, response_format: format, stream_format: 'sse',
  });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
  expect(res.headers.get('cache-control')).toBe('no-store');
  const { events, text } = await readSse(res);
  return { res, events, text };
}

async function legacyStream(format: string) {
  const res = await postJson(stack, '/api/generate_tts/stream', { text: TEXT, speaker: 'nova', format });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
  return readSse(res);
}

async function legacyFile(format: string) {
  const res = await postJson(stack, '/api/generate_tts', { text: TEXT, speaker: 'nova', format });
  expect(res.status).toBe(200);
  return { res, audio: Buffer.from(await res.arrayBuffer()) };
}

describe('OpenAI SSE (stream_format: "sse")', () => {
  it('has only data: lines — deltas, done with usage, [DONE] — and decodes to the raw bytes', async () => {
    const { events, text } = await openaiSse('mp3');
    for (const line of text.split('\n')) expect(line === '' || line.startsWith('data: ')).toBe(true);
    const payloads = events.map((e) => e.data);
    expect(payloads.at(-1)).toBe('[DONE]');
    const json = payloads.slice(0, -1).map((d) => JSON.parse(d) as { type: string; audio?: string; usage?: Record<string, number> });
    const deltas = json.filter((j) => j.type === 'speech.audio.delta');
    const done = json.at(-1)!;
    expect(deltas.length).toBeGreaterThan(0);
    expect(json.slice(0, -1).every((j) => j.type === 'speech.audio.delta')).toBe(true);
    expect(done.type).toBe('speech.audio.done');
    const audio = Buffer.concat(deltas.map((d) => Buffer.from(d.audio!, 'base64')));
    expect(audio.equals(await raw('mp3'))).toBe(true);
    const seconds = await decodedDuration(audio);
    expect(done.usage!.input_tokens).toBe(TEXT.length);
    expect(Math.abs(done.usage!.output_tokens! - seconds / 0.02)).toBeLessThan(10);
    expect(done.usage!.total_tokens).toBe(done.usage!.input_tokens! + done.usage!.output_tokens!);
  });

  it('is chosen from the body, never from Accept', async () => {
    const res = await postJson(stack, '/v1/audio/speech', { model: 'tts-1', voice: 'nova', input: 'Hi.' }, { accept: 'text/event-stream' });
    expect(res.headers.get('content-type')).toBe('audio/mpeg');
    expect((await probe(Buffer.from(await res.arrayBuffer()), 'mp3')).codec).toBe('mp3');
  });

  it('a request that fails validation gets a plain 400 JSON error, not a stream', async () => {
    const res = await postJson(stack, '/v1/audio/speech', { model: 'tts-1', voice: 'nobody', input: 'Hi.', stream_format: 'sse' });
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(((await res.json()) as { error: { param: string } }).error.param).toBe('voice');
  });
});

describe('one pipeline, four framings: byte for byte the same audio', () => {
  for (const format of ['mp3', 'wav', 'opus', 'pcm']) {
    it(`${format}: raw == OpenAI SSE deltas == legacy SSE chunks == legacy whole file`, async () => {
      const rawBytes = await raw(format);
      const sse = await openaiSse(format);
      const sseBytes = Buffer.concat(
        sse.events
          .map((e) => e.data)
          .filter((d) => d !== '[DONE]')
          .map((d) => JSON.parse(d) as { type: string; audio?: string })
          .filter((j) => j.type === 'speech.audio.delta')
          .map((j) => Buffer.from(j.audio!, 'base64')),
      );
      const legacy = await legacyStream(format);
      const legacyBytes = Buffer.concat(
        legacy.events
          .map((e) => JSON.parse(e.data) as { type: string; audio?: string })
          .filter((j) => j.type === 'audio')
          .map((j) => Buffer.from(j.audio!, 'base64')),
      );
      const file = await legacyFile(format);
      expect(rawBytes.length).toBeGreaterThan(1000);
      expect(sseBytes.equals(rawBytes)).toBe(true);
      expect(legacyBytes.equals(rawBytes)).toBe(true);
      if (format === 'wav') {
        expect(file.audio.equals(rawBytes)).toBe(false); // exact sizes in the whole file...
        expect(sameWavModuloSizes(file.audio, rawBytes)).toBe(true); // ...and nothing else differs
        expect(file.audio.readUInt32LE(40)).toBe(file.audio.length - 44);
      } else {
        expect(file.audio.equals(rawBytes)).toBe(true);
      }
    });
  }
});

describe('legacy dialect: pinned response shapes', () => {
  it('POST /api/generate_tts returns the file with its headers', async () => {
    const { res, audio } = await legacyFile('wav');
    const jobId = res.headers.get('x-job-id')!;
    expect(jobId).toMatch(/^tts_[0-9a-f]{24}$/);
    expect(res.headers.get('content-type')).toBe('audio/wav');
    expect(Number(res.headers.get('content-length'))).toBe(audio.length);
    expect(res.headers.get('content-disposition')).toBe(`attachment; filename="${jobId}.wav"`);
    const duration = Number(res.headers.get('x-audio-duration'));
    expect(Math.abs(duration - (audio.length - 44) / 48_000)).toBeLessThan(0.002);
    expect((await probe(audio, 'wav')).sampleRate).toBe(24_000);
  });

  it('format defaults to wav; speaker defaults to the default speaker', async () => {
    const res = await postJson(stack, '/api/generate_tts', { text: 'Default format.' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('audio/wav');
    await res.arrayBuffer();
  });

  it('POST /api/generate_tts/stream events: start, audio (id = seq), done', async () => {
    const { events } = await legacyStream('mp3');
    const parsed = events.map((e) => ({ id: e.id, data: JSON.parse(e.data) as Record<string, unknown> }));
    const start = parsed[0]!;
    expect(start.id).toBeUndefined();
    expect(Object.keys(start.data).sort()).toEqual(['format', 'job_id', 'sample_rate', 'type']);
    expect(start.data).toMatchObject({ type: 'start', format: 'mp3', sample_rate: 24_000 });
    const audio = parsed.slice(1, -1);
    audio.forEach((a, i) => {
      expect(Object.keys(a.data).sort()).toEqual(['audio', 'seq', 'type']);
      expect(a.data).toMatchObject({ type: 'audio', seq: i });
      expect(a.id).toBe(String(i));
    });
    const done = parsed.at(-1)!;
    expect(Object.keys(done.data).sort()).toEqual(['bytes', 'chars', 'duration_s', 'job_id', 'type']);
    expect(done.data).toMatchObject({ type: 'done', job_id: start.data.job_id, chars: TEXT.length });
    expect(done.id).toBe(String(audio.length));
  });

  it('GET /api/jobs/{id} describes a finished job', async () => {
    const { res } = await legacyFile('mp3');
    const jobId = res.headers.get('x-job-id')!;
    const job = await fetch(`${stack.baseUrl}/api/jobs/${jobId}`);
    expect(job.status).toBe(200);
    const body = (await job.json()) as Record<string, unknown>;
    expect(Object.keys(body).sort()).toEqual(
      ['chars', 'created_at', 'duration_s', 'error', 'finished_at', 'job_id', 'started_at', 'status'],
    );
    expect(body).toMatchObject({ job_id: jobId, status: 'completed', chars: TEXT.length, error: null });
    expect(Number(body.duration_s)).toBeGreaterThan(1);
    for (const k of ['created_at', 'started_at', 'finished_at']) expect(Date.parse(body[k] as string)).not.toBeNaN();
  });

  it('GET /api/speakers and /api/presets', async () => {
    const speakers = (await (await fetch(`${stack.baseUrl}/api/speakers`)).json()) as { speakers: Record<string, unknown>[] };
    expect(speakers.speakers.length).toBe(13);
    const f3 = speakers.speakers.find((s) => s.id === 'en_us_f3')!;
    expect(Object.keys(f3).sort()).toEqual(['engine', 'gender', 'id', 'language', 'name', 'openai_voices']);
    expect(f3.openai_voices).toEqual(['alloy']);
    const presets = (await (await fetch(`${stack.baseUrl}/api/presets`)).json()) as { presets: { id: string }[] };
    expect(presets.presets.map((p) => p.id)).toContain('calm');
    expect(presets.presets.find((p) => p.id === 'calm')).toEqual({ id: 'calm', temperature: 0.3, speed: 0.9, pitch: 42 });
  });

  it('a preset changes the audio (espeak-ng maps pitch/variant)', async () => {
    const a = await postJson(stack, '/api/generate_tts', { text: 'Preset test.', format: 'pcm' });
    const b = await postJson(stack, '/api/generate_tts', { text: 'Preset test.', format: 'pcm', preset: 'whisper' });
    expect(Buffer.from(await a.arrayBuffer()).equals(Buffer.from(await b.arrayBuffer()))).toBe(false);
  });
});

describe('legacy SSE resume with Last-Event-ID', () => {
  it('a client that drops after k events gets exactly the missing chunks, once, and done', async () => {
    const k = 3;
    const first = await readSomeSse(`${stack.baseUrl}/api/generate_tts/stream`, { text: LONG, speaker: 'echo', format: 'pcm' }, 1 + k); // start + k audio events
    const jobId = (JSON.parse(first[0]!.data) as { job_id: string }).job_id;
    const lastId = first.at(-1)!.id!;
    expect(lastId).toBe(String(k - 1));

    const resumed = await fetch(`${stack.baseUrl}/api/jobs/${jobId}/events`, { headers: { 'last-event-id': lastId } });
    expect(resumed.status).toBe(200);
    const rest = (await readSse(resumed)).events.map((e) => ({ id: e.id, data: JSON.parse(e.data) as Record<string, unknown> }));
    expect(rest[0]!.data.type).toBe('audio'); // no second start
    expect(rest[0]!.data.seq).toBe(k);
    const seqs = rest.filter((e) => e.data.type === 'audio').map((e) => e.data.seq);
    expect(seqs).toEqual([...new Set(seqs)]); // once each
    expect(rest.at(-1)!.data.type).toBe('done');

    const got = Buffer.concat([
      ...first.slice(1).map((e) => Buffer.from((JSON.parse(e.data) as { audio: string }).audio, 'base64')),
      ...rest.filter((e) => e.data.type === 'audio').map((e) => Buffer.from(e.data.audio as string, 'base64')),
    ]);
    const whole = await postJson(stack, '/api/generate_tts', { text: LONG, speaker: 'echo', format: 'pcm' });
    expect(got.equals(Buffer.from(await whole.arrayBuffer()))).toBe(true);
    expect((rest.at(-1)!.data as { bytes: number }).bytes).toBe(got.length);
  });

  it('replays from the start without Last-Event-ID', async () => {
    const { res } = await legacyFile('mp3');
    const jobId = res.headers.get('x-job-id')!;
    const replay = await readSse(await fetch(`${stack.baseUrl}/api/jobs/${jobId}/events`));
    const types = replay.events.map((e) => (JSON.parse(e.data) as { type: string }).type);
    expect(types[0]).toBe('start');
    expect(types.at(-1)).toBe('done');
  });
});

describe('legacy dialect: bad input gets the JSON envelope', () => {
  const cases: [string, Record<string, unknown>, string][] = [
    ['missing text', { speaker: 'alloy' }, 'text'],
    ['empty text', { text: '   ' }, 'text'],
    ['text over the limit', { text: 'x'.repeat(4097) }, 'text'],
    ['speed out of range', { text: 'Hi', speed: 9 }, 'speed'],
    ['unknown format', { text: 'Hi', format: 'ogg' }, 'format'],
    ['unknown speaker', { text: 'Hi', speaker: 'nobody' }, 'speaker'],
    ['unknown preset', { text: 'Hi', preset: 'nope' }, 'preset'],
  ];
  for (const route of ['/api/generate_tts', '/api/generate_tts/stream']) {
    for (const [name, body, param] of cases) {
      it(`${route}: ${name} → 400 (param ${param})`, async () => {
        const res = await postJson(stack, route, body);
        expect(res.status).toBe(400);
        expect(res.headers.get('content-type')).toMatch(/^application\/json/);
        const json = (await res.json()) as { error: Record<string, unknown> };
        expect(json.error).toMatchObject({ type: 'invalid_request_error', param });
      });
    }
  }

  it('unknown job → 404; bad Last-Event-ID → 400', async () => {
    const res = await fetch(`${stack.baseUrl}/api/jobs/tts_000000000000000000000000`);
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('not_found');
    expect((await fetch(`${stack.baseUrl}/api/jobs/not-a-job/events`)).status).toBe(404);
    const { res: made } = await legacyFile('pcm');
    const bad = await fetch(`${stack.baseUrl}/api/jobs/${made.headers.get('x-job-id')}/events`, { headers: { 'last-event-id': 'abc' } });
    expect(bad.status).toBe(400);
  });
});
