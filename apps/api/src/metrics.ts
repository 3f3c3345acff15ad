import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Buckets for speech latencies: 10 ms … 30 s. */
export const LATENCY_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** API process metrics (SPEC §7). Labels carry only bounded values: route patterns, formats, models, reasons. */
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
    help: 'Time from request to the first audio byte sent',
    labelNames: ['route', 'format', 'model'],
    buckets: [0.005, ...LATENCY_BUCKETS],
    registers: [this.registry],
  });
  readonly activeStreams = new Gauge({
    name: 'chorus_active_streams',
    help: 'Audio streams being relayed by this API process',
    registers: [this.registry],
  });
  readonly rejected = new Counter({
    name: 'chorus_rejected_total',
    help: 'Requests refused before synthesis, by reason (error code)',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  readonly streamFailures = new Counter({
    name: 'chorus_stream_failures_total',
    help: 'Streams that failed after audio had been sent, by code',
    labelNames: ['code'],
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }
}
