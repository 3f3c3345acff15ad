import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import type { MeasuredInputs, Plan } from '../bench/lib/capacity-model.ts';

/*
 * bench/capacity.ts measures the capacity model's inputs and prints its plan. This runs the script in --quick mode on
 * its own private stack so it cannot rot: every input the model uses was measured in the run (present, > 0), the
 * plan and the simulation tables are printed, and the user's own target is planned. Numbers from so few requests
 * mean nothing.
 */

const ROOT = path.resolve(import.meta.dirname, '..');
const dir = mkdtempSync(path.join(tmpdir(), 'chorus-bench-capacity-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Every number in the object, with its path. */
function numbers(x: unknown, at = ''): [string, number][] {
  if (typeof x === 'number') return [[at, x]];
  if (x && typeof x === 'object') return Object.entries(x).flatMap(([k, v]) => numbers(v, at ? `${at}.${k}` : k));
  return [];
}

describe('bench/capacity.ts', () => {
  it('measures every input of the model in the run and prints the plan', async () => {
    const out = path.join(dir, 'capacity.json');
    const { stdout } = await promisify(execFile)(process.execPath, [
      '--import', 'tsx', 'bench/capacity.ts', '--quick', '--streams', '2500', '--rps', '42', '--out', out,
    ], { cwd: ROOT, timeout: 170_000 });
    const r = JSON.parse(readFileSync(out, 'utf8')) as {
      benchmark: string; params: { quick: boolean }; inputs: MeasuredInputs; plans: Plan[];
      simulation: { summary: { maxWaitS: number; maxReplicas: number; withoutScaling: { maxWaitS: number } }; rows: unknown[] };
    };
    expect(r.benchmark).toBe('capacity');
    expect(r.params.quick).toBe(true);

    const m = r.inputs;
    // Every figure the plan uses is measured and positive (the per-request parts of the pcm fit may round to
    // anything small, so only their per-MB slopes are checked).
    const used = {
      reference: m.reference, redisPerRequest: m.redis.perRequest, queueShare: m.redis.queueShare,
      idle: m.redis.idleCpuMsPerSPerProcess, api: { cpuMsPerRequest: m.api.cpuMsPerRequest, perMB: m.api.cpuMs.perMB, rss: m.api.rssMBPerStream, idleRss: m.api.idleRssMB },
      fitPerMB: Object.fromEntries(Object.entries(m.redis.fit).map(([k, v]) => [k, v.perMB])),
      workers: m.workers, workerStartS: m.workerStartS,
    };
    const figures = numbers(used);
    expect(figures.length).toBeGreaterThanOrEqual(24);
    for (const [name, v] of figures) {
      // The idle Redis CPU comes from /proc ticks (10 ms) over the quick run's 1.5 s idle phase: 0 is a reading.
      if (name === 'idle') expect(v, name).toBeGreaterThanOrEqual(0);
      else expect(v, name).toBeGreaterThan(0);
    }
    expect(Object.keys(m.workers).sort()).toEqual(['bench', 'espeak']);
    expect(m.redis.queueShare).toBeLessThan(1);
    // Relayed audio passes Redis twice: in from the worker's XADD, out to the API's XREAD.
    expect(m.redis.perRequest.netInBytes).toBeGreaterThan(m.reference.mbPerRequest * 2 ** 20 * 0.9);
    expect(m.redis.perRequest.netOutBytes).toBeGreaterThan(m.reference.mbPerRequest * 2 ** 20 * 0.9);

    // The plan: three fixed targets and the user's own.
    expect(r.plans.map((p) => [p.streams, p.rps])).toEqual([[100, 6], [1000, 60], [10_000, 600], [2500, 42]]);
    for (const p of r.plans) {
      expect(p.api.replicas).toBeGreaterThanOrEqual(1);
      expect(p.redis.nodes).toBeGreaterThanOrEqual(1);
      expect(p.workers.espeak).toBeGreaterThanOrEqual(Math.ceil(p.rps / m.workers.espeak!.jobsPerS));
    }
    expect(stdout).toMatch(/Measured inputs \(this run\)/);
    expect(stdout).toMatch(/^streams\s+req\/s\s+API/m);
    expect(stdout).toMatch(/^\s*2500\s+42\s+\d+/m);
    expect(stdout).toMatch(/First bottleneck: /);
    // The simulation: bounded with scaling, not without.
    expect(stdout).toMatch(/^t \(s\)\s+arrivals\/s\s+ready/m);
    expect(r.simulation.rows.length).toBeGreaterThan(10);
    expect(r.simulation.summary.maxReplicas).toBeGreaterThan(1);
    expect(r.simulation.summary.maxWaitS).toBeLessThan(120);
    expect(r.simulation.summary.withoutScaling.maxWaitS).toBeGreaterThan(r.simulation.summary.maxWaitS);
  }, 180_000);
});
