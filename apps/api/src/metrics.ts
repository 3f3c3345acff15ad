import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { QueueDepth } from './queue-depth-exporter.ts';

/**
 * Buckets for speech latencies, 10 ms … 30 s: first audio is expected in tens of milliseconds, a whole long file
 * can take many seconds. Keep in step with the worker's (apps/worker/src/metrics.ts).
 */
export const LATENCY_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/**
 * API process metrics (SPEC §7). Labels carry only bounded values: route patterns, formats, validated model
 * names, engines, error codes; never request ids, job ids, keys or user text. Every replica exports its own
 * counters (sum them); `chorus_queue_jobs` comes from exactly one replica (see QueueDepthExporter).
 */
export class ApiMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: 'chorus_http_requests_total',
    help: 'HTTP requests by route pattern, method and status',
    labelNames: ['route', 'method', 'status'],
    registers: [this.registry],
  });
  readonly duration = new Histogram({
    name: 'chorus_http_request_duration_seconds',
    help: 'Time from request to the end of the response (streams included)',
    labelNames: ['route', 'method'],
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly ttfb = new Histogram({
    name: 'chorus_time_to_first_byte_seconds',
    help: 'Time from request to the first audio byte handed to the socket',
    labelNames: ['route', 'format', 'model'],
    buckets: [0.005, ...LATENCY_BUCKETS],
    registers: [this.registry],
  });
  readonly activeStreams = new Gauge({
    name: 'chorus_active_streams',
    help: 'Job audio streams this API process is relaying right now',
    registers: [this.registry],
  });
  readonly rejected = new Counter({
    name: 'chorus_rejected_total',
    help: 'Requests answered with an error instead of audio, by reason (error code)',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  /** How each realtime request's admission ended (services/queue-admission.ts, AdmissionOutcome). */
  readonly admissions = new Counter({
    name: 'chorus_admissions_total',
    help: 'Realtime requests by admission outcome: free_slot, freed_slot (handed a slot this replica saw come free), second_look, displaced, refused',
    labelNames: ['outcome'],
    registers: [this.registry],
  });
  readonly streamFailures = new Counter({
    name: 'chorus_stream_failures_total',
    help: 'Streams that failed after audio had been sent, by code',
    labelNames: ['code'],
    registers: [this.registry],
  });
  /** Batch items cancelled or expired while still queued (the workers count the rest; see the worker's metrics). */
  readonly batchItems = new Counter({
    name: 'chorus_batch_items_total',
    help: 'Batch items by outcome: completed, failed, cancelled, expired',
    labelNames: ['outcome'],
    registers: [this.registry],
  });
  /** Only `cancelled` here: jobs removed while still queued, which no worker ever sees. Workers count the rest. */
  readonly jobs = new Counter({
    name: 'chorus_jobs_total',
    help: 'Synthesis jobs by outcome (this process: jobs cancelled while still queued)',
    labelNames: ['status', 'engine'],
    registers: [this.registry],
  });
  readonly queueJobs = new Gauge({
    name: 'chorus_queue_jobs',
    help: 'Jobs in each queue (engine and lane: realtime, batch) by state; exported by one API replica only (a Redis lease), so sum() is exact',
    labelNames: ['engine', 'lane', 'state'],
    registers: [this.registry],
    collect: () => this.#collectQueueDepth(),
  });
  #queueDepth: (() => Promise<QueueDepth | undefined>) | undefined;

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  /** Where `chorus_queue_jobs` reads from at scrape time (undefined result: export no series). */
  setQueueDepthSource(source: () => Promise<QueueDepth | undefined>) {
    this.#queueDepth = source;
  }

  async #collectQueueDepth(): Promise<void> {
    // Reset first: a replica that lost the lease must stop exporting, not repeat its last values.
    this.queueJobs.reset();
    const depth = await this.#queueDepth?.().catch(() => undefined);
    for (const [engine, lanes] of depth ?? []) {
      for (const [lane, states] of Object.entries(lanes)) {
        for (const [state, n] of Object.entries(states)) this.queueJobs.set({ engine, lane, state }, n);
      }
    }
  }
}
