import { createServer, type Server } from 'node:http';
import type { Worker } from 'bullmq';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { TtsJob } from '@chorus/shared';

/**
 * Buckets for speech latencies, 10 ms … 30 s: first audio is expected in tens of milliseconds, a long batch item
 * can take many seconds. Keep in step with the API's (apps/api/src/metrics.ts) so dashboards can compare them.
 */
export const LATENCY_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** Processing seconds per audio second: espeak-ng runs at ~0.002, a neural engine on CPU near 1. */
const RTF_BUCKETS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2];

/** BullMQ's own failure messages for a job it gives up on without running our processor (poison jobs). */
const BULLMQ_LIMIT_FAILURE = /more than allowable limit/;

/**
 * Worker process metrics (SPEC §7), served on METRICS_PORT. Label values come only from bounded sets (engine,
 * format, model and route names that the API validated); never job ids, request ids or user text.
 *
 * `chorus_jobs_total{status}` counts each outcome exactly once across the fleet: completed/failed/cancelled by the
 * worker that ran the job, `retried` by the worker that restarts a job another one lost, `stalled` by the worker
 * whose stall check found the lost job. The API adds `cancelled` for jobs it removed before any worker saw them.
 */
export class WorkerMetrics {
  readonly registry = new Registry();
  readonly jobs = new Counter({
    name: 'chorus_jobs_total',
    help: 'Synthesis jobs by outcome: completed, failed, cancelled, retried (restarted after a crash), stalled',
    labelNames: ['status', 'engine'],
    registers: [this.registry],
  });
  readonly queueWait = new Histogram({
    name: 'chorus_queue_wait_seconds',
    help: 'Time from enqueue to a worker starting the job (first attempts only)',
    labelNames: ['engine', 'route'],
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly synthesis = new Histogram({
    name: 'chorus_synthesis_seconds',
    help: 'Time a worker spent on a completed job, synthesis and encoding',
    labelNames: ['engine', 'format'],
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly firstChunk = new Histogram({
    name: 'chorus_worker_first_chunk_seconds',
    help: 'Time from job start to its first published chunk',
    labelNames: ['engine', 'format'],
    buckets: [0.005, ...LATENCY_BUCKETS],
    registers: [this.registry],
  });
  readonly rtf = new Histogram({
    name: 'chorus_real_time_factor',
    help: 'Processing time divided by audio duration, per completed job (lower is faster)',
    labelNames: ['engine'],
    buckets: RTF_BUCKETS,
    registers: [this.registry],
  });
  readonly characters = new Counter({
    name: 'chorus_characters_total',
    help: 'Input characters of completed jobs',
    labelNames: ['model', 'engine'],
    registers: [this.registry],
  });
  readonly audioSeconds = new Counter({
    name: 'chorus_audio_seconds_total',
    help: 'Seconds of audio produced by completed jobs',
    labelNames: ['model', 'engine'],
    registers: [this.registry],
  });
  readonly busy = new Gauge({
    name: 'chorus_worker_busy',
    help: 'Jobs this worker is processing right now',
    registers: [this.registry],
  });

  /** Counted where an item's outcome is recorded (once per item, fleet-wide: the Redis guard says which). */
  readonly batchItems = new Counter({
    name: 'chorus_batch_items_total',
    help: 'Batch items by outcome: completed, failed, cancelled, expired',
    labelNames: ['outcome'],
    registers: [this.registry],
  });
  readonly batchDuration = new Histogram({
    name: 'chorus_batch_duration_seconds',
    help: 'Time from a batch\'s creation to its end (completed, cancelled or expired), observed by the worker that finalized it',
    labelNames: ['status'],
    buckets: [1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600],
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  /** A job starts (after its payload parsed): counts restarts and, for first attempts, the queue wait. */
  observeStart(job: TtsJob, attemptsStarted: number, now = Date.now()) {
    if (attemptsStarted > 1) {
      this.jobs.inc({ status: 'retried', engine: job.engine });
      return; // enqueuedAt is the first attempt's: the wait would include the crashed attempt's work
    }
    this.queueWait.observe({ engine: job.engine, route: job.route }, Math.max(0, now - job.enqueuedAt) / 1000);
  }

  observeSynthesis(job: TtsJob, elapsedS: number, audioS: number, firstChunkS: number | undefined) {
    this.jobs.inc({ status: 'completed', engine: job.engine });
    this.synthesis.observe({ engine: job.engine, format: job.format }, elapsedS);
    if (firstChunkS !== undefined) this.firstChunk.observe({ engine: job.engine, format: job.format }, firstChunkS);
    if (audioS > 0) this.rtf.observe({ engine: job.engine }, elapsedS / audioS);
    this.characters.inc({ model: job.model, engine: job.engine }, job.text.length);
    this.audioSeconds.inc({ model: job.model, engine: job.engine }, audioS);
  }

  /**
   * Outcomes BullMQ decides without our processor: a lost lock found by this worker's stall check, and a poison
   * job failed for starting or stalling too often (our processor's own failures are counted where they happen).
   */
  watchWorker(worker: Worker, engine: string) {
    worker.on('stalled', () => this.jobs.inc({ status: 'stalled', engine }));
    worker.on('failed', (_job, err) => {
      if (BULLMQ_LIMIT_FAILURE.test(err.message)) this.jobs.inc({ status: 'failed', engine });
    });
  }

  /** Serves GET /metrics; resolves with the bound port. */
  listen(port: number, host: string): Promise<{ server: Server; port: number }> {
    const server = createServer((req, res) => {
      if (req.url === '/metrics') {
        this.registry
          .metrics()
          .then((text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(text))
          .catch(() => res.writeHead(500).end());
      } else if (req.url === '/healthz') {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
      } else {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"message":"not found","type":"invalid_request_error","param":null,"code":"not_found"}}');
      }
    });
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        const addr = server.address();
        resolve({ server, port: typeof addr === 'object' && addr ? addr.port : port });
      });
    });
  }
}
