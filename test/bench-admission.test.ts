import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

/*
 * bench/admission.ts runs rarely; this runs the script itself with its smallest settings, on its own private stack,
 * so it cannot rot: capacity is measured, the overload is offered at 5× it, every request is accounted for, and
 * every number the docs quote is in the JSON. Numbers from so few requests mean nothing.
 */

const ROOT = path.resolve(import.meta.dirname, '..');
const dir = mkdtempSync(path.join(tmpdir(), 'chorus-bench-admission-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Result {
  benchmark: string;
  machine: { loadavg1AtStart: number };
  params: { overload: number; seconds: number; unloadedRequests: number; apiEnv: Record<string, string> };
  capacityPerS: number;
  offeredPerS: number;
  offered: number;
  rows: {
    unloaded: { n: number; ttfbP50: number; ttfbP95: number };
    accepted: { n: number; ttfbP50: number; ttfbP95: number; slotWaitP95: number };
    refused: { n: number; answerP95: number; retryAfterMsP50: number; codes: string[] };
    queueTimeout: { n: number };
    other: number;
  };
  ratio: number;
  targets: { name: string; measured: number; limit: number; met: boolean }[];
}

describe('bench/admission.ts', () => {
  it('offers 5× the measured capacity and accounts for every request', async () => {
    const out = path.join(dir, 'admission.json');
    await promisify(execFile)(process.execPath, ['--import', 'tsx', 'bench/admission.ts', '--quick', '--seconds', '2', '--out', out], {
      cwd: ROOT, timeout: 110_000,
    });
    const r = JSON.parse(readFileSync(out, 'utf8')) as Result;

    expect(r.benchmark).toBe('admission');
    expect(r.params).toMatchObject({ overload: 5, seconds: 2, unloadedRequests: 4 });
    // The API ran with the defaults a new user gets (MAX_QUEUE_WAIT_MS included).
    expect(r.params.apiEnv).toMatchObject({ MAX_QUEUE_DEPTH: '1000', QUEUE_TIMEOUT_S: '30', MAX_QUEUE_WAIT_MS: '50' });
    expect(r.capacityPerS).toBeGreaterThan(0);
    expect(r.offeredPerS).toBeCloseTo(r.capacityPerS * 5, 1);
    expect(r.offered).toBeGreaterThanOrEqual(Math.floor(r.offeredPerS * 2));
    const { unloaded, accepted, refused, queueTimeout, other } = r.rows;
    expect(unloaded.n).toBe(4);
    expect(accepted.n + refused.n + queueTimeout.n + other).toBe(r.offered);
    expect(accepted.n).toBeGreaterThan(0);
    expect(accepted.ttfbP95).toBeGreaterThanOrEqual(accepted.ttfbP50);
    expect(r.ratio).toBeCloseTo(accepted.ttfbP95 / unloaded.ttfbP95, 1);
    expect(r.targets.map((t) => t.limit)).toEqual([2, 0]);
    if (refused.n > 0) {
      expect(refused.codes).toEqual(['queue_full']);
      expect(refused.retryAfterMsP50).toBeGreaterThan(0);
    }
  }, 120_000);
});
