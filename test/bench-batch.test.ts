import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

/*
 * bench/batch.ts runs rarely (it takes minutes); this runs the script itself with its smallest settings, on its own
 * private stack, so it cannot rot: a batch submitted through /v1/batches completes, the same items go through as
 * realtime requests, and every number the docs quote is in the JSON. Numbers from so few requests mean nothing.
 */

const ROOT = path.resolve(import.meta.dirname, '..');
const dir = mkdtempSync(path.join(tmpdir(), 'chorus-bench-batch-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Latency { n: number; errors: number; ttfbP50: number; ttfbP95: number }
interface Result {
  benchmark: string;
  machine: { loadavg1AtStart: number; otherCpuShare: number };
  params: { items: number; realtimeItems: number; requestsPerRound: number };
  latency: { without: Latency; with: Latency; overlapped: number; doneAtRoundEnd: number };
  throughput: {
    batch: { items: number; completed: number; failed: number; wallS: number; itemsPerS: number; audioSPerS: number; tailItems: number };
    realtime: { items: number; completed: number; failed: number; itemsPerS: number; audioSPerS: number; byteMismatches: number };
  };
  ratios: { ttfbP50: number; ttfbP95: number; batchVsRealtimeItemsPerS: number };
  targets: { name: string; measured: number; limit: number; met: boolean }[];
}

describe('bench/batch.ts', () => {
  it('runs a batch through /v1/batches beside realtime requests and writes every figure', async () => {
    const out = path.join(dir, 'batch.json');
    await promisify(execFile)(process.execPath, [
      '--import', 'tsx', 'bench/batch.ts', '--quick', '--items', '6', '--realtime-items', '3', '--requests', '2', '--out', out,
    ], { cwd: ROOT, timeout: 110_000 });
    const r = JSON.parse(readFileSync(out, 'utf8')) as Result;

    expect(r.benchmark).toBe('batch');
    expect(r.params).toMatchObject({ items: 6, realtimeItems: 3, requestsPerRound: 2 });
    // Without: the rounds before and after the batch, pooled.
    expect(r.latency.without).toMatchObject({ n: 4, errors: 0 });
    expect(r.latency.with).toMatchObject({ n: 2, errors: 0 });
    for (const l of [r.latency.without, r.latency.with]) {
      expect(l.ttfbP50).toBeGreaterThan(0);
      expect(l.ttfbP95).toBeGreaterThanOrEqual(l.ttfbP50);
    }
    expect(r.ratios.ttfbP95).toBeCloseTo(r.latency.with.ttfbP95 / r.latency.without.ttfbP95, 2);
    expect(r.targets[0]).toMatchObject({ limit: 1.2, measured: r.ratios.ttfbP95, met: r.ratios.ttfbP95 <= 1.2 });

    // Every item has an output line with audio; the realtime run got the same bytes for the same items.
    expect(r.throughput.batch).toMatchObject({ items: 6, completed: 6, failed: 0 });
    expect(r.throughput.batch.itemsPerS).toBeCloseTo(6 / r.throughput.batch.wallS, 1);
    expect(r.throughput.batch.audioSPerS).toBeGreaterThan(0);
    expect(r.throughput.realtime).toMatchObject({ items: 3, completed: 3, failed: 0, byteMismatches: 0 });
    expect(r.throughput.realtime.itemsPerS).toBeGreaterThan(0);
    expect(r.throughput.realtime.audioSPerS).toBeGreaterThan(0);
    expect(r.latency.doneAtRoundEnd + r.throughput.batch.tailItems).toBe(6);
    expect(r.machine.otherCpuShare).toBeGreaterThanOrEqual(0);
  }, 120_000);
});
