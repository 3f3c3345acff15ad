import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import type { Comparison, Row, RunInfo } from '../bench/neural-rtf.ts';

/*
 * bench/neural-rtf.ts is run on GPU hosts, rarely; this runs the script itself (as a GPU host would, flags and all)
 * on tiny generated models so it cannot rot: every engine and provider set measured, the device each model really
 * ran on reported, and a CUDA fallback said plainly rather than shown as "cuda" numbers.
 */

const ROOT = path.resolve(import.meta.dirname, '..');
const dir = mkdtempSync(path.join(tmpdir(), 'chorus-neural-rtf-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('bench/neural-rtf.ts', () => {
  it('measures Piper and Kokoro per provider set and concurrency, and reports the device each ran on', async () => {
    const out = path.join(dir, 'result.json');
    const { stdout } = await promisify(execFile)(process.execPath, [
      '--import', 'tsx', 'bench/neural-rtf.ts', '--generated', '--generated-size', 'tiny', '--quick',
      '--concurrency', '1,2', '--requests', '2', '--out', out,
    ], { cwd: ROOT, timeout: 150_000, env: { ...process.env, ORT_INTRA_OP_THREADS: '1' } });
    const result = JSON.parse(readFileSync(out, 'utf8')) as { runs: RunInfo[]; rows: Row[]; comparison: Comparison[] };

    // Default: EXECUTION_PROVIDERS=cuda,cpu against cpu, both engines.
    expect(result.runs.map((r) => `${r.providers}/${r.engine}`).sort()).toEqual(['cpu/kokoro', 'cpu/piper', 'cuda,cpu/kokoro', 'cuda,cpu/piper']);
    for (const run of result.runs) {
      expect(['cpu', 'cuda']).toContain(run.device);
      if (run.providers === 'cpu') expect(run.device).toBe('cpu');
      // A fallback is exactly "asked for CUDA, got the CPU", with the worker's reason.
      expect(run.cudaFallback).toBe(run.providers.includes('cuda') && run.device !== 'cuda');
      if (run.cudaFallback) {
        expect(run.fallbackReason).toMatch(/cuda/i);
        expect(stdout).toContain(`!! ${run.engine} (in-process): EXECUTION_PROVIDERS=cuda,cpu asked for CUDA, but the model runs on the CPU`);
      }
    }

    expect(result.rows).toHaveLength(2 * 2 * 2); // provider sets × engines × levels
    for (const row of result.rows) {
      const run = result.runs.find((r) => r.providers === row.providers && r.engine === row.engine)!;
      expect(row.device, `${row.providers}/${row.engine}`).toBe(run.device);
      expect(row.cudaFallback).toBe(run.cudaFallback);
      expect([1, 2]).toContain(row.concurrency);
      expect(row.requests).toBe(2);
      expect(row.errors).toBe(0);
      expect(row.rtfP50).toBeGreaterThan(0);
      expect(row.rtfP95).toBeGreaterThanOrEqual(row.rtfP50);
      expect(row.audioSecondsPerSecond).toBeGreaterThan(0);
      expect(row.firstAudioP50Ms).toBeGreaterThan(0);
      expect(row.firstAudioP50Ms).toBeLessThanOrEqual(row.totalP50Ms);
      expect(row.firstAudioP95Ms).toBeLessThanOrEqual(row.totalP95Ms);
    }

    // The printed table labels a fallback as CPU, and no CUDA speed-up is claimed for it.
    const fellBack = result.runs.filter((r) => r.cudaFallback);
    if (fellBack.length > 0) {
      expect(stdout).toMatch(/cuda,cpu\s+cpu \(CUDA FALLBACK\)/);
      expect(stdout).toContain('!! CUDA was NOT used for:');
    }
    expect(result.comparison).toHaveLength(2 * 2);
    for (const c of result.comparison) {
      const tested = result.runs.find((r) => r.providers === 'cuda,cpu' && r.engine === c.engine)!;
      if (tested.device === 'cpu') {
        expect(c.rtfSpeedup).toBeUndefined();
        expect(c.note).toMatch(/both on cpu/);
      } else {
        expect(c.rtfSpeedup).toBeGreaterThan(0);
      }
    }
  }, 180_000);
});
