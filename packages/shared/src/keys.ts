/**
 * The only place that builds Redis key strings. Shapes (`{prefix}` from REDIS_PREFIX, default `chorus`):
 *
 *   {prefix}:audio:{<relay>}:<jobId>   stream  audio chunks + one terminal record of a job; TTL STREAM_TTL_S
 *   {prefix}:wake:{<relay>}            stream  MAXLEN 1; XADDed by an API process to wake its own shared reader
 *   {prefix}:cancel:<jobId>            string  cancel flag a worker checks before and while running a job; TTL
 *   {prefix}:cancel                    pubsub  job ids to cancel, for the worker holding the job
 *   {prefix}:{workers}                 zset    workerId -> heartbeat expiry (ms since epoch)
 *   {prefix}:{workers}:<workerId>      string  JSON WorkerInfo; TTL = heartbeat TTL
 *   {prefix}:failover:<workerId>:<queue> string  which survivor hands a dead worker's jobs in <queue> back (SET NX; TTL)
 *   {prefix}:ratelimit:<client>        string  requests in the current minute (@fastify/rate-limit RedisStore);
 *                                      <client> is k:<HMAC of the API key> or ip:<address>
 *   {prefix}:identity-secret           string  per-deployment HMAC secret naming API keys (SET NX once; no TTL)
 *   {prefix}:metrics:queue-leader      string  id of the API process exporting chorus_queue_jobs; TTL (a lease)
 *   {prefix}:starts:<queue>            list    ms timestamps of the last realtime starts of an engine queue (admission's
 *                                      rate; LPUSH + LTRIM by every API replica); TTL 1 h
 *   {prefix}:file:<fileId>             string  JSON metadata of an uploaded file (/v1/files); TTL FILE_RETENTION_S
 *   {prefix}:files                     zset    every file id (score 0, ids sort by creation time): admin listing
 *   {prefix}:files:owner:<owner>       zset    the file ids one client uploaded (`-` while keys are off)
 *   {prefix}:batch:{<batchId>}        hash    a batch: static fields, status, counters, timestamps; TTL FILE_RETENTION_S
 *   {prefix}:batch:{<batchId>}:outcomes hash  custom_id -> JSON outcome of each finished item (set once)
 *   {prefix}:batches:owner:<owner>     zset    one client's batch ids (`-` while keys are off)
 *   {prefix}:batches:open:<owner>      set     the client's batches that may still be open (MAX_OPEN_BATCHES);
 *                                      pruned of ended ones whenever it is counted
 *   BullMQ queues use the prefix `{<prefix>}` (hash-tagged so a queue's keys share a Cluster slot).
 *
 * `<relay>` is the id of the API process relaying the job. Its audio streams and its wake stream share that hash
 * tag, so the one XREAD that reads them all stays within one Cluster slot.
 *
 * Redis Cluster (REDIS_CLUSTER_NODES): keys written or read together in one command, transaction or script share a
 * hash tag (the part in literal braces), so they share a slot: a queue's keys (`{<prefix>}`), a relay's streams
 * (`{<relay>}`), a batch and its outcomes (`{<batchId>}`), the worker registry (`{workers}`: the heartbeat's
 * MULTI and the registry's MGET). Everything else is read or written one key per command (the file and batch
 * indexes, cancel flags), so it spreads over the cluster. The `{workers}` tag is new with Cluster support: older
 * versions used `{prefix}:workers` and `{prefix}:worker:<id>` (heartbeats, rewritten every few seconds; nothing
 * to migrate).
 */
export class RedisKeys {
  readonly prefix: string;

  constructor(prefix: string) {
    if (prefix.includes('{') || prefix.includes('}')) throw new Error('REDIS_PREFIX must not contain braces');
    this.prefix = prefix;
  }

  audioStream(relayId: string, jobId: string): string {
    return `${this.prefix}:audio:{${relayId}}:${jobId}`;
  }

  wakeStream(relayId: string): string {
    return `${this.prefix}:wake:{${relayId}}`;
  }

  cancelFlag(jobId: string): string {
    return `${this.prefix}:cancel:${jobId}`;
  }

  cancelChannel(): string {
    return `${this.prefix}:cancel`;
  }

  /** The live-worker registry; hash-tagged with worker() so a heartbeat's MULTI stays in one Cluster slot. */
  workers(): string {
    return `${this.prefix}:{workers}`;
  }

  worker(workerId: string): string {
    return `${this.prefix}:{workers}:${workerId}`;
  }

  /** Lease held by the one API process that exports queue depth, so N replicas do not report it N times. */
  metricsLeader(): string {
    return `${this.prefix}:metrics:queue-leader`;
  }

  /** Recent job starts of one queue (queue-admission.ts): the fleet's start rate, shared by every API replica. */
  admissionStarts(queueName: string): string {
    return `${this.prefix}:starts:${queueName}`;
  }

  /** API replicas that relayed a start of this queue, with when they last did (sorted set: replica id → ms). */
  admissionStarters(queueName: string): string {
    return `${this.prefix}:starters:${queueName}`;
  }

  /** HMAC secret shared by every API replica: names clients (budgets, job owners) without revealing keys. */
  identitySecret(): string {
    return `${this.prefix}:identity-secret`;
  }

  /** @fastify/rate-limit's RedisStore `nameSpace`: it appends the client id (a keyed hash of the API key, or the IP). */
  rateLimitNamespace(): string {
    return `${this.prefix}:ratelimit:`;
  }

  file(fileId: string): string {
    return `${this.prefix}:file:${fileId}`;
  }

  /** Every file id, whoever owns it (no route lists it since the admin key stopped being a client key). */
  allFiles(): string {
    return `${this.prefix}:files`;
  }

  /** One client's file ids (`undefined` owner: keys are off). */
  ownerFiles(owner: string | undefined): string {
    return `${this.prefix}:files:owner:${owner ?? '-'}`;
  }

  /** A batch; hash-tagged with its id so the outcome script's two keys share a Cluster slot. */
  batch(batchId: string): string {
    return `${this.prefix}:batch:{${batchId}}`;
  }

  batchOutcomes(batchId: string): string {
    return `${this.prefix}:batch:{${batchId}}:outcomes`;
  }

  ownerBatches(owner: string | undefined): string {
    return `${this.prefix}:batches:owner:${owner ?? '-'}`;
  }

  ownerOpenBatches(owner: string | undefined): string {
    return `${this.prefix}:batches:open:${owner ?? '-'}`;
  }

  /** Claimed (SET NX) by the one survivor that hands a dead worker's jobs in `queue` back. */
  failoverClaim(workerId: string, queue: string): string {
    return `${this.prefix}:failover:${workerId}:${queue}`;
  }

  /** BullMQ's own `prefix` option. */
  bullPrefix(): string {
    return `{${this.prefix}}`;
  }
}
