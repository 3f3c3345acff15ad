import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { Queue, Worker, type WorkerOptions } from 'bullmq';
import {
  BATCH_CONTROL_QUEUE, createLogger, createRedisClient, createStorage, ERRORS, FINALIZE_JOB, JOB_CATALOG, JOB_NAMES,
  loadWorkerConfig, publishHeartbeat, RedisKeys, removeWorker, speechQueueName, TtsJob, waitForReady, LANES, within, workerConnectionName,
  type Lane, type WorkerInfo,
} from '@chorus/shared';
import { createEngines } from './engines/engine-registry.ts';
import type { TtsEngine } from './engines/engine.ts';
import { benchEngineOptionsFromEnv } from './engines/bench-engine.ts';
import { EncoderPool } from './encoders/encoder-pool.ts';
import { checkLame } from './encoders/lame-encoder.ts';
import { createSynthesizeProcessor } from './processors/synthesize.ts';
import { FirstAudioGate } from './processors/first-audio-gate.ts';
import { Spawner } from './spawner/spawner.ts';
import { CancelListener } from './cancel-listener.ts';
import { terminateStream } from './stream/terminate-stream.ts';
import { WorkerMetrics } from './metrics.ts';
import { settleItem, type BatchDeps } from './batch/storage-sink.ts';
import { finalizeBatch } from './batch/finalize.ts';
import { PeerWatch } from './failover/peer-watch.ts';
import { handBack } from './failover/hand-back.ts';

const config = loadWorkerConfig();
const logger = createLogger(config.logLevel, 'chorus-worker');

process.on('uncaughtException', (err) => {
  logger.fatal({ err }, 'uncaught exception');
  process.exit(1);
});
process.on('unhandledRejection', (err) => {
  logger.fatal({ err }, 'unhandled rejection');
  process.exit(1);
});

const keys = new RedisKeys(config.redis.prefix);
const workerId = config.workerId ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
// Named after this process (BullMQ's blocking connections duplicate it, name included): peers see it die.
const connectionName = workerConnectionName(config.redis.prefix, workerId);
const redis = createRedisClient(config.redis, 'worker', logger, connectionName);
const subscriber = createRedisClient(config.redis, 'blocking', logger, connectionName);
await waitForReady(redis, 30_000);

// One per process: it shares out this machine's CPU between the jobs of every engine and lane, and times the warm
// pools' process starts.
const gate = config.firstAudioGate ? new FirstAudioGate() : undefined;
const deferRefill = gate ? (refill: () => void) => gate.whenIdle(refill) : undefined;
// espeak-ng and LAME start from a small helper process, so that no spawn blocks this event loop (spawner.ts).
const spawner = new Spawner();

// Engines load their models here, before the worker takes jobs. A missing or broken model file stops the worker
// with one line naming the file.
let engines: Map<string, TtsEngine>;
try {
  engines = await createEngines(config.engines, {
    modelsDir: config.modelsDir, executionProviders: config.executionProviders, intraOpThreads: config.intraOpThreads,
    inferenceBatchMax: config.inferenceBatchMax, inferenceBatchWaitMs: config.inferenceBatchWaitMs,
    espeakPoolSize: config.espeakPoolSize, deferRefill, spawn: spawner.spawn,
    bench: benchEngineOptionsFromEnv(process.env), warn: (message) => logger.warn(message),
  });
  await checkLame();
} catch (err) {
  logger.fatal(`worker cannot start: ${(err as Error).message}`);
  await new Promise((r) => setTimeout(r, 50)); // let the log line out
  process.exit(1);
}
const encoders = new EncoderPool(config.encoderPoolSize, { deferRefill, spawn: spawner.spawn });
// Encoders take the engines' native PCM (they resample it), so they are kept warm at those rates.
encoders.warm([...engines.values()].map((e) => e.sampleRate));
const metrics = new WorkerMetrics();
const cancels = new CancelListener(subscriber, redis, keys);

// Batch items write to the storage the API reads; finalizers run on the control queue.
const storage = await createStorage(config.storage);
const control = new Queue(BATCH_CONTROL_QUEUE, { connection: redis, prefix: keys.bullPrefix() });
control.on('error', (err) => logger.warn({ err: err.message }, 'control queue error'));
const batch: BatchDeps = {
  redis, keys, storage, control,
  onItem: (outcome) => metrics.batchItems.inc({ outcome }),
  onBatch: (status, seconds) => metrics.batchDuration.observe({ status }, seconds),
};

const processors = { [JOB_NAMES.synthesize]: createSynthesizeProcessor({
  redis, engines, encoders, streamTtlS: config.streamTtlS, logger, metrics, maxStartedAttempts: config.maxStartedAttempts,
  batch, gate,
  isCancelled: (id) => cancels.isCancelled(id),
}) };
// Every job in the catalog needs exactly one processor, and no processor may lack a catalog entry.
for (const name of Object.keys(JOB_CATALOG)) {
  if (!(name in processors)) throw new Error(`no processor for job ${name}`);
}
for (const name of Object.keys(processors)) {
  if (!(name in JOB_CATALOG)) throw new Error(`processor ${name} has no catalog entry`);
}

// One BullMQ worker per engine and lane: realtime requests have their own slots (WORKER_CONCURRENCY), batch
// items theirs (WORKER_BATCH_CONCURRENCY), so a batch backlog never takes the slot a realtime request needs.
const lanes = [...engines.keys()].flatMap((engine) =>
  LANES.map((lane) => ({ engine, lane, concurrency: lane === 'realtime' ? config.concurrency : config.batchConcurrency }))
    .filter((l) => l.concurrency > 0),
);
/** Jobs running per queue (a realtime lane's free slots decide whether a failover needs extra ones). */
const running = new Map<string, number>();
function createWorker(queue: string, engine: string, concurrency: number, extra: Partial<WorkerOptions> = {}) {
  const worker = new Worker(
    queue,
    async (job, token, signal) => {
      const processor = processors[job.name as keyof typeof processors];
      if (!processor) throw new Error(`unknown job name ${job.name}`);
      running.set(queue, (running.get(queue) ?? 0) + 1);
      try {
        return await processor(job, token, signal);
      } finally {
        running.set(queue, running.get(queue)! - 1);
      }
    },
    {
      connection: redis,
      prefix: keys.bullPrefix(),
      concurrency,
      lockDuration: config.lockDurationMs,
      stalledInterval: config.stalledIntervalMs,
      maxStalledCount: config.maxStartedAttempts,
      maxStartedAttempts: config.maxStartedAttempts,
      autorun: false,
      ...extra,
    },
  );
  worker.on('error', (err) => logger.warn({ err: err.message, engine }, 'worker error'));
  worker.on('stalled', (jobId) => logger.warn({ jobId, engine }, 'job stalled; it will be retried'));
  worker.on('failed', (job, err) => {
    // Emitted for every failed attempt: one that BullMQ retries (no finishedOn) keeps its stream open.
    if (!job?.finishedOn) return;
    // A batch item BullMQ failed without the processor seeing it (it kept crashing workers) still needs an outcome,
    // or its batch would never finish. settleItem records nothing when the processor recorded one.
    const item = TtsJob.safeParse(job.data);
    if (item.success && item.data.sink) {
      const sink = item.data.sink;
      settleItem(batch, sink, {
        status: 'failed', request_id: item.data.requestId, line: sink.line, code: ERRORS.TTS_ERR_ENGINE_FAILED.code,
        message: 'Synthesis failed.', param: null,
      }).catch((e: Error) => logger.error({ jobId: job.id, err: e.message }, 'could not record a failed batch item'));
      return;
    }
    terminateStream(redis, job, err, config.streamTtlS)
      .then((wrote) => wrote && logger.warn({ jobId: job.id, engine, err: err.message }, 'job failed outside the processor'))
      .catch((e: Error) => logger.error({ jobId: job.id, err: e.message }, 'could not end the stream of a failed job'));
  });
  metrics.watchWorker(worker, engine);
  return worker;
}

const laneOf = new Map<Worker, { engine: string; lane: Lane; concurrency: number }>();
const workers = lanes.map((l) => {
  const worker = createWorker(speechQueueName(l.engine, l.lane), l.engine, l.concurrency);
  laneOf.set(worker, l);
  return worker;
});

// The control queue: batch finalizers (small, durable; one per batch by job id).
const controlWorker = new Worker(
  BATCH_CONTROL_QUEUE,
  async (job) => {
    if (job.name !== FINALIZE_JOB) throw new Error(`unknown control job ${job.name}`);
    await finalizeBatch(batch, (job.data as { batchId: string }).batchId, logger);
  },
  { connection: redis, prefix: keys.bullPrefix(), concurrency: 1, autorun: false },
);
controlWorker.on('error', (err) => logger.warn({ err: err.message }, 'control worker error'));
workers.push(controlWorker);

/** Short-lived extra workers that give a dead peer's realtime jobs a slot at once (see rescue()). */
const rescues = new Set<Worker>();

await cancels.start((jobId) => {
  for (const w of [...workers, ...rescues]) w.cancelJob(jobId, 'cancelled by client');
}, logger);

const info = (): WorkerInfo => ({
  id: workerId, engines: [...engines.keys()], concurrency: config.concurrency, batchConcurrency: config.batchConcurrency, host: hostname(), pid: process.pid,
  startedAt, accepting: !stopping, models: loadedModels.length > 0 ? loadedModels : undefined,
  lockOwners: [...workers, ...rescues].map((w) => w.id),
});
const loadedModels = [...engines.values()].flatMap((e) => (e.loaded ? [e.loaded()] : []));
const startedAt = Date.now();
let stopping = false;
const heartbeatTtl = config.heartbeatIntervalMs * 3;
const beat = () =>
  publishHeartbeat(redis, keys, info(), heartbeatTtl).catch((err: Error) =>
    logger.warn({ err: err.message }, 'heartbeat failed'),
  );
await beat();
const heartbeat = setInterval(beat, config.heartbeatIntervalMs);

let metricsServer: import('node:http').Server | undefined;
if (config.metricsPort > 0) {
  const { server, port } = await metrics.listen(config.metricsPort, config.metricsHost);
  metricsServer = server;
  logger.info({ port }, 'metrics listening');
}

for (const w of workers) void w.run();

/*
 * Failover: a peer whose connections vanished (PeerWatch) has its jobs handed back by one survivor per queue
 * (SET NX claim): its locks are released and BullMQ's stalled check moves the jobs to the head of wait at once,
 * instead of after lock expiry plus up to two checks (7 s of silence measured with the defaults). A realtime job
 * is a stream someone is listening to, so it must not wait for a slot either: when this worker's lane has fewer
 * free slots than jobs handed back, a short-lived extra BullMQ worker takes the difference (it stops fetching once
 * it has started that many, and closes when they finish). The extra slots are bounded by the dead worker's own
 * concurrency and only last one job each.
 */
const RESCUE_IDLE_MS = 10_000;
async function rescue(peer: WorkerInfo) {
  if (stopping || !peer.lockOwners?.length) return;
  // Realtime lanes first: their jobs are streams someone is listening to.
  const order = [...workers].sort((a, b) => Number(laneOf.get(b)?.lane === 'realtime') - Number(laneOf.get(a)?.lane === 'realtime'));
  for (const worker of order) {
    // One survivor per queue at a time; the claim goes once the hand-back is done, so a later death of the same
    // peer (one declared dead too early, then seen again) is handed back too. A survivor that comes second finds
    // the locks gone or held by a rescuer's token and releases nothing.
    const claim = keys.failoverClaim(peer.id, worker.name);
    if (!(await redis.set(claim, workerId, 'PX', 60_000, 'NX'))) continue;
    let handed: Awaited<ReturnType<typeof handBack>>;
    try {
      handed = await handBack(redis, worker, peer.lockOwners);
    } finally {
      await redis.del(claim);
    }
    const ids = handed.released;
    if (ids.length === 0) continue;
    const lane = laneOf.get(worker);
    const free = lane ? Math.max(0, lane.concurrency - (running.get(worker.name) ?? 0)) : 0;
    const extra = lane?.lane === 'realtime' ? Math.max(0, ids.length - free) : 0;
    // Extra slots only once the jobs are back in wait: started earlier, they would take the jobs queued behind
    // (and close), leaving the dead worker's streams to wait for a regular slot.
    logger.warn({ peer: peer.id, queue: worker.name, jobs: ids, moved: handed.moved, extraSlots: extra }, 'dead worker\'s jobs handed back');
    if (extra > 0 && handed.moved && !stopping) startRescueWorker(worker.name, lane!.engine, extra);
  }
}

function startRescueWorker(queue: string, engine: string, slots: number) {
  let started = 0;
  let closing = false;
  const worker = createWorker(queue, engine, slots, { skipStalledCheck: true });
  const close = () => {
    if (closing) return;
    closing = true;
    clearTimeout(idle);
    void worker.close().finally(() => {
      rescues.delete(worker);
      void beat();
    });
  };
  // Stops fetching once it has its `slots` jobs (close() lets running jobs finish), or when none came.
  worker.on('active', () => {
    if (++started >= slots) close();
  });
  const idle = setTimeout(close, RESCUE_IDLE_MS);
  idle.unref();
  rescues.add(worker);
  void beat(); // peers must know its lock ids if this process dies too
  void worker.run();
}

const peers = new PeerWatch({
  redis, keys, prefix: config.redis.prefix, selfId: workerId, pollMs: config.failoverPollMs, logger, onDead: rescue,
});
peers.start();
logger.info({ workerId, engines: [...engines.keys()], concurrency: config.concurrency, batchConcurrency: config.batchConcurrency }, 'worker ready');

/**
 * SIGTERM: leave the live-worker set first (the API stops routing to us, /readyz stops counting us), stop
 * taking jobs, let active ones finish within SHUTDOWN_GRACE_S, exit 0. Jobs still running after the grace
 * period keep their lock; once this process's connections close a peer's PeerWatch releases it (or it expires),
 * and another worker resumes their streams at the published offset.
 */
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  const graceMs = config.shutdownGraceS * 1000;
  logger.info({ signal, graceS: config.shutdownGraceS }, 'shutting down: finishing active jobs');
  clearInterval(heartbeat);
  peers.stop();
  await within(removeWorker(redis, keys, workerId), 2000);
  // worker.close() waits for active jobs with no limit of its own.
  const all = [...workers, ...rescues];
  const finished = await within(Promise.all(all.map((w) => w.close())), graceMs);
  if (!finished) {
    logger.warn('grace period over; leaving remaining jobs to stall recovery');
    await within(Promise.all(all.map((w) => w.close(true))), 2000);
  }
  gate?.close(); // no job's processes stay stopped behind this worker
  encoders.close();
  await within(control.close(), 2000);
  await storage.close();
  for (const engine of engines.values()) await engine.close?.();
  spawner.close();
  metricsServer?.close();
  await within(Promise.allSettled([redis.quit(), subscriber.quit()]), 2000);
  logger.info('worker stopped');
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
