/**
 * Capacity model inputs, measured in this run on a private stack (its own redis-server, so nothing else counts),
 * then the model's plan for a few targets and an autoscaling simulation (docs/scaling.md).
 *
 * Phases, each measured as deltas of Redis INFO stats/commandstats, /proc CPU of the API, worker (with its
 * espeak-ng/ffmpeg children) and redis-server, with the idle rate of the same stack subtracted:
 *  1. idle: the stack doing nothing (heartbeats, blocking polls);
 *  2. small and large: tiny and long pcm requests from the `bench` engine (no synthesis CPU), so API CPU, Redis
 *     commands, bytes and CPU split into a part per request and a part per MB relayed;
 *  3. streams: slow real-time readers held open at once, the API's RSS per stream;
 *  4. espeak: the reference request (300-character mp3) through a fresh espeak worker with default slots:
 *     jobs/s and CPU per job, and Redis per request measured directly (a check on the fitted model);
 *  5. bench: the same request through a latency-bound worker (the `bench` engine, a GPU stand-in).
 * Worker start time: spawn to first heartbeat of each worker started.
 *
 *   node --import tsx bench/capacity.ts [--quick] [--streams N --rps M] [--out FILE]
 */
import { availableParallelism } from 'node:os';
import { defaultWorkerConcurrency } from '@chorus/shared';
import { DEFAULT_ASSUMPTIONS, firstBottleneck, perReplica, plan, type Linear, type MeasuredInputs } from './lib/capacity-model.ts';
import { rampCurve, simulateAutoscaling } from './lib/autoscale-sim.ts';
import { AGENT, speech, speechBody, type SpeechResult } from './lib/http-client.ts';
import { closedLoop, sleep } from './lib/load.ts';
import { isMain } from './lib/main.ts';
import { PCM_BYTES_PER_SEC } from './lib/playback.ts';
import { cpuMs, rssBytes, treeCpuMs } from './lib/processes.ts';
import { QUICK, markStart, printTable, writeResults } from './lib/report.ts';
import { BenchStack } from './lib/stack.ts';
import { median, round } from './lib/stats.ts';
import { PARAGRAPH_300, textOfLength } from './lib/texts.ts';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const MB = 2 ** 20;
const N = QUICK
  ? { idleMs: 1500, small: 20, large: 4, streams: 30, espeak: 4, bench: 4 }
  : { idleMs: 8000, small: 300, large: 40, streams: 400, espeak: 32, bench: 32 };
const SMALL_TEXT = 'Hi.';
const LARGE_TEXT = textOfLength(600);
/** A latency-bound engine's worker: a few slots, a wait per segment (a GPU's inference). */
const BENCH_SLOTS = 4;
const BENCH_DELAY_MS = 100;
/** Kubernetes' share of a worker's start (scheduling, container start; image already on the node): assumed. */
const POD_START_S = 10;

interface RedisSnap {
  calls: Record<string, { calls: number; usec: number }>;
  netIn: number;
  netOut: number;
  replyBytes: number;
}

/** Parses `INFO stats commandstats` (one command, so one reply whose size we subtract from the next delta). */
async function redisSnap(stack: BenchStack): Promise<RedisSnap> {
  const text = (await stack.redis.call('INFO', 'stats', 'commandstats')) as string;
  const calls: RedisSnap['calls'] = {};
  for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) calls[m[1]!] = { calls: Number(m[2]), usec: Number(m[3]) };
  const num = (k: string) => Number(new RegExp(`^${k}:(\\d+)`, 'm').exec(text)?.[1] ?? Number.NaN);
  return { calls, netIn: num('total_net_input_bytes'), netOut: num('total_net_output_bytes'), replyBytes: Buffer.byteLength(text) };
}
/** The RESP bytes of our own `INFO stats commandstats` request. */
const INFO_REQUEST_BYTES = '*3\r\n$4\r\nINFO\r\n$5\r\nstats\r\n$12\r\ncommandstats\r\n'.length;
/** Our own commands, not the service's. */
const OWN = new Set(['info']);

interface Delta {
  wallS: number;
  commands: number;
  byCommand: Record<string, { calls: number; usec: number }>;
  netIn: number;
  netOut: number;
  cpuMs: { api: number; worker: number; redis: number };
}

async function measure(stack: BenchStack, run: () => Promise<void>): Promise<Delta> {
  const workerCpu = () => stack.workers.reduce((a, w) => a + (w.process.exitCode === null ? treeCpuMs(w.pid) : 0), 0);
  const r0 = await redisSnap(stack);
  const c0 = { api: cpuMs(stack.api.pid), worker: workerCpu(), redis: cpuMs(stack.redisServer.child.pid) };
  const t0 = performance.now();
  await run();
  const wallS = (performance.now() - t0) / 1000;
  const c1 = { api: cpuMs(stack.api.pid), worker: workerCpu(), redis: cpuMs(stack.redisServer.child.pid) };
  const r1 = await redisSnap(stack);
  const byCommand: Delta['byCommand'] = {};
  for (const [cmd, v] of Object.entries(r1.calls)) {
    if (OWN.has(cmd)) continue;
    const d = { calls: v.calls - (r0.calls[cmd]?.calls ?? 0), usec: v.usec - (r0.calls[cmd]?.usec ?? 0) };
    if (d.calls > 0) byCommand[cmd] = d;
  }
  return {
    wallS, byCommand,
    commands: Object.values(byCommand).reduce((a, v) => a + v.calls, 0),
    netIn: r1.netIn - r0.netIn - INFO_REQUEST_BYTES,
    netOut: r1.netOut - r0.netOut - r0.replyBytes,
    cpuMs: { api: c1.api - c0.api, worker: c1.worker - c0.worker, redis: c1.redis - c0.redis },
  };
}

/**
 * The relay's commands: stream commands, and the MULTI/EXPIRE/EXEC each chunk's XADD is wrapped in
 * (stream-writer.ts). The rest is the queue (BullMQ's scripts), admission and heartbeats: every queue's keys
 * share the `{prefix}` hash slot, so that part stays on one node. Commands a script calls are counted both in EVALSHA's time and
 * on their own, which overstates the queue share (the safe side).
 */
const RELAY_COMMANDS = /^(x[a-z]+|multi|exec|expire|pexpire)$/;

/** A phase's cost per request: its delta less what the idle stack does in the same time. */
function perRequest(d: Delta, idle: Delta, n: number) {
  const f = d.wallS / idle.wallS;
  const byCommand: Record<string, number> = {};
  for (const [cmd, v] of Object.entries(d.byCommand)) byCommand[cmd] = Math.max(0, v.calls - (idle.byCommand[cmd]?.calls ?? 0) * f) / n;
  const streamUsec = Object.entries(d.byCommand).filter(([c]) => RELAY_COMMANDS.test(c)).reduce((a, [, v]) => a + v.usec, 0);
  const totalUsec = Object.values(d.byCommand).reduce((a, v) => a + v.usec, 0);
  return {
    commands: (d.commands - idle.commands * f) / n,
    byCommand,
    netIn: (d.netIn - idle.netIn * f) / n,
    netOut: (d.netOut - idle.netOut * f) / n,
    apiCpuMs: (d.cpuMs.api - idle.cpuMs.api * f) / n,
    workerCpuMs: (d.cpuMs.worker - idle.cpuMs.worker * f) / n,
    redisCpuMs: (d.cpuMs.redis - idle.cpuMs.redis * f) / n,
    queueShare: 1 - streamUsec / totalUsec,
  };
}

/** Two request sizes → a part per request and a part per MB (two points, one line). */
function fit(small: number, smallMB: number, large: number, largeMB: number): Linear {
  const perMB = (large - small) / (largeMB - smallMB);
  return { perRequest: small - perMB * smallMB, perMB };
}

function checkAll(results: SpeechResult[], what: string) {
  const bad = results.filter((r) => r.error || r.status !== 200);
  if (bad.length) throw new Error(`${what}: ${bad.length} of ${results.length} failed (${bad[0]!.error ?? bad[0]!.status})`);
}

export async function runCapacity() {
  markStart();
  const targetArg = arg('streams') !== undefined || arg('rps') !== undefined
    ? { streams: Number(arg('streams') ?? 0), rps: Number(arg('rps') ?? 0) } : undefined;
  if (targetArg && !(targetArg.streams >= 0 && targetArg.rps >= 0)) throw new Error('--streams and --rps take numbers ≥ 0');
  const stack = await BenchStack.start({
    workers: 1,
    // The default heartbeat (BenchStack's 500 ms would overstate the idle Redis load).
    workerEnv: { ENGINES: 'bench', BENCH_ENGINE_DELAY_MS: '20', WORKER_CONCURRENCY: '256', STREAM_TTL_S: '120', HEARTBEAT_INTERVAL_MS: '2000' },
  });
  try {
    // --- relay phases on the bench engine (its audio costs no CPU) ---
    const pcm = (text: string) => speechBody(text, 'pcm', 'bench');
    await closedLoop(4, 8, () => speech(stack.baseUrl, pcm(SMALL_TEXT), { keepChunks: false })); // warm-up
    await sleep(300);
    const idle = await measure(stack, () => sleep(N.idleMs));
    let small: SpeechResult[] = [];
    const dSmall = await measure(stack, async () => {
      small = (await closedLoop(8, N.small, () => speech(stack.baseUrl, pcm(SMALL_TEXT), { keepChunks: false }))).results;
    });
    checkAll(small, 'small');
    let large: SpeechResult[] = [];
    const dLarge = await measure(stack, async () => {
      large = (await closedLoop(4, N.large, () => speech(stack.baseUrl, pcm(LARGE_TEXT), { keepChunks: false }))).results;
    });
    checkAll(large, 'large');
    const mbOf = (rs: SpeechResult[]) => rs.reduce((a, r) => a + r.bytes, 0) / rs.length / MB;
    const pSmall = perRequest(dSmall, idle, N.small);
    const pLarge = perRequest(dLarge, idle, N.large);
    const smallMB = mbOf(small);
    const largeMB = mbOf(large);

    // Streams held open by real-time readers: what each costs the API in memory.
    await sleep(500);
    const idleRssMB = rssBytes(stack.api.pid) / MB;
    let peakRssMB = idleRssMB;
    let open = 0;
    let peakOpen = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        peakRssMB = Math.max(peakRssMB, rssBytes(stack.api.pid) / MB);
        peakOpen = Math.max(peakOpen, open);
        await sleep(100);
      }
    })();
    const streamText = textOfLength(QUICK ? 40 : 90);
    const held = await Promise.all(Array.from({ length: N.streams }, async () => {
      open++;
      const r = await speech(stack.baseUrl, pcm(streamText), { readBytesPerSec: PCM_BYTES_PER_SEC, keepChunks: false, timeoutMs: 120_000 });
      open--;
      return r;
    }));
    sampling = false;
    await sampler;
    checkAll(held, 'streams');

    // --- the reference request through espeak-ng (default slots), then a latency-bound worker ---
    const relayWorker = stack.workers[0]!;
    await relayWorker.stop(5000);
    stack.workers.splice(0, 1);
    const espeakSlots = defaultWorkerConcurrency();
    await stack.addWorkers(1, { ENGINES: 'espeak', WORKER_CONCURRENCY: String(espeakSlots) });
    const ref = speechBody(PARAGRAPH_300, 'mp3', 'tts-1');
    await closedLoop(2, 2, () => speech(stack.baseUrl, ref, { keepChunks: false })); // warm-up (encoder pool)
    // The reference request's audio length: the same text as pcm (24 kHz 16-bit mono).
    const refPcm = await speech(stack.baseUrl, speechBody(PARAGRAPH_300, 'pcm', 'tts-1'), { keepChunks: false });
    checkAll([refPcm], 'reference pcm');
    const audioSeconds = refPcm.bytes / PCM_BYTES_PER_SEC;
    const idleEspeak = await measure(stack, () => sleep(N.idleMs / 2));
    let espeak: SpeechResult[] = [];
    let espeakWallMs = 0;
    const dEspeak = await measure(stack, async () => {
      const r = await closedLoop(2 * espeakSlots, N.espeak, () => speech(stack.baseUrl, ref, { keepChunks: false }));
      espeak = r.results;
      espeakWallMs = r.wallMs;
    });
    checkAll(espeak, 'espeak');
    const pEspeak = perRequest(dEspeak, idleEspeak, N.espeak);

    await stack.addWorkers(1, { ENGINES: 'bench', WORKER_CONCURRENCY: String(BENCH_SLOTS), BENCH_ENGINE_DELAY_MS: String(BENCH_DELAY_MS) });
    const refBench = speechBody(PARAGRAPH_300, 'mp3', 'bench');
    await closedLoop(2, 2, () => speech(stack.baseUrl, refBench, { keepChunks: false }));
    let bench: SpeechResult[] = [];
    let benchWallMs = 0;
    const benchWorkerPid = stack.workers.at(-1)!.pid;
    const benchCpu0 = cpuMs(benchWorkerPid, { children: true });
    await (async () => {
      const r = await closedLoop(2 * BENCH_SLOTS, N.bench, () => speech(stack.baseUrl, refBench, { keepChunks: false }));
      bench = r.results;
      benchWallMs = r.wallMs;
    })();
    const benchCpuMs = cpuMs(benchWorkerPid, { children: true }) - benchCpu0;
    checkAll(bench, 'bench');

    // --- the model's inputs: every figure from the phases above ---
    const refMB = mbOf(espeak);
    const espeakW = { slots: espeakSlots, jobsPerS: (N.espeak / espeakWallMs) * 1000, cpuMsPerJob: pEspeak.workerCpuMs };
    const benchW = { slots: BENCH_SLOTS, jobsPerS: (N.bench / benchWallMs) * 1000, cpuMsPerJob: benchCpuMs / N.bench };
    const idleProcesses = 2; // API + one worker during the idle phase
    const inputs: MeasuredInputs = {
      reference: { chars: PARAGRAPH_300.length, format: 'mp3', mbPerRequest: refMB, audioSeconds },
      redis: {
        perRequest: { commands: pEspeak.commands, netInBytes: pEspeak.netIn, netOutBytes: pEspeak.netOut, cpuMs: pEspeak.redisCpuMs },
        fit: {
          commands: fit(pSmall.commands, smallMB, pLarge.commands, largeMB),
          netInBytes: fit(pSmall.netIn, smallMB, pLarge.netIn, largeMB),
          netOutBytes: fit(pSmall.netOut, smallMB, pLarge.netOut, largeMB),
          cpuMs: fit(pSmall.redisCpuMs, smallMB, pLarge.redisCpuMs, largeMB),
        },
        queueShare: pEspeak.queueShare,
        idleCpuMsPerSPerProcess: idle.cpuMs.redis / idle.wallS / idleProcesses,
      },
      api: {
        cpuMsPerRequest: pEspeak.apiCpuMs,
        cpuMs: fit(pSmall.apiCpuMs, smallMB, pLarge.apiCpuMs, largeMB),
        rssMBPerStream: (peakRssMB - idleRssMB) / peakOpen,
        idleRssMB,
      },
      workers: { espeak: espeakW, bench: benchW },
      workerStartS: median(stack.workerStartMs) / 1000,
    };

    const f = inputs.redis.fit;
    printTable(`Measured inputs (this run); reference request: ${PARAGRAPH_300.length}-char mp3 through espeak-ng, ${round(refMB * 1024)} KB, ${round(audioSeconds, 1)} s of audio`,
      ['input', 'reference request', 'fit: per request', 'fit: per MB', 'note'], [
        ['Redis commands', pEspeak.commands, f.commands.perRequest, f.commands.perMB, `pcm fit: ${round(smallMB * 1024, 1)} KB and ${round(largeMB, 2)} MB requests`],
        ['Redis bytes in', pEspeak.netIn, f.netInBytes.perRequest, f.netInBytes.perMB, 'total_net_input_bytes'],
        ['Redis bytes out', pEspeak.netOut, f.netOutBytes.perRequest, f.netOutBytes.perMB, 'total_net_output_bytes'],
        ['Redis CPU ms', pEspeak.redisCpuMs, f.cpuMs.perRequest, f.cpuMs.perMB, `idle: ${round(inputs.redis.idleCpuMsPerSPerProcess, 2)} ms/s per process`],
        ['API CPU ms', pEspeak.apiCpuMs, inputs.api.cpuMs.perRequest, inputs.api.cpuMs.perMB, ''],
        ['API RSS MB per open stream', round(inputs.api.rssMBPerStream, 3), '', '', `${peakOpen} streams, idle ${round(idleRssMB)} MB, peak ${round(peakRssMB)} MB`],
        ['espeak worker jobs/s', round(espeakW.jobsPerS, 2), '', '', `${espeakSlots} slots, ${round(espeakW.cpuMsPerJob)} ms CPU per job (with espeak-ng/ffmpeg)`],
        ['bench worker jobs/s', round(benchW.jobsPerS, 2), '', '', `${BENCH_SLOTS} slots, ${BENCH_DELAY_MS} ms per segment, ${round(benchW.cpuMsPerJob)} ms CPU per job`],
        ['worker start s', round(inputs.workerStartS, 2), '', '', `spawn to first heartbeat, median of ${stack.workerStartMs.length}`],
      ]);
    const top = Object.entries(pEspeak.byCommand).sort((a, b) => b[1] - a[1]).slice(0, 10);
    console.log(`Redis commands per reference request: ${top.map(([c, n]) => `${c} ${round(n, 1)}`).join(', ')}; queue (non-relay) share of command time ${round(pEspeak.queueShare * 100)}%`);

    // --- the plan for a few targets (and the user's own) ---
    const a = DEFAULT_ASSUMPTIONS;
    const targets = [{ streams: 100, rps: 6 }, { streams: 1000, rps: 60 }, { streams: 10_000, rps: 600 }, ...(targetArg ? [targetArg] : [])];
    const plans = targets.map((t) => plan(inputs, t.streams, t.rps, a));
    const cap = perReplica(inputs, a);
    const bottleneck = { espeak: firstBottleneck(inputs, 'espeak', a), bench: firstBottleneck(inputs, 'bench', a) };
    printTable(`Plan (utilisation ${a.utilisation}; API ${a.apiCores} core/${a.apiMemoryMB} MB, Redis ${a.redisCores} core/${a.redisNetMBps} MB/s)`,
      ['streams', 'req/s', 'API', 'API bound', 'espeak workers', 'bench workers', 'Redis nodes', 'Redis bound', 'Redis cmd/s', 'Redis MB/s', 'queue node use'],
      plans.map((p) => [p.streams, p.rps, p.api.replicas, p.api.bound, p.workers.espeak, p.workers.bench, p.redis.nodes, p.redis.bound,
        round(p.redis.commandsPerS), round(p.redis.mbPerS, 2), `${round(p.redis.queueNodeUtilisation * 100)}%`]));
    printTable('One replica of each: reference requests per second at which it saturates (first bottleneck first)', ['part', 'req/s (espeak fleet)', 'req/s (bench fleet)'],
      bottleneck.espeak.order.map((c) => [c.part, round(c.rps, 2), round(bottleneck.bench.order.find((x) => x.part === c.part.replace('espeak', 'bench'))?.rps ?? Number.NaN, 2)]));
    console.log(`First bottleneck: ${bottleneck.espeak.first.part} (espeak fleet), ${bottleneck.bench.first.part} (bench fleet). ` +
      `Ceiling with every part scaled out: the queue commands fill one Redis node at ${round(cap.queueCeilingRps)} req/s.`);

    // --- autoscaling simulation with the measured espeak worker ---
    const w = espeakW;
    const simParams = {
      durationS: 1500, jobsPerSecondPerReplica: w.jobsPerS, slotsPerReplica: w.slots, targetPerReplica: Math.max(1, Math.floor(w.slots * 0.75)),
      minReplicas: 1, maxReplicas: 20, pollingIntervalS: 30, startDelayS: Math.ceil(inputs.workerStartS + POD_START_S), scaleDownWindowS: 300,
    };
    const curve = { base: 0.5 * w.jobsPerS, peak: 8 * w.jobsPerS, rampUpS: 300, holdS: 300, rampDownS: 300, startS: 120 };
    const sim = simulateAutoscaling({ ...simParams, arrivalRate: rampCurve(curve) });
    const fixed = simulateAutoscaling({ ...simParams, arrivalRate: rampCurve(curve), scaling: false });
    const simRows = sim.filter((r) => r.t % 60 === 0).map((r) => ({
      t: r.t, arrivalPerS: round(r.arrivalPerS, 2), ready: r.ready, desired: r.desired, queued: round(r.queued, 1), metric: round(r.metric, 1), waitS: r.waitS,
    }));
    printTable(`Autoscaling simulation: ${round(curve.base, 2)} → ${round(curve.peak, 2)} req/s and back; ${round(w.jobsPerS, 2)} jobs/s per espeak worker, ` +
      `target ${simParams.targetPerReplica} jobs per replica, polling ${simParams.pollingIntervalS} s, start ${simParams.startDelayS} s, scale-down window ${simParams.scaleDownWindowS} s`,
    ['t (s)', 'arrivals/s', 'ready', 'desired', 'queued', 'metric', 'wait (s)'],
    simRows.map((r) => [r.t, r.arrivalPerS, r.ready, r.desired, r.queued, r.metric, r.waitS]));
    const maxWait = (rows: typeof sim) => Math.max(...rows.map((r) => r.waitS));
    const simSummary = {
      maxWaitS: maxWait(sim), maxReplicas: Math.max(...sim.map((r) => r.ready)), endReplicas: sim.at(-1)!.ready,
      maxQueued: round(Math.max(...sim.map((r) => r.queued)), 1),
      // A lower bound when work was still queued at the end (it waited at least until then).
      withoutScaling: { maxWaitS: maxWait(fixed), unfinished: fixed.some((r) => r.unfinished), maxQueued: round(Math.max(...fixed.map((r) => r.queued))), endQueued: round(fixed.at(-1)!.queued) },
    };
    console.log(`With scaling: max wait ${simSummary.maxWaitS} s, up to ${simSummary.maxReplicas} replicas, back to ${simSummary.endReplicas}. ` +
      `Fixed at 1 replica: max wait ${simSummary.withoutScaling.unfinished ? '> ' : ''}${simSummary.withoutScaling.maxWaitS} s, ${simSummary.withoutScaling.endQueued} jobs still queued at the end.`);

    writeResults('capacity', {
      params: { quick: QUICK, cpus: availableParallelism(), counts: N, smallText: SMALL_TEXT, largeChars: LARGE_TEXT.length, benchSlots: BENCH_SLOTS, benchDelayMs: BENCH_DELAY_MS, podStartS: POD_START_S },
      inputs,
      phases: {
        idle: { wallS: round(idle.wallS, 2), commands: idle.commands, redisCpuMs: idle.cpuMs.redis },
        small: { mbPerRequest: smallMB, ...pSmall }, large: { mbPerRequest: largeMB, ...pLarge },
        streams: { held: N.streams, peakOpen, idleRssMB: round(idleRssMB, 1), peakRssMB: round(peakRssMB, 1) },
        espeak: { mbPerRequest: refMB, rps: espeakW.jobsPerS, ...pEspeak },
        bench: { rps: benchW.jobsPerS, workerCpuMsPerJob: benchW.cpuMsPerJob },
        workerStartMs: stack.workerStartMs.map((x) => round(x)),
      },
      reference: { measured: pEspeak },
      assumptions: a,
      perReplica: cap,
      plans,
      bottleneck,
      simulation: { params: simParams, curve, summary: simSummary, rows: simRows },
    }, arg('out'));
  } finally {
    AGENT.destroy();
    await stack.stop();
  }
}

if (isMain(import.meta.url)) await runCapacity();
