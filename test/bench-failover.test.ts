import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

/*
 * bench/failover.ts runs rarely (minutes); this runs the script itself with its smallest settings, on its own
 * private stacks, so it cannot rot: both modes kill a worker mid-stream, the killed worker's own streams are found
 * and compared with a reference, and every figure the docs quote is in the JSON. Numbers from so few streams mean
 * little; the one timing asserted is the floor lock expiry puts under `before`.
 */

const ROOT = path.resolve(import.meta.dirname, '..');
const dir = mkdtempSync(path.join(tmpdir(), 'chorus-bench-failover-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface ModeSummary {
  mode: string; victims: number; midStream: number; pauseMax: number; maxGapMax: number;
  notOk: number; notIdentical: number; healthyRestarted: number; errors: number; pauses: number[];
}
interface Result {
  benchmark: string;
  machine: { loadavg1AtStart: number };
  params: { streams: number; chars: number; rounds: number; modes: string[]; hog: boolean };
  summary: ModeSummary[];
  rounds: { mode: string; kill: boolean; hog: boolean; healthyRestarted: number; errors: number }[];
  targets: { name: string; measured: number; limit: number; met: boolean }[];
}

describe('bench/failover.ts', () => {
  it('kills a worker in both modes and writes the killed worker\'s stream figures', async () => {
    const out = path.join(dir, 'failover.json');
    await promisify(execFile)(process.execPath, [
      '--import', 'tsx', 'bench/failover.ts', '--quick', '--streams', '4', '--chars', '300', '--rounds', '1', '--slots', '2', '--out', out,
    ], { cwd: ROOT, timeout: 170_000 });
    const r = JSON.parse(readFileSync(out, 'utf8')) as Result;

    expect(r.benchmark).toBe('failover');
    expect(r.params).toMatchObject({ streams: 4, chars: 300, rounds: 1, modes: ['before', 'after'], hog: true });
    const [before, after] = r.summary;
    for (const s of [before!, after!]) {
      expect(s.victims).toBeGreaterThan(0);
      expect(s).toMatchObject({ notOk: 0, notIdentical: 0, healthyRestarted: 0, errors: 0 });
      expect(s.maxGapMax).toBeGreaterThanOrEqual(s.pauseMax);
    }
    // Stall recovery alone waits for the killed worker's lock to expire: at least LOCK_DURATION_MS minus the renewal
    // period (6 s - 3 s) after the kill. (Only a floor: how fast failover is depends on the load; see the bench.)
    expect(before!.maxGapMax).toBeGreaterThan(2500);
    const hog = r.rounds.find((x) => x.hog)!;
    expect(hog).toMatchObject({ kill: false, healthyRestarted: 0, errors: 0 });
    expect(r.targets.map((t) => t.name)).toHaveLength(3);
  }, 180_000);
});
