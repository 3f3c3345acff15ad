import { isIP } from 'node:net';
import { availableParallelism } from 'node:os';
import { z } from 'zod';

/*
 * Configuration schemas for both apps (SPEC §6). Nothing here reads process.env at import time: each app calls
 * loadApiConfig / loadWorkerConfig once at start and passes the result down. A bad value stops the process with a
 * message naming the variable.
 */

const BoolEnv = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const IntEnv = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const ListEnv = z
  .string()
  .transform((s) => s.split(',').map((x) => x.trim()).filter(Boolean));

const LogLevel = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

/**
 * MAX_AUDIO_SECONDS default: 20 min. 4,096 characters of English prose at speed 0.25 are 971 s (16.2 min) with
 * espeak-ng; at 48,000 B/s (24 kHz 16-bit) one wav/pcm job's stream then holds at most 57.6 MB. Also the bound
 * the worker applies to jobs queued before the API passed a limit.
 */
export const DEFAULT_MAX_AUDIO_SECONDS = 1200;

/**
 * WORKER_CONCURRENCY when unset: 4 realtime jobs per core, at least 2, at most 64. A job is two short-lived
 * processes (espeak-ng, ffmpeg) that the kernel shares the cores between; a job that waits for a slot waits a
 * whole job (~250 ms for 300 characters on 2 cores) before its first byte, while one more running job costs the
 * others only its share of the CPU. On 2 cores, 8 slots gave the best first byte at 4 and 8 concurrent requests
 * with the same throughput as 2 or 4 slots (docs/benchmarks.md, "Chorus against the naive pipeline").
 */
export function defaultWorkerConcurrency(cores = availableParallelism()): number {
  return Math.min(64, Math.max(2, 4 * cores));
}

/**
 * Warm processes per pool when ENCODER_POOL_SIZE / ESPEAK_POOL_SIZE are unset: half the realtime slots (at most
 * `max`). Starts come in bursts (slots free together); a start that finds its pool empty waits for a process start
 * behind the refills, 55–300 ms under load against ~10 ms with a warm one. With 8 slots on 2 cores, pools of 2
 * ran dry for 1 start in 10 under 5× overload (worker p95 to first audio 79–95 ms), pools of 4 for 1–4 in 100 (27–41).
 */
export function defaultPoolSize(concurrency: number, max: number): number {
  return Math.min(max, Math.ceil(concurrency / 2));
}

const HostPort = z.string().regex(/^[^\s:]+:\d+$/, 'expected host:port');

/** Variables both apps read. */
const CommonEnv = z.object({
  REDIS_URL: z.string().url().default('redis://127.0.0.1:6379'),
  /** Comma list of host:port; when set, REDIS_URL only supplies password/db and Sentinel finds the master. */
  REDIS_SENTINELS: ListEnv.pipe(z.array(HostPort)).optional(),
  REDIS_SENTINEL_NAME: z.string().min(1).default('mymaster'),
  /**
   * Comma list of host:port of Redis Cluster nodes (any few: the rest are discovered); when set, REDIS_URL only
   * supplies the password and TLS (rediss:). Not together with REDIS_SENTINELS.
   */
  REDIS_CLUSTER_NODES: ListEnv.pipe(z.array(HostPort).min(1)).optional(),
  REDIS_PREFIX: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, _ . - only').default('chorus'),
  LOG_LEVEL: LogLevel.default('info'),
  /** JSON voices file (SPEC §4); unset = the defaults shipped in config/voices.json. */
  VOICES_FILE: z.string().min(1).optional(),
  VOICES_DIR: z.string().min(1).optional(),
  /** `alias=engine` comma list; merged over the defaults (all OpenAI model names → espeak). */
  MODEL_ALIASES: z.string().optional(),
  /** How long a job's audio stream stays readable after its last chunk (replay, resume). */
  STREAM_TTL_S: IntEnv(10, 7 * 24 * 3600).default(900),
});

/** Where files (batch input and output, audio) are kept; the API reads it, and the worker will for batch items. */
const StorageEnv = z.object({
  STORAGE_DRIVER: z.enum(['fs', 's3']).default('fs'),
  /** The fs driver's root. */
  DATA_DIR: z.string().min(1).default('./data'),
  S3_BUCKET: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'an S3 bucket name').optional(),
  /** S3-compatible stores (MinIO...): their URL; unset = AWS. */
  S3_ENDPOINT: z.string().url().optional(),
  S3_REGION: z.string().min(1).default('us-east-1'),
  S3_FORCE_PATH_STYLE: BoolEnv.default(false),
  /** Key prefix inside the bucket, e.g. `chorus/`. */
  S3_PREFIX: z.string().regex(/^(?:[A-Za-z0-9_-][A-Za-z0-9._-]*\/)*(?:[A-Za-z0-9_-][A-Za-z0-9._-]*)?$/, 'key segments (letters, digits, _ - .) separated by /').default(''),
});

const ApiEnv = CommonEnv.extend({
  HOST: z.string().min(1).default('0.0.0.0'),
  PORT: IntEnv(0, 65535).default(8000),
  API_KEYS: ListEnv.optional(),
  ADMIN_API_KEY: z.string().min(1).optional(),
  CORS_ORIGINS: ListEnv.optional(),
  MAX_INPUT_CHARS: IntEnv(1, 1_000_000).default(4096),
  MAX_QUEUE_DEPTH: IntEnv(1, 10_000_000).default(1000),
  RATE_LIMIT_PER_MIN: IntEnv(0, 10_000_000).default(0),
  QUEUE_TIMEOUT_S: IntEnv(1, 3600).default(30),
  /**
   * Longest predicted wait for a worker slot a realtime request is admitted with (at most 80% of QUEUE_TIMEOUT_S); above
   * it the request gets 429 queue_full at once. About one unloaded first byte by default: under overload a request is
   * admitted into a free slot, not behind a queue (README, Reliability; docs/benchmarks.md, Admission).
   */
  MAX_QUEUE_WAIT_MS: IntEnv(0, 3_600_000).default(50),
  PUBLIC_DISCOVERY: BoolEnv.default(true),
  ...StorageEnv.shape,
  /** Largest file POST /v1/files accepts (default 200 MiB). */
  MAX_BATCH_FILE_BYTES: IntEnv(1, 2 ** 40).default(200 * 1024 * 1024),
  /** How long an uploaded file is kept (default 30 days). */
  FILE_RETENTION_S: IntEnv(1, 10 * 365 * 86_400).default(30 * 86_400),
  /** Batches one key may have open (validating, in progress, finalizing, cancelling) at once. */
  MAX_OPEN_BATCHES: IntEnv(1, 1_000_000).default(100),
  /** Requests one batch may hold (OpenAI's limit: 50,000). */
  MAX_BATCH_ITEMS: IntEnv(1, 10_000_000).default(50_000),
  /**
   * BullMQ lock on the batch lifecycle jobs (validation, expiry) the API replicas run; their stall check runs every
   * half of it. A replica killed mid-validation leaves the job to another one within about one and a half locks.
   */
  BATCH_LIFECYCLE_LOCK_MS: IntEnv(2000, 600_000).default(20_000),
  BODY_LIMIT_BYTES: IntEnv(1024, 1 << 30).default(1 << 20),
  /**
   * Behind a reverse proxy: which hops may set X-Forwarded-For (per-IP rate limits and logs see the client behind
   * them). A comma list of proxy addresses/CIDRs (a client that reaches the API directly cannot pass for one), a
   * hop count (trusts whoever connects: only where nothing but the proxy can), or `true` (every hop; same caveat).
   * Off by default: a client could forge the header.
   */
  TRUST_PROXY: z
    .string()
    .transform((v, ctx): boolean | number | string[] => {
      if (v === 'true' || v === 'false') return v === 'true';
      if (/^\d+$/.test(v)) return Number(v);
      const list = v.split(',').map((x) => x.trim()).filter(Boolean);
      const bad = list.filter((x) => !isProxyAddress(x));
      if (list.length === 0 || bad.length > 0) {
        ctx.addIssue({ code: 'custom', message: `expected true, a hop count, or proxy addresses/CIDRs; got ${bad.join(',') || 'nothing'}` });
      }
      return list;
    })
    .optional(),
  /** Who may read GET /metrics while keys are on: `public`, any valid `key`, or only the `admin` key. */
  METRICS_AUTH: z.enum(['public', 'key', 'admin']).default('key'),
  SHUTDOWN_GRACE_S: IntEnv(0, 3600).default(30),
  /** Longest audio one request may produce (after speed); the worker fails a job that passes it. */
  MAX_AUDIO_SECONDS: IntEnv(1, 86_400).default(DEFAULT_MAX_AUDIO_SECONDS),
  /** Time to receive a whole request (headers and body); a client dribbling its body is cut with 408. */
  REQUEST_TIMEOUT_S: IntEnv(1, 3600).default(60),
  /** Time to receive the request headers (capped at REQUEST_TIMEOUT_S). */
  HEADERS_TIMEOUT_S: IntEnv(1, 3600).default(15),
  /** Idle time after a response before a keep-alive connection is closed. */
  KEEP_ALIVE_TIMEOUT_S: IntEnv(1, 3600).default(72),
});

const WorkerEnv = CommonEnv.extend({
  /** Batch items write their audio, and finalizers their output files, to the same storage the API reads. */
  ...StorageEnv.shape,
  ENGINES: ListEnv.pipe(z.array(z.string().regex(/^[a-z0-9-]+$/)).min(1)).default(['espeak']),
  /**
   * Realtime jobs in parallel per engine; unset = from the cores (defaultWorkerConcurrency). 0: no realtime lane (a
   * batch-only worker, e.g. a pool that autoscales to zero on the batch backlog), as WORKER_BATCH_CONCURRENCY=0 is no
   * batch lane.
   */
  WORKER_CONCURRENCY: IntEnv(0, 256).optional(),
  /** Batch items in parallel per engine, in their own lane: realtime requests never wait for these slots. */
  WORKER_BATCH_CONCURRENCY: IntEnv(0, 256).default(1),
  MODELS_DIR: z.string().min(1).default('./models'),
  /** onnxruntime providers in order of preference; `cuda` falls back to `cpu` (one warning) where CUDA is missing. */
  EXECUTION_PROVIDERS: ListEnv.pipe(z.array(z.enum(['cuda', 'cpu'])).min(1)).default(['cpu']),
  /** Threads per onnxruntime session; 0 = one per available core. */
  ORT_INTRA_OP_THREADS: IntEnv(0, 256).default(0),
  /** Micro-batching: at most this many segments per inference call (1 = off), waiting at most this long to fill it. */
  INFERENCE_BATCH_MAX: IntEnv(1, 64).default(8),
  INFERENCE_BATCH_WAIT_MS: IntEnv(0, 1000).default(0),
  METRICS_PORT: IntEnv(0, 65535).default(0),
  METRICS_HOST: z.string().min(1).default('0.0.0.0'),
  /** BullMQ lock: a worker that stops renewing it (crash) loses the job after about this long. */
  LOCK_DURATION_MS: IntEnv(1000, 600_000).default(6000),
  STALLED_INTERVAL_MS: IntEnv(500, 600_000).default(3000),
  /** A job whose processing starts more often than this (it keeps crashing workers) fails. */
  MAX_STARTED_ATTEMPTS: IntEnv(1, 100).default(3),
  HEARTBEAT_INTERVAL_MS: IntEnv(200, 60_000).default(2000),
  /**
   * How often each worker looks (CLIENT LIST) for live peers whose Redis connections are gone: a dead worker's
   * jobs are handed back after two looks (the second 50 ms after the first) instead of after lock expiry and stalled
   * checks. 0 = off (stall recovery only).
   */
  FAILOVER_POLL_MS: IntEnv(0, 60_000).default(200),
  /**
   * Warm encoders kept ready per format in use (LAME for mp3, ffmpeg for the rest; removes a process start from
   * first audio); formats no request has used yet keep one. Unset = defaultPoolSize (half WORKER_CONCURRENCY).
   */
  ENCODER_POOL_SIZE: IntEnv(0, 64).optional(),
  /**
   * Warm espeak-ng processes kept ready per argument set (voice, rate, pitch) for the 8 sets used most recently
   * (removes ~15 ms of process start and voice load from first audio). 0 = off. Unset = defaultPoolSize.
   */
  ESPEAK_POOL_SIZE: IntEnv(0, 16).optional(),
  /**
   * While a job waits for its first audio, stop (SIGSTOP) the child processes of streams ≥ 1 s ahead of their
   * listeners and of batch items (apps/worker/src/processors/first-audio-gate.ts). false = niceness alone.
   */
  FIRST_AUDIO_GATE: BoolEnv.default(true),
  SHUTDOWN_GRACE_S: IntEnv(0, 3600).default(30),
  WORKER_ID: z.string().regex(/^[A-Za-z0-9_.-]+$/).optional(),
});

/** Every variable each app reads: what deployment manifests may set (test/kubernetes-manifests.test.ts checks them). */
export const API_ENV_NAMES: readonly string[] = Object.keys(ApiEnv.shape);
export const WORKER_ENV_NAMES: readonly string[] = Object.keys(WorkerEnv.shape);

/** The `chorus` command line (SPEC §8); flags override these. */
const CliEnv = z.object({
  MODELS_DIR: z.string().min(1).default('./models'),
  /** Hugging Face hub (or a mirror) that `chorus models pull` downloads from. */
  HF_ENDPOINT: z.string().url().default('https://huggingface.co'),
  /** Sent as a Bearer token to HF_ENDPOINT only (never to the CDN it redirects to). */
  HF_TOKEN: z.string().min(1).optional(),
  /** The Chorus API that `chorus speak` / `batch` call: the OpenAI SDK's own variable names, so one setting serves both. */
  OPENAI_BASE_URL: z.string().url().default('http://localhost:8000/v1'),
  OPENAI_API_KEY: z.string().min(1).optional(),
});

export interface RedisConfig {
  url: string;
  sentinels: { host: string; port: number }[] | undefined;
  sentinelName: string;
  /** Redis Cluster seed nodes (REDIS_CLUSTER_NODES). */
  clusterNodes?: { host: string; port: number }[];
  prefix: string;
}

/** An address, a CIDR (or address/netmask), or one of proxy-addr's names. */
function isProxyAddress(x: string): boolean {
  if (x === 'loopback' || x === 'linklocal' || x === 'uniquelocal') return true;
  const [addr = '', range, ...rest] = x.split('/');
  const family = isIP(addr);
  if (family === 0 || rest.length > 0) return false;
  if (range === undefined) return true;
  if (/^\d+$/.test(range)) return Number(range) <= (family === 4 ? 32 : 128);
  return family === 4 && isIP(range) === 4;
}

function hostPorts(list: string[] | undefined) {
  return list?.map((hp) => {
    const [host, port] = hp.split(':');
    return { host: host!, port: Number(port) };
  });
}

function redisConfig(env: z.infer<typeof CommonEnv>): RedisConfig {
  if (env.REDIS_SENTINELS && env.REDIS_CLUSTER_NODES) {
    throw new ConfigError('invalid configuration:\n  REDIS_CLUSTER_NODES: not together with REDIS_SENTINELS');
  }
  return {
    url: env.REDIS_URL,
    sentinels: hostPorts(env.REDIS_SENTINELS),
    clusterNodes: hostPorts(env.REDIS_CLUSTER_NODES),
    sentinelName: env.REDIS_SENTINEL_NAME,
    prefix: env.REDIS_PREFIX,
  };
}

/** What both apps read, in the nested shape they use. */
function commonConfig(e: z.infer<typeof CommonEnv>) {
  return {
    redis: redisConfig(e),
    logLevel: e.LOG_LEVEL,
    voicesFile: e.VOICES_FILE,
    voicesDir: e.VOICES_DIR,
    modelAliases: e.MODEL_ALIASES,
    streamTtlS: e.STREAM_TTL_S,
  };
}

export interface StorageConfig {
  driver: 'fs' | 's3';
  dataDir: string;
  s3?: { bucket: string; endpoint?: string; region: string; forcePathStyle: boolean; prefix: string };
}

function storageConfig(e: z.infer<typeof StorageEnv>): StorageConfig {
  if (e.STORAGE_DRIVER === 's3' && !e.S3_BUCKET) {
    throw new ConfigError('invalid configuration:\n  S3_BUCKET: required when STORAGE_DRIVER=s3');
  }
  return {
    driver: e.STORAGE_DRIVER,
    dataDir: e.DATA_DIR,
    s3: e.S3_BUCKET
      ? { bucket: e.S3_BUCKET, endpoint: e.S3_ENDPOINT, region: e.S3_REGION, forcePathStyle: e.S3_FORCE_PATH_STYLE, prefix: e.S3_PREFIX }
      : undefined,
  };
}

function parseEnv<T extends z.ZodType>(schema: T, env: NodeJS.ProcessEnv): z.infer<T> {
  // Empty strings mean "unset" (compose files and shells produce them).
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const result = schema.safeParse(cleaned);
  if (!result.success) {
    const lines = result.error.issues.map((i) => `  ${i.path.join('.') || '(env)'}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  return result.data;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

export function loadApiConfig(env: NodeJS.ProcessEnv = process.env) {
  const e = parseEnv(ApiEnv, env);
  // Two roles, two keys: one string cannot be both a client's key and the operator's.
  if (e.ADMIN_API_KEY !== undefined && e.API_KEYS?.includes(e.ADMIN_API_KEY)) {
    throw new ConfigError('invalid configuration:\n  ADMIN_API_KEY: must not also be one of API_KEYS');
  }
  return {
    ...commonConfig(e),
    host: e.HOST,
    port: e.PORT,
    apiKeys: e.API_KEYS ?? [],
    adminApiKey: e.ADMIN_API_KEY,
    corsOrigins: e.CORS_ORIGINS ?? [],
    maxInputChars: e.MAX_INPUT_CHARS,
    maxQueueDepth: e.MAX_QUEUE_DEPTH,
    rateLimitPerMin: e.RATE_LIMIT_PER_MIN,
    queueTimeoutS: e.QUEUE_TIMEOUT_S,
    maxQueueWaitMs: e.MAX_QUEUE_WAIT_MS,
    publicDiscovery: e.PUBLIC_DISCOVERY,
    storage: storageConfig(e),
    maxBatchFileBytes: e.MAX_BATCH_FILE_BYTES,
    fileRetentionS: e.FILE_RETENTION_S,
    maxOpenBatches: e.MAX_OPEN_BATCHES,
    maxBatchItems: e.MAX_BATCH_ITEMS,
    batchLifecycleLockMs: e.BATCH_LIFECYCLE_LOCK_MS,
    bodyLimitBytes: e.BODY_LIMIT_BYTES,
    trustProxy: e.TRUST_PROXY ?? false,
    metricsAuth: e.METRICS_AUTH,
    shutdownGraceS: e.SHUTDOWN_GRACE_S,
    maxAudioSeconds: e.MAX_AUDIO_SECONDS,
    requestTimeoutS: e.REQUEST_TIMEOUT_S,
    headersTimeoutS: Math.min(e.HEADERS_TIMEOUT_S, e.REQUEST_TIMEOUT_S),
    keepAliveTimeoutS: e.KEEP_ALIVE_TIMEOUT_S,
  };
}
export type ApiConfig = ReturnType<typeof loadApiConfig>;

export function loadWorkerConfig(env: NodeJS.ProcessEnv = process.env) {
  const e = parseEnv(WorkerEnv, env);
  const concurrency = e.WORKER_CONCURRENCY ?? defaultWorkerConcurrency();
  if (e.WORKER_CONCURRENCY === 0 && e.WORKER_BATCH_CONCURRENCY === 0) {
    throw new ConfigError('invalid configuration:\n  WORKER_CONCURRENCY: 0 together with WORKER_BATCH_CONCURRENCY=0 leaves this worker no lane to serve');
  }
  return {
    ...commonConfig(e),
    engines: e.ENGINES,
    concurrency,
    batchConcurrency: e.WORKER_BATCH_CONCURRENCY,
    modelsDir: e.MODELS_DIR,
    executionProviders: e.EXECUTION_PROVIDERS,
    intraOpThreads: e.ORT_INTRA_OP_THREADS,
    inferenceBatchMax: e.INFERENCE_BATCH_MAX,
    inferenceBatchWaitMs: e.INFERENCE_BATCH_WAIT_MS,
    metricsPort: e.METRICS_PORT,
    metricsHost: e.METRICS_HOST,
    lockDurationMs: e.LOCK_DURATION_MS,
    stalledIntervalMs: e.STALLED_INTERVAL_MS,
    maxStartedAttempts: e.MAX_STARTED_ATTEMPTS,
    heartbeatIntervalMs: e.HEARTBEAT_INTERVAL_MS,
    failoverPollMs: e.FAILOVER_POLL_MS,
    encoderPoolSize: e.ENCODER_POOL_SIZE ?? defaultPoolSize(concurrency, 64),
    espeakPoolSize: e.ESPEAK_POOL_SIZE ?? defaultPoolSize(concurrency, 16),
    firstAudioGate: e.FIRST_AUDIO_GATE,
    shutdownGraceS: e.SHUTDOWN_GRACE_S,
    workerId: e.WORKER_ID,
    storage: storageConfig(e),
  };
}
export type WorkerConfig = ReturnType<typeof loadWorkerConfig>;

export function loadCliConfig(env: NodeJS.ProcessEnv = process.env) {
  const e = parseEnv(CliEnv, env);
  return {
    modelsDir: e.MODELS_DIR,
    hfEndpoint: e.HF_ENDPOINT.replace(/\/+$/, ''),
    hfToken: e.HF_TOKEN,
    apiBaseUrl: e.OPENAI_BASE_URL.replace(/\/+$/, ''),
    apiKey: e.OPENAI_API_KEY,
  };
}
export type CliConfig = ReturnType<typeof loadCliConfig>;
