import { createServer, type Server } from 'node:http';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { TtsJob } from '@chorus/shared';

/** Buckets for speech latencies: 10 ms … 30 s. */
export const LATENCY_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export class WorkerMetrics {
  readonly registry = new Registry();
  readonly jobs = new Counter({
    name: 'chorus_jobs_total',
    help: 'Synthesis jobs by outcome (completed, failed, cancelled, retried)',
    labelNames: ['status', 'engine'],
    registers: [this.registry],
  });
  readonly queueWait = new Histogram({
    name: 'chorus_queue_wait_seconds',
    help: 'Time from enqueue to a worker starting the job',
    labelNames: ['engine'],
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly synthesis = new Histogram({
    name: 'chorus_synthesis_seconds',
    help: 'Time a worker spent on a job, synthesis and encoding',
    labelNames: ['engine', 'format'],
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly firstChunk = new Histogram({
    name: 'chorus_worker_first_chunk_seconds',
    help: 'Time from job start to its first published chunk',
    labelNames: ['engine', 'format'],
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly rtf = new Histogram({
    name: 'chorus_real_time_factor',
    help: 'Processing time divided by audio duration (lower is faster)',
    labelNames: ['engine'],
    buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2],
    registers: [this.registry],
  });
  readonly characters = new Counter({
    name: 'chorus_characters_total',
    help: 'Input characters synthesized',
    labelNames: ['model', 'engine'],
    registers: [this.registry],
  });
  readonly audioSeconds = new Counter({
    name: 'chorus_audio_seconds_total',
    help: 'Seconds of audio produced',
    labelNames: ['model', 'engine'],
    registers: [this.registry],
  });
  readonly busy = new Gauge({
    name: 'chorus_worker_busy',
    help: 'Jobs this worker is processing right now',
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  observeSynthesis(job: TtsJob, elapsedS: number, audioS: number, firstChunkS: number | undefined) {
    this.jobs.inc({ status: 'completed', engine: job.engine });
    this.synthesis.observe({ engine: job.engine, format: job.format }, elapsedS);
    if (firstChunkS !== undefined) this.firstChunk.observe({ engine: job.engine, format: job.format }, firstChunkS);
    if (audioS > 0) this.rtf.observe({ engine: job.engine }, elapsedS / audioS);
    this.characters.inc({ model: job.model, engine: job.engine }, job.text.length);
    this.audioSeconds.inc({ model: job.model, engine: job.engine }, audioS);
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
