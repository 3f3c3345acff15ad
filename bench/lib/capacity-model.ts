/*
 * The capacity model of docs/scaling.md: from figures bench/capacity.ts measures (per request and per MB relayed,
 * per worker, per idle process) and a few stated deployment assumptions, the API replicas, worker replicas and
 * Redis nodes a target of N concurrent streams and M requests per second needs, and which part saturates first.
 */

/** A cost with a fixed part per request and a part per MB of audio relayed (fitted from two request sizes). */
export interface Linear {
  perRequest: number;
  perMB: number;
}

export const at = (c: Linear, mb: number): number => c.perRequest + c.perMB * mb;

export interface RedisCost {
  commands: number;
  netInBytes: number;
  netOutBytes: number;
  cpuMs: number;
}

export interface MeasuredInputs {
  /** The request the targets count (measured directly: its chunking and job length differ from the fit's pcm). */
  reference: { chars: number; format: string; mbPerRequest: number; audioSeconds: number };
  redis: {
    perRequest: RedisCost;
    /** How the costs grow with the audio relayed (pcm of two sizes): for other formats and lengths. */
    fit: { [K in keyof RedisCost]: Linear };
    /** Share of Redis command time spent on queue (non-relay) commands: the part Cluster cannot spread. */
    queueShare: number;
    /** Redis CPU ms per second that one idle API or worker process causes (heartbeats, blocking polls). */
    idleCpuMsPerSPerProcess: number;
  };
  api: { cpuMsPerRequest: number; cpuMs: Linear; rssMBPerStream: number; idleRssMB: number };
  workers: Record<string, { slots: number; jobsPerS: number; cpuMsPerJob: number }>;
  workerStartS: number;
}

export interface Assumptions {
  /** Share of a resource the plan fills, leaving headroom for bursts. */
  utilisation: number;
  /** An API replica: Node's one JavaScript thread. */
  apiCores: number;
  /** Memory limit of an API replica (MB). */
  apiMemoryMB: number;
  /** A Redis node: one core (its command thread). */
  redisCores: number;
  /** Network of a Redis node, MB/s (1 Gbit/s ≈ 119 MiB/s). */
  redisNetMBps: number;
}

export const DEFAULT_ASSUMPTIONS: Assumptions = {
  utilisation: 0.7, apiCores: 1, apiMemoryMB: 512, redisCores: 1, redisNetMBps: 119,
};

export interface Plan {
  streams: number;
  rps: number;
  api: { replicas: number; byCpu: number; byMemory: number; bound: 'cpu' | 'memory' };
  workers: Record<string, number>;
  redis: {
    nodes: number; byCpu: number; byNet: number; bound: 'cpu' | 'network';
    commandsPerS: number; mbPerS: number; cpuCores: number;
    /** The queue part must fit one node (every BullMQ queue shares the `{prefix}` hash slot); its use of that node. */
    queueNodeUtilisation: number;
  };
}

/** Requests per second one replica of each part carries of the reference request, at the planned utilisation. */
export function perReplica(m: MeasuredInputs, a: Assumptions = DEFAULT_ASSUMPTIONS) {
  const r = m.redis.perRequest;
  const workers: Record<string, number> = {};
  for (const [engine, w] of Object.entries(m.workers)) workers[engine] = w.jobsPerS * a.utilisation;
  return {
    apiRps: (a.apiCores * 1000 * a.utilisation) / m.api.cpuMsPerRequest,
    apiStreams: ((a.apiMemoryMB - m.api.idleRssMB) * a.utilisation) / m.api.rssMBPerStream,
    workers,
    redisRps: Math.min(
      (a.redisCores * 1000 * a.utilisation) / r.cpuMs,
      (a.redisNetMBps * 2 ** 20 * a.utilisation) / (r.netInBytes + r.netOutBytes),
    ),
    /** Past this the queue commands alone fill a node: more replicas or Cluster shards do not help. */
    queueCeilingRps: (a.redisCores * 1000) / (r.cpuMs * m.redis.queueShare),
  };
}

export function plan(m: MeasuredInputs, streams: number, rps: number, a: Assumptions = DEFAULT_ASSUMPTIONS): Plan {
  const r = m.redis.perRequest;
  const cap = perReplica(m, a);
  const apiByCpu = Math.ceil(rps / cap.apiRps);
  const apiByMemory = Math.ceil(streams / cap.apiStreams);
  const apiReplicas = Math.max(1, apiByCpu, apiByMemory);
  const workers: Record<string, number> = {};
  for (const [engine, perS] of Object.entries(cap.workers)) workers[engine] = Math.max(1, Math.ceil(rps / perS));
  // Redis CPU: the requests, plus the idle polling of every process (the largest worker fleet of the engines).
  const processes = apiReplicas + Math.max(...Object.values(workers));
  const cpuMsPerS = rps * r.cpuMs + processes * m.redis.idleCpuMsPerSPerProcess;
  const mbPerS = (rps * (r.netInBytes + r.netOutBytes)) / 2 ** 20;
  const byCpu = Math.ceil(cpuMsPerS / (a.redisCores * 1000 * a.utilisation));
  const byNet = Math.ceil(mbPerS / (a.redisNetMBps * a.utilisation));
  return {
    streams, rps,
    api: { replicas: apiReplicas, byCpu: apiByCpu, byMemory: apiByMemory, bound: apiByMemory > apiByCpu ? 'memory' : 'cpu' },
    workers,
    redis: {
      nodes: Math.max(1, byCpu, byNet), byCpu, byNet, bound: byNet > byCpu ? 'network' : 'cpu',
      commandsPerS: rps * r.commands, mbPerS, cpuCores: cpuMsPerS / 1000,
      queueNodeUtilisation: (rps * r.cpuMs * m.redis.queueShare) / (a.redisCores * 1000),
    },
  };
}

/**
 * Which part saturates first as load grows on one replica of each (the reference request, streams held for its
 * audio duration), and the load where it does.
 */
export function firstBottleneck(m: MeasuredInputs, engine: string, a: Assumptions = DEFAULT_ASSUMPTIONS) {
  const cap = perReplica(m, a);
  const candidates = [
    { part: `${engine} worker`, rps: cap.workers[engine]! },
    { part: 'API CPU', rps: cap.apiRps },
    { part: 'API memory (streams)', rps: cap.apiStreams / m.reference.audioSeconds },
    { part: 'Redis node', rps: cap.redisRps },
  ].sort((x, y) => x.rps - y.rps);
  return { first: candidates[0]!, order: candidates };
}
