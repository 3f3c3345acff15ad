import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { Worker } from 'bullmq';
import {
  createLogger, createRedisClient, JOB_CATALOG, JOB_NAMES, loadWorkerConfig, publishHeartbeat, RedisKeys,
  removeWorker, speechQueueName, waitForReady, type WorkerInfo,
} from '@chorus/shared';
import { createEngines } from './engines/engine-registry.ts';
import { EncoderPool } from './encoders/encoder-pool.ts';
import { createSynthesizeProcessor } from './processors/synthesize.ts';
import { CancelListener } from './cancel-listener.ts';
import { WorkerMetrics } from './metrics.ts';

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
const redis = createRedisClient(config.redis, 'worker', logger);
const subscriber = createRedisClient(config.redis, 'blocking', logger);
await waitForReady(redis, 30_000);

const engines = await createEngines(config.engines);
const encoders = new EncoderPool(config.encoderPoolSize);
encoders.warm();
const metrics = new WorkerMetrics();
const cancels = new CancelListener(subscriber, redis, keys);

const processors = { [JOB_NAMES.synthesize]: createSynthesizeProcessor({
  redis, engines, encoders, streamTtlS: config.streamTtlS, logger, metrics,
  isCancelled: (id) => cancels.isCancelled(id),
}) };
// Every job in the catalog needs exactly one processor, and no processor may lack a catalog entry.
for (const name of Object.keys(JOB_CATALOG)) {
  if (!(name in processors)) throw new Error(`no processor for job ${name}`);
}
for (const name of Object.keys(processors)) {
  if (!(name in JOB_CATALOG)) throw new Error(`processor ${name} has no catalog entry`);
}

const workers = [...engines.keys()].map((engine) => {
  const worker = new Worker(
    speechQueueName(engine),
    async (job, token, signal) => {
      const processor = processors[job.name as keyof typeof processors];
      if (!processor) throw new Error(`unknown job name ${job.name}`);
      return processor(job, token, signal);
    },
    {
      connection: redis,
      prefix: keys.bullPrefix(),
      concurrency: config.concurrency,
      lockDuration: config.lockDurationMs,
      stalledInterval: config.stalledIntervalMs,
      maxStalledCount: config.maxStartedAttempts,
      maxStartedAttempts: config.maxStartedAttempts,
      autorun: false,
    },
  );
  worker.on('error', (err) => logger.warn({ err: err.message, engine }, 'worker error'));
  worker.on('stalled', (jobId) => logger.warn({ jobId, engine }, 'job stalled; it will be retried'));
  metrics.watchWorker(worker, engine);
  return worker;
});

await cancels.start((jobId) => {
  for (const w of workers) w.cancelJob(jobId, 'cancelled by client');
}, logger);

const info = (): WorkerInfo => ({
  id: workerId, engines: [...engines.keys()], concurrency: config.concurrency, host: hostname(), pid: process.pid,
  startedAt, accepting: !stopping,
});
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
logger.info({ workerId, engines: [...engines.keys()], concurrency: config.concurrency }, 'worker ready');

async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, 'shutting down: finishing active jobs');
  clearInterval(heartbeat);
  await removeWorker(redis, keys, workerId).catch(() => {});
  // worker.close() waits for active jobs with no limit: bound it by the grace period.
  const closing = Promise.all(workers.map((w) => w.close()));
  const timedOut = await Promise.race([
    closing.then(() => false),
    new Promise<boolean>((r) => setTimeout(() => r(true), config.shutdownGraceS * 1000).unref()),
  ]);
  if (timedOut) {
    logger.warn('grace period over; aborting remaining jobs');
    await Promise.race([Promise.all(workers.map((w) => w.close(true))), new Promise((r) => setTimeout(r, 2000))]);
  }
  encoders.close();
  for (const engine of engines.values()) await engine.close?.();
  metricsServer?.close();
  await Promise.allSettled([redis.quit(), subscriber.quit()]);
  logger.info('worker stopped');
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
