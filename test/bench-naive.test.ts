import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

/*
 * bench/naive.ts compares Chorus with the naive pipeline (espeak-ng → fresh ffmpeg per request, its own HTTP
 * server). This runs the script with its smallest settings on its own private stack so it cannot rot: both sides
 * answer every request with mp3 of about the same size (same text, voice and encoder settings), and every figure
 * the docs quote is in the JSON. Numbers from so few requests mean nothing.
 */

const ROOT = path.resolve(import.meta.dirname, '..');
const dir = mkdtempSync(path.join(tmpdir(), 'chorus-bench-naive-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Row {
  mode: 'chorus' | 'naive'; concurrency: number; requests: number; errors: number; rps: number;
  ttfbP50: number; ttfbP95: number; bytesP50: number; cpuMsPerRequest: Record<string, number>; cpuMsPerRequestTotal: number;
}
interface Result {
  benchmark: string;
  machine: { loadavg1AtStart: number; otherCpuShare: number };
  params: { levels: number[]; rounds: number; format: string; chars: number };
  rows: Row[];
  ratios: { concurrency: number; throughput: number; ttfbP50: number; ttfbP95: number }[];
  targets: { name: string; measured: number; limit: number; met: boolean }[];
}

describe('bench/naive.ts', () => {
  it('runs Chorus and the naive server on the same requests and writes every figure', async () => {
    const out = path.join(dir, 'naive.json');
    await promisify(execFile)(process.execPath, [
      '--import', 'tsx', 'bench/naive.ts', '--quick', '--rounds', '1', '--levels', '1,2', '--out', out,
    ], { cwd: ROOT, timeout: 110_000 });
    const r = JSON.parse(readFileSync(out, 'utf8')) as Result;

    expect(r.benchmark).toBe('naive');
    expect(r.params).toMatchObject({ levels: [1, 2], rounds: 1, format: 'mp3', chars: 300 });
    expect(r.rows.map((x) => `${x.concurrency}/${x.mode}`)).toEqual(['1/chorus', '1/naive', '2/chorus', '2/naive']);
    for (const row of r.rows) {
      expect(row.errors, `${row.mode} c=${row.concurrency}`).toBe(0);
      expect(row.requests).toBeGreaterThanOrEqual(2);
      expect(row.rps).toBeGreaterThan(0);
      expect(row.ttfbP95).toBeGreaterThanOrEqual(row.ttfbP50);
      expect(row.cpuMsPerRequestTotal).toBeGreaterThan(0);
      // ~16 s of 64 kb/s mp3 is ~130 KB; the naive side's own espeak-ng and ffmpeg did the work.
      expect(row.bytesP50).toBeGreaterThan(100_000);
    }
    const chorus = r.rows.find((x) => x.mode === 'chorus' && x.concurrency === 1)!;
    const naive = r.rows.find((x) => x.mode === 'naive' && x.concurrency === 1)!;
    expect(Math.abs(chorus.bytesP50 / naive.bytesP50 - 1)).toBeLessThan(0.1);
    expect(Object.keys(chorus.cpuMsPerRequest)).toEqual(['api', 'worker', 'worker children', 'redis', 'client']);
    expect(naive.cpuMsPerRequest['server children']).toBeGreaterThan(0);
    expect(r.ratios.map((x) => x.concurrency)).toEqual([1, 2]);
    for (const x of r.ratios) {
      const c = r.rows.find((y) => y.mode === 'chorus' && y.concurrency === x.concurrency)!;
      const n = r.rows.find((y) => y.mode === 'naive' && y.concurrency === x.concurrency)!;
      expect(x.throughput).toBeCloseTo(c.rps / n.rps, 2);
      expect(x.ttfbP50).toBeCloseTo(c.ttfbP50 / n.ttfbP50, 2);
    }
    expect(r.targets.map((t) => t.name)).toEqual([
      'throughput vs naive, c=1', 'throughput vs naive, c=2', 'TTFB p50 vs naive, c=2', 'TTFB p50 at c=1',
    ]);
    expect(r.machine.otherCpuShare).toBeGreaterThanOrEqual(0);
  }, 120_000);
});
