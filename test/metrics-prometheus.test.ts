import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import OpenAI from 'openai';
import { startStack, type Stack } from './helpers/stack.ts';
import { freePort } from './helpers/redis-server.ts';
import { single, startPrometheus, type PrometheusServer } from './helpers/prometheus.ts';

/*
 * A real Prometheus scrapes the in-process API and a worker process every second while requests go through the
 * OpenAI SDK; PromQL answers must add up to exactly what was sent.
 */

const PCM_INPUTS = ['Hello from Chorus.', 'Metrics are counted once.', 'A third, slightly longer sentence for the total.'];
const MP3_INPUTS = ['Streaming as mp3.', 'And one more in mp3.'];
const SSE_INPUT = 'This one arrives as server-sent events.';
const N = PCM_INPUTS.length + MP3_INPUTS.length + 1;

const HAS_PROMETHEUS = (() => {
  try {
    execFileSync('prometheus', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    console.warn('prometheus not installed (scripts/install.sh installs it): Prometheus scrape test skipped');
    return false;
  }
})();

let stack: Stack;
let prom: PrometheusServer;
const pcmBytes: number[] = [];
let rejectedCode = '';

beforeAll(async () => {
  if (!HAS_PROMETHEUS) return;
  const workerMetricsPort = await freePort();
  stack = await startStack({
    redisUrl: inject('redisUrl'),
    workerEnv: { METRICS_PORT: String(workerMetricsPort), METRICS_HOST: '127.0.0.1' },
  });
  prom = await startPrometheus({
    'chorus-api': [stack.baseUrl.replace('http://', '')],
    'chorus-worker': [`127.0.0.1:${workerMetricsPort}`],
  });

  // Realtime traffic, sequential so the expected counts are exact.
  for (const input of PCM_INPUTS) {
    const res = await stack.client.audio.speech.create({ model: 'tts-1', voice: 'alloy', input, response_format: 'pcm' });
    pcmBytes.push((await res.arrayBuffer()).byteLength);
  }
  for (const input of MP3_INPUTS) {
    const res = await stack.client.audio.speech.create({ model: 'tts-1-hd', voice: 'nova', input, response_format: 'mp3' });
    expect((await res.arrayBuffer()).byteLength).toBeGreaterThan(0);
  }
  const sse = await stack.client.audio.speech.create({
    model: 'tts-1-hd', voice: 'echo', input: SSE_INPUT, response_format: 'mp3', stream_format: 'sse',
  });
  expect(await sse.text()).toContain('speech.audio.done');
  // One refusal: an unknown voice is a 400 before anything is queued.
  const err = await stack.client.audio.speech
    .create({ model: 'tts-1', voice: 'no-such-voice' as 'alloy', input: 'x' })
    .catch((e: unknown) => e);
  expect(err).toBeInstanceOf(OpenAI.BadRequestError);
  rejectedCode = String((err as InstanceType<typeof OpenAI.BadRequestError>).code);
}, 60_000);

afterAll(async () => {
  await prom?.stop();
  await stack?.stop();
});

const sumOf = (xs: readonly string[]) => xs.reduce((a, s) => a + s.length, 0);

describe.skipIf(!HAS_PROMETHEUS)('Prometheus scraping the API and a worker', () => {
  it('scrapes both targets', async () => {
    const up = await prom.until('up', (r) => r.length === 2 && r.every((s) => s.value === 1));
    expect(up.map((s) => [s.metric.job, s.value]).sort()).toEqual([['chorus-api', 1], ['chorus-worker', 1]]);
  });

  it('counts every speech request once, by status', async () => {
    const q = 'sum(chorus_http_requests_total{route="/v1/audio/speech",method="POST",status="200"})';
    expect(single(await prom.until(q, (r) => single(r) === N))).toBe(N);
    const bad = 'sum(chorus_http_requests_total{route="/v1/audio/speech",status="400"})';
    expect(single(await prom.until(bad, (r) => single(r) === 1))).toBe(1);
  });

  it('counts characters per model exactly as sent', async () => {
    const q = 'sum by (model) (chorus_characters_total)';
    const expected = { 'tts-1': sumOf(PCM_INPUTS), 'tts-1-hd': sumOf(MP3_INPUTS) + SSE_INPUT.length };
    const r = await prom.until(q, (x) => x.length === 2 && x.every((s) => s.value === expected[s.metric.model as 'tts-1']));
    expect(Object.fromEntries(r.map((s) => [s.metric.model, s.value]))).toEqual(expected);
  });

  it('audio seconds match the PCM the client received (48,000 bytes per second)', async () => {
    const expected = pcmBytes.reduce((a, b) => a + b, 0) / 48_000;
    expect(expected).toBeGreaterThan(2);
    const q = 'sum(chorus_audio_seconds_total{model="tts-1",engine="espeak"})';
    const got = single(await prom.until(q, (r) => Math.abs((single(r) ?? 0) - expected) < 1e-3));
    expect(got).toBeCloseTo(expected, 3);
    const hd = single(await prom.until('sum(chorus_audio_seconds_total{model="tts-1-hd"})', (r) => (single(r) ?? 0) > 0));
    expect(hd).toBeGreaterThan(1);
  });

  it('observes time to first byte per route and format', async () => {
    const q = 'sum by (route, format) (chorus_time_to_first_byte_seconds_count)';
    const r = await prom.until(q, (x) => x.length === 3);
    const counts = Object.fromEntries(r.map((s) => [`${s.metric.route}/${s.metric.format}`, s.value]));
    expect(counts).toEqual({ 'speech/pcm': PCM_INPUTS.length, 'speech/mp3': MP3_INPUTS.length, 'speech_sse/mp3': 1 });
    // Local espeak-ng: first audio well inside the 10 s bucket, and the histogram has real buckets.
    const p99 = single(await prom.query('histogram_quantile(0.99, sum by (le) (chorus_time_to_first_byte_seconds_bucket))'));
    expect(p99).toBeGreaterThan(0);
    expect(p99).toBeLessThan(10);
  });

  it('worker side: jobs completed, queue wait and real-time factor per engine, worker idle again', async () => {
    expect(single(await prom.until('sum(chorus_jobs_total{status="completed",engine="espeak"})', (r) => single(r) === N))).toBe(N);
    expect(single(await prom.query('sum(chorus_jobs_total{status!="completed"})'))).toBeUndefined();
    expect(single(await prom.query('sum(chorus_queue_wait_seconds_count{engine="espeak",route=~"speech|speech_sse"})'))).toBe(N);
    expect(single(await prom.query('sum(chorus_real_time_factor_count{engine="espeak"})'))).toBe(N);
    // espeak-ng runs hundreds of times faster than real time: mean RTF far below 1 (encoding included).
    const meanRtf = single(await prom.query('sum(chorus_real_time_factor_sum) / sum(chorus_real_time_factor_count)'));
    expect(meanRtf).toBeGreaterThan(0);
    expect(meanRtf).toBeLessThan(1);
    expect(single(await prom.query('chorus_worker_busy'))).toBe(0);
  });

  it('counts the refusal by reason', async () => {
    const r = await prom.until('sum by (reason) (chorus_rejected_total)', (x) => x.length === 1);
    expect(r.map((s) => [s.metric.reason, s.value])).toEqual([[rejectedCode, 1]]);
  });

  it('exports queue depth by engine and state from the API, and active streams', async () => {
    // One series per lane and state: a batch pool scales on its own lane's backlog (deploy/kubernetes).
    const r = await prom.until('chorus_queue_jobs{engine="espeak"}', (x) => x.length > 0);
    for (const lane of ['realtime', 'batch']) {
      expect(r.filter((s) => s.metric.lane === lane).map((s) => s.metric.state).sort(), lane)
        .toEqual(['active', 'delayed', 'prioritized', 'waiting']);
    }
    expect(r).toHaveLength(8);
    expect(r.every((s) => s.metric.job === 'chorus-api' && s.value === 0)).toBe(true);
    expect(single(await prom.query('chorus_active_streams'))).toBe(0);
  });

  it('has default process metrics from both processes', async () => {
    // Polled like the others: run alone (-t), this test may come before Prometheus's first scrape of both targets.
    const r = await prom.until('process_resident_memory_bytes', (x) => x.length === 2);
    expect(r.map((s) => s.metric.job).sort()).toEqual(['chorus-api', 'chorus-worker']);
    expect(r.every((s) => s.value > 10e6)).toBe(true);
  });
});
