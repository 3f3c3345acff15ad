import { describe, expect, it } from 'vitest';
import { desiredReplicas, rampCurve, simulateAutoscaling, type AutoscaleParams } from '../bench/lib/autoscale-sim.ts';
import { firstBottleneck, perReplica, plan, type MeasuredInputs } from '../bench/lib/capacity-model.ts';

/*
 * The autoscaling simulation behind docs/scaling.md: HPA's formula, and a ramp that one worker cannot carry. Without
 * scaling the wait grows for as long as arrivals exceed the capacity; with it the wait stays within about a polling
 * interval plus the start delay, and replicas come back down after the stabilization window.
 */

const base: AutoscaleParams = {
  arrivalRate: rampCurve({ base: 1, peak: 40, rampUpS: 300, holdS: 300, rampDownS: 300, startS: 60 }),
  durationS: 1800,
  jobsPerSecondPerReplica: 5,
  slotsPerReplica: 4,
  targetPerReplica: 3,
  minReplicas: 1,
  maxReplicas: 20,
  pollingIntervalS: 30,
  startDelayS: 15,
  scaleDownWindowS: 300,
};

describe('desiredReplicas (HPA AverageValue)', () => {
  it('is ceil(metric / target), clamped, and unchanged within the tolerance', () => {
    expect(desiredReplicas(10, 4, 1, 1, 20)).toBe(3);
    expect(desiredReplicas(12, 4, 1, 1, 20)).toBe(3);
    expect(desiredReplicas(13, 4, 1, 1, 20)).toBe(4);
    expect(desiredReplicas(0, 4, 3, 1, 20)).toBe(1);
    expect(desiredReplicas(1000, 4, 3, 1, 20)).toBe(20);
    // 4 replicas at target 4 and a metric of 17: 6 % over, within the 10 % tolerance: stays 4.
    expect(desiredReplicas(17, 4, 4, 1, 20)).toBe(4);
    expect(desiredReplicas(17, 4, 4, 1, 20, 0)).toBe(5);
  });
});

describe('simulateAutoscaling', () => {
  it('keeps the wait bounded with scaling and lets it grow without', () => {
    const fixed = simulateAutoscaling({ ...base, scaling: false });
    const scaled = simulateAutoscaling(base);
    const maxWait = (rows: typeof fixed) => Math.max(...rows.map((r) => r.waitS));

    expect(fixed.every((r) => r.ready === 1)).toBe(true);
    // 40 jobs/s against 5: the backlog of the peak takes far longer than the run to clear.
    expect(maxWait(fixed)).toBeGreaterThan(600);
    expect(fixed.at(-1)!.unfinished).toBe(true);
    expect(scaled.some((r) => r.unfinished)).toBe(false);
    expect(Math.max(...fixed.map((r) => r.queued))).toBeGreaterThan(10_000);

    expect(maxWait(scaled)).toBeLessThan(base.pollingIntervalS + base.startDelayS + 30);
    // At the peak 40 / 5 = 8 replicas would be fully busy; a target of 3 of 4 slots keeps ~25 % headroom.
    const peak = scaled.find((r) => r.t === 60 + 300 + 250)!;
    expect(peak.ready).toBeGreaterThanOrEqual(8);
    expect(peak.ready).toBeLessThanOrEqual(12);
    // Back to the minimum only after the stabilization window that follows the ramp down.
    const endOfRamp = 60 + 900;
    expect(scaled.find((r) => r.t === endOfRamp + 60)!.desired).toBeGreaterThan(1);
    expect(scaled.at(-1)!.desired).toBe(1);
    expect(scaled.at(-1)!.queued).toBeLessThan(1);
  });

  it('starts replicas only after the start delay', () => {
    const rows = simulateAutoscaling({ ...base, startDelayS: 120 });
    const firstAsk = rows.find((r) => r.desired > 1)!;
    const firstReady = rows.find((r) => r.ready > 1)!;
    expect(firstReady.t - firstAsk.t).toBe(120);
    // A long start delay costs wait: the peak backlog waits longer than with 15 s.
    const maxWait = (r: typeof rows) => Math.max(...r.map((x) => x.waitS));
    expect(maxWait(rows)).toBeGreaterThan(maxWait(simulateAutoscaling(base)));
  });
});

describe('capacity model (bench/lib/capacity-model.ts)', () => {
  // Round figures so the arithmetic can be checked by hand (u = 0.7, API 1 core / 512 MB, Redis 1 core / 119 MiB/s).
  const m: MeasuredInputs = {
    reference: { chars: 300, format: 'mp3', mbPerRequest: 0.125, audioSeconds: 16 },
    redis: {
      perRequest: { commands: 100, netInBytes: 150_000, netOutBytes: 130_000, cpuMs: 5 },
      fit: { commands: { perRequest: 80, perMB: 60 }, netInBytes: { perRequest: 5000, perMB: 2 ** 20 }, netOutBytes: { perRequest: 1500, perMB: 2 ** 20 }, cpuMs: { perRequest: 1, perMB: 8 } },
      queueShare: 0.2,
      idleCpuMsPerSPerProcess: 2,
    },
    api: { cpuMsPerRequest: 10, cpuMs: { perRequest: 4, perMB: 13 }, rssMBPerStream: 0.07, idleRssMB: 162 },
    workers: { espeak: { slots: 8, jobsPerS: 2, cpuMsPerJob: 400 } },
    workerStartS: 2,
  };

  it('sizes each part by ceil(load / (utilisation × one replica))', () => {
    const cap = perReplica(m);
    expect(cap.apiRps).toBeCloseTo(70); // 700 ms of CPU per second / 10 ms
    expect(cap.apiStreams).toBeCloseTo(3500); // (512 − 162) × 0.7 / 0.07
    expect(cap.workers.espeak).toBeCloseTo(1.4);
    expect(cap.redisRps).toBeCloseTo(140); // CPU: 700 / 5 (network would allow ~306)
    expect(cap.queueCeilingRps).toBeCloseTo(1000); // 1000 / (5 × 0.2)

    const p = plan(m, 4000, 100);
    expect(p.api).toMatchObject({ byCpu: 2, byMemory: 2, replicas: 2 });
    expect(p.workers.espeak).toBe(72); // ceil(100 / 1.4)
    // Redis CPU: 100 × 5 ms + (2 API + 72 workers) × 2 ms idle = 648 ms/s → 1 node at 0.7
    expect(p.redis).toMatchObject({ byCpu: 1, nodes: 1, commandsPerS: 10_000 });
    expect(p.redis.queueNodeUtilisation).toBeCloseTo(0.1);
    expect(plan(m, 10, 300).redis.nodes).toBe(3); // 1500 + idle ≈ 1.9 cores → ceil(/0.7) = 3
    expect(plan(m, 10_000, 1).api).toMatchObject({ replicas: 3, bound: 'memory' });

    expect(firstBottleneck(m, 'espeak').first.part).toBe('espeak worker');
    expect(firstBottleneck({ ...m, workers: { espeak: { slots: 8, jobsPerS: 500, cpuMsPerJob: 1 } } }, 'espeak').first.part).toBe('API CPU');
  });
});
