import { readFileSync } from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Queue } from 'bullmq';
import type { FastifyInstance } from 'fastify';
import { JOB_NAMES, loadApiConfig, PRIORITY, RedisKeys, speechQueueName } from '@chorus/shared';
import { buildApp } from '../apps/api/src/app.ts';
import { postJson, ROOT, startStack, type Stack } from './helpers/stack.ts';
import { freePort } from './helpers/redis-server.ts';
import { parseExposition, scrape, total, type Exposition } from './helpers/prom-text.ts';

/*
 * What /metrics exports, checked on live processes: SPEC §7's names, the dashboard's references, bounded label
 * values, queue depth from exactly one API replica, and cancellations counted once whichever side sees them.
 */

let stack: Stack;
let workerMetricsUrl: string;
const TEXT = 'Counting what matters, once.';

beforeAll(async () => {
  const port = await freePort();
  workerMetricsUrl = `http://127.0.0.1:${port}/metrics`;
  stack = await startStack({ redisUrl: inject('redisUrl'), workerEnv: { METRICS_PORT: String(port), METRICS_HOST: '127.0.0.1' } });
});
afterAll(async () => {
  await stack?.stop();
});

const apiMetrics = () => scrape(`${stack.baseUrl}/metrics`);
const workerMetrics = () => scrape(workerMetricsUrl);

async function until<T>(probe: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (ok(v) || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Metric names a PromQL expression refers to (ours and the process/runtime families prom-client adds). */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\b((?:chorus|process|nodejs)_[a-z0-9_]+)\b/g)].map((m) => m[1]!);
}

interface Panel { title?: string; type: string; targets?: { expr: string }[]; panels?: Panel[]; datasource?: { uid: string } }

function dashboardPanels(): Panel[] {
  const dash = JSON.parse(readFileSync(path.join(ROOT, 'deploy/grafana/dashboards/chorus.json'), 'utf8')) as { panels: Panel[] };
  return dash.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
}

describe('exported metric families', () => {
  let api: Exposition;
  let worker: Exposition;
  let jobId = '';
  let requestId = '';

  beforeAll(async () => {
    const res = await postJson(stack, '/v1/audio/speech', { model: 'tts-1', voice: 'alloy', input: TEXT, response_format: 'wav' });
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    jobId = res.headers.get('x-job-id')!;
    requestId = res.headers.get('x-request-id')!;
    api = await apiMetrics();
    worker = await until(workerMetrics, (w) => total(w, 'chorus_jobs_total', { status: 'completed' }) >= 1);
  });

  it('has every SPEC §7 name, with the labels dashboards group by', () => {
    const declared = new Map([...api.types, ...worker.types]);
    const spec = {
      chorus_http_requests_total: 'counter', chorus_http_request_duration_seconds: 'histogram',
      chorus_time_to_first_byte_seconds: 'histogram', chorus_queue_wait_seconds: 'histogram',
      chorus_queue_jobs: 'gauge', chorus_active_streams: 'gauge', chorus_rejected_total: 'counter',
      chorus_synthesis_seconds: 'histogram', chorus_real_time_factor: 'histogram', chorus_characters_total: 'counter',
      chorus_audio_seconds_total: 'counter', chorus_jobs_total: 'counter', chorus_worker_busy: 'gauge',
    };
    for (const [name, type] of Object.entries(spec)) expect([name, declared.get(name)]).toEqual([name, type]);
    const labelsOf = (exp: Exposition, name: string) => Object.keys(exp.samples.find((s) => s.name === name)?.labels ?? {}).sort();
    expect(labelsOf(api, 'chorus_time_to_first_byte_seconds_count')).toEqual(['format', 'model', 'route']);
    expect(labelsOf(worker, 'chorus_queue_wait_seconds_count')).toEqual(['engine', 'route']);
    expect(labelsOf(worker, 'chorus_real_time_factor_count')).toEqual(['engine']);
    expect(labelsOf(worker, 'chorus_characters_total')).toEqual(['engine', 'model']);
    expect(labelsOf(worker, 'chorus_jobs_total')).toEqual(['engine', 'status']);
    expect(labelsOf(api, 'chorus_queue_jobs')).toEqual(['engine', 'lane', 'state']);
    // Default process metrics on both.
    for (const exp of [api, worker]) {
      expect(exp.types.get('process_cpu_seconds_total')).toBe('counter');
      expect(exp.types.get('nodejs_eventloop_lag_p99_seconds')).toBe('gauge');
    }
  });

  it('latency histograms use seconds with buckets from 10 ms to 30 s', () => {
    for (const [exp, name] of [[api, 'chorus_time_to_first_byte_seconds'], [api, 'chorus_http_request_duration_seconds'],
      [worker, 'chorus_queue_wait_seconds'], [worker, 'chorus_synthesis_seconds']] as const) {
      const les = [...new Set(exp.samples.filter((s) => s.name === `${name}_bucket`).map((s) => s.labels.le!))]
        .filter((le) => le !== '+Inf').map(Number);
      expect(les, name).toContain(0.01);
      expect(Math.max(...les), name).toBe(30);
    }
  });

  it('label values never carry request ids, job ids or user text', () => {
    for (const exp of [api, worker]) {
      for (const s of exp.samples) {
        for (const v of Object.values(s.labels)) {
          expect(v).not.toContain(jobId);
          expect(v).not.toContain(requestId);
          expect(v).not.toContain(TEXT);
          expect(v.length).toBeLessThan(40);
        }
      }
    }
  });

  it('the Grafana dashboard references only names a live /metrics exports', () => {
    const exported = new Set([...api.seriesNames, ...worker.seriesNames]);
    const referenced = new Set(dashboardPanels().flatMap((p) => (p.targets ?? []).flatMap((t) => metricNames(t.expr))));
    expect(referenced.size).toBeGreaterThan(10);
    const missing = [...referenced].filter((n) => !exported.has(n));
    expect(missing).toEqual([]);
    // The dashboard covers what operators asked for.
    for (const n of ['chorus_time_to_first_byte_seconds_bucket', 'chorus_queue_wait_seconds_bucket', 'chorus_queue_jobs',
      'chorus_real_time_factor_bucket', 'chorus_http_requests_total', 'chorus_characters_total', 'chorus_rejected_total',
      'chorus_jobs_total', 'chorus_batch_items_total', 'chorus_batch_duration_seconds_bucket']) {
      expect(referenced, n).toContain(n);
    }
    // No batch ran here: labelled families with no sample yet are still declared (# TYPE), so the batch panels'
    // names are checked against a fresh deployment's /metrics, not only one that has finished a batch.
    expect(worker.types.get('chorus_batch_items_total')).toBe('counter');
    expect(worker.types.get('chorus_batch_duration_seconds')).toBe('histogram');
    expect(api.types.get('chorus_batch_items_total')).toBe('counter');
    const exprs = dashboardPanels().flatMap((p) => (p.targets ?? []).map((t) => t.expr)).join('\n');
    expect(exprs).toContain('status="cancelled"');
  });

  it('the dashboard uses the provisioned datasource and the scrape jobs Prometheus defines', () => {
    const ds = readFileSync(path.join(ROOT, 'deploy/grafana/provisioning/datasources/prometheus.yml'), 'utf8');
    const uid = /^\s*uid:\s*(\S+)/m.exec(ds)?.[1];
    expect(uid).toBeTruthy();
    const panels = dashboardPanels().filter((p) => p.type !== 'row');
    expect(panels.every((p) => p.datasource?.uid === uid)).toBe(true);
    const prom = readFileSync(path.join(ROOT, 'deploy/prometheus/prometheus.yml'), 'utf8');
    const jobs = new Set([...prom.matchAll(/job_name:\s*(\S+)/g)].map((m) => m[1]));
    const used = panels.flatMap((p) => (p.targets ?? []).flatMap((t) => [...t.expr.matchAll(/job=~?"([^"]+)"/g)].map((m) => m[1]!)));
    for (const job of used) {
      expect([...jobs].some((j) => new RegExp(`^(?:${job})$`).test(j!)), job).toBe(true);
    }
  });
});

describe('chorus_queue_jobs comes from exactly one API replica', () => {
  const prefix = `t${randomUUID().replace(/-/g, '').slice(0, 12)}`;
  const apps: FastifyInstance[] = [];
  let queue: Queue;
  let batchQueue: Queue;

  const build = async () => {
    const app = await buildApp(loadApiConfig({ REDIS_URL: stack.redisUrl, REDIS_PREFIX: prefix, HOST: '127.0.0.1', PORT: '0' }), { logger: false });
    await app.ready();
    apps.push(app);
    return app;
  };
  const metricsOf = async (app: FastifyInstance) => parseExposition((await app.inject({ url: '/metrics' })).body);
  const depthSeries = (exp: Exposition) => exp.samples.filter((s) => s.name === 'chorus_queue_jobs');

  afterAll(async () => {
    for (const app of apps) await app.close();
    await queue?.close();
    await batchQueue?.close();
    const keys = await stack.redis.keys(`${prefix}:*`);
    const bull = await stack.redis.keys(`{${prefix}}:*`);
    if (keys.length + bull.length) await stack.redis.del(...keys, ...bull);
  });

  it('reports real counts from the lease holder only, and hands over when it closes', async () => {
    const first = await build();
    const second = await build();
    queue = new Queue(speechQueueName('espeak'), { connection: stack.redis, prefix: new RedisKeys(prefix).bullPrefix() });
    await queue.add(JOB_NAMES.synthesize, { queued: true }, { priority: PRIORITY.realtime, jobId: 'queued-1' });
    // The batch lane is a queue of its own, counted under its own `lane` (Kubernetes autoscales each lane's pool).
    batchQueue = new Queue(speechQueueName('espeak', 'batch'), { connection: stack.redis, prefix: new RedisKeys(prefix).bullPrefix() });
    await batchQueue.add(JOB_NAMES.synthesize, { queued: true }, { priority: PRIORITY.batch, jobId: 'queued-b1' });
    await batchQueue.add(JOB_NAMES.synthesize, { queued: true }, { priority: PRIORITY.batch, jobId: 'queued-b2' });

    const [a, b] = [await metricsOf(first), await metricsOf(second)];
    expect(depthSeries(b)).toEqual([]);
    expect(total(a, 'chorus_queue_jobs', { engine: 'espeak', lane: 'realtime', state: 'prioritized' })).toBe(1);
    expect(total(a, 'chorus_queue_jobs', { engine: 'espeak', lane: 'batch', state: 'prioritized' })).toBe(2);
    expect(total(a, 'chorus_queue_jobs')).toBe(3);
    expect(await stack.redis.get(new RedisKeys(prefix).metricsLeader())).toBeTruthy();

    // A graceful close releases the lease; the other replica takes it on its next renewal (every 5 s).
    await first.close();
    apps.shift();
    const after = await until(() => metricsOf(second), (m) => depthSeries(m).length > 0, 30_000);
    expect(total(after, 'chorus_queue_jobs', { engine: 'espeak', lane: 'realtime', state: 'prioritized' })).toBe(1);
  });
});

describe('cancellations are counted once, by whoever sees them', () => {
  // Counted as deltas from the test's own start: each test stands alone, whichever ran before it (or -t).
  const cancelled = (exp: Exposition) => total(exp, 'chorus_jobs_total', { status: 'cancelled', engine: 'espeak' });
  const cancelledNow = async () => ({ api: cancelled(await apiMetrics()), worker: cancelled(await workerMetrics()) });

  it('a job removed while queued is counted by the API (no worker ever sees it)', async () => {
    const before = await cancelledNow();
    const q = stack.queue();
    await q.pause();
    try {
      const ac = new AbortController();
      const res = fetch(`${stack.baseUrl}/v1/audio/speech`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, signal: ac.signal,
        body: JSON.stringify({ model: 'tts-1', voice: 'alloy', input: 'Never spoken.' }),
      }).catch(() => undefined);
      const queued = await until(() => q.getJobCounts('prioritized', 'waiting'), (c) => c.prioritized! + c.waiting! === 1);
      expect(queued.prioritized! + queued.waiting!).toBe(1);
      ac.abort();
      await res;
      const api = await until(apiMetrics, (m) => cancelled(m) > before.api);
      expect(cancelled(api) - before.api).toBe(1);
      const left = await q.getJobCounts('prioritized', 'waiting');
      expect(left.prioritized! + left.waiting!).toBe(0);
    } finally {
      await q.resume();
    }
    expect(cancelled(await workerMetrics()) - before.worker).toBe(0);
  });

  it('a running job aborted by the client is counted by the worker, not the API', async () => {
    const before = await cancelledNow();
    const ac = new AbortController();
    // Slow on purpose: ~4,000 characters at speed 0.25 through ffmpeg atempo and mp3 take seconds to finish.
    const res = await fetch(`${stack.baseUrl}/v1/audio/speech`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, signal: ac.signal,
      body: JSON.stringify({ model: 'tts-1', voice: 'alloy', input: 'A long sentence that keeps going. '.repeat(115), speed: 0.25 }),
    });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    await reader.read(); // first audio is out: the job is running
    ac.abort();
    const worker = await until(workerMetrics, (m) => cancelled(m) > before.worker);
    expect(cancelled(worker) - before.worker).toBe(1);
    expect(total(worker, 'chorus_worker_busy')).toBe(0);
    expect(cancelled(await apiMetrics()) - before.api).toBe(0);
  });
});
