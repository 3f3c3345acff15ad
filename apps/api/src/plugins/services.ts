import fp from 'fastify-plugin';
import { randomBytes } from 'node:crypto';
import type { RedisClient } from '@chorus/shared';
import {
  createRedisClient, createStorage, ModelTable, RedisKeys, VoiceCatalog, within, type ApiConfig,
} from '@chorus/shared';
import { StreamHub } from '../relay/stream-hub.ts';
import { SpeechService } from '../services/speech-service.ts';
import { ReplicaAck } from '../services/replica-ack.ts';
import { WorkerDirectory } from '../services/worker-directory.ts';
import { ClientIdentity } from '../services/client-identity.ts';
import { FileStore } from '../services/file-store.ts';
import { BatchService } from '../services/batch-service.ts';
import { ApiMetrics } from '../metrics.ts';
import { QueueDepthExporter } from '../queue-depth-exporter.ts';

/** The longest one step of the API's close (onClose) may take. */
const CLOSE_STEP_MS = 5000;

declare module 'fastify' {
  interface FastifyInstance {
    config: ApiConfig;
    redis: RedisClient;
    keys: RedisKeys;
    hub: StreamHub;
    speech: SpeechService;
    directory: WorkerDirectory;
    voices: VoiceCatalog;
    models: ModelTable;
    identity: ClientIdentity;
    metrics: ApiMetrics;
    files: FileStore;
    batches: BatchService;
    /** Set when SIGTERM arrived: readiness fails, new work is refused. */
    draining: boolean;
  }
}

/**
 * Creates and owns the Redis connections (a fail-fast producer and one blocking reader for the relay), the
 * relay hub and the services every route uses; closes them on app close.
 */
export const servicesPlugin = fp<{ config: ApiConfig }>(
  async (app, { config }) => {
    const keys = new RedisKeys(config.redis.prefix);
    const voices = VoiceCatalog.load(config.voicesFile, config.voicesDir);
    const models = new ModelTable(config.modelAliases);
    const redis = createRedisClient(config.redis, 'producer', app.log as never);
    const blocking = createRedisClient(config.redis, 'blocking', app.log as never);
    const relayId = randomBytes(8).toString('hex');
    const hub = new StreamHub(blocking, redis, keys.wakeStream(relayId), app.log, config.streamTtlS);
    const directory = new WorkerDirectory(redis, keys);
    const metrics = new ApiMetrics();
    const speech = new SpeechService({
      redis, keys, relayId, hub, directory, models, voices, maxQueueDepth: config.maxQueueDepth,
      maxQueueWaitMs: config.maxQueueWaitMs, queueTimeoutS: config.queueTimeoutS,
      maxAudioSeconds: config.maxAudioSeconds,
      onAdmission: (outcome) => metrics.admissions.inc({ outcome }),
      replicaAck: config.redis.sentinels || config.redis.clusterNodes
        ? new ReplicaAck(redis, app.log, keys.bullPrefix())
        : undefined,
    });

    app.decorate('config', config);
    // A getter: fastify's decorate() type cannot infer a union of two client classes from a plain value.
    app.decorate('redis', { getter: () => redis });
    app.decorate('keys', keys);
    app.decorate('hub', hub);
    app.decorate('speech', speech);
    app.decorate('directory', directory);
    app.decorate('voices', voices);
    app.decorate('models', models);
    app.decorate('identity', new ClientIdentity({
      apiKeys: config.apiKeys, adminApiKey: config.adminApiKey, redis, secretKey: keys.identitySecret(),
    }));
    const queueDepth = new QueueDepthExporter({
      redis, leaseKey: keys.metricsLeader(), engines: models.engines, queue: (e, lane) => speech.queue(e, lane), log: app.log,
    });
    metrics.setQueueDepthSource(() => queueDepth.snapshot());
    app.decorate('metrics', metrics);
    app.decorate('draining', false);
    const files = new FileStore({
      redis, keys, storage: await createStorage(config.storage), retentionS: config.fileRetentionS, log: app.log,
    });
    app.decorate('files', files);
    const batches = new BatchService({
      redis, keys, storage: files.storage, speech, retentionS: config.fileRetentionS, maxInputChars: config.maxInputChars,
      maxOpenBatches: config.maxOpenBatches, maxItems: config.maxBatchItems, lifecycleLockMs: config.batchLifecycleLockMs,
      onItemEnded: (outcome) => metrics.batchItems.inc({ outcome }),
    });
    // BullMQ's worker connection for the lifecycle jobs (validation, expiry) this replica takes its share of.
    // 'worker' role: pinged by the link monitor, so a connection a partition killed silently is replaced (BullMQ
    // sends its lock renewals and job moves on it; a dead one would also hold close() in QUIT forever).
    const lifecycleConnection = createRedisClient(config.redis, 'worker', app.log as never);
    app.decorate('batches', batches);

    app.addHook('onReady', async () => {
      hub.start();
      await queueDepth.start();
      files.startSweeping();
      batches.startLifecycle(lifecycleConnection, app.log as never);
    });
    app.addHook('onClose', async () => {
      // Each step waits on Redis, and after a Cluster primary died one of them (BullMQ's closes or QUIT) sometimes
      // never returned: each is bounded and named in the log, so close() always ends and the connections are cut.
      const steps: [string, () => Promise<unknown>][] = [
        ['queue depth exporter', () => queueDepth.stop()],
        ['file sweeper', () => files.stopSweeping()],
        ['batch lifecycle', () => batches.close()],
        ['storage', () => files.storage.close()],
        ['relay', () => hub.close()],
        ['queues', () => speech.close()],
        ['redis quit', () => Promise.allSettled([redis.quit(), blocking.quit(), lifecycleConnection.quit()])],
      ];
      for (const [step, run] of steps) {
        if (!(await within(run(), CLOSE_STEP_MS))) app.log.warn({ step, boundMs: CLOSE_STEP_MS }, 'close step did not finish in time; moving on');
      }
      redis.disconnect();
      blocking.disconnect();
      lifecycleConnection.disconnect();
    });
  },
  { name: 'services' },
);
