import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import path from 'node:path';
import { contention, cpuSnapshot } from './contention.ts';
import { ROOT } from './stack.ts';

export const RESULTS_DIR = path.join(ROOT, 'bench/results');

export type Cell = string | number | boolean | undefined;

/** Prints an aligned text table (numbers right-aligned). */
export function printTable(title: string, columns: string[], rows: Cell[][]): void {
  const text = rows.map((r) => r.map((c) => (c === undefined ? '' : typeof c === 'number' ? fmt(c) : String(c))));
  const widths = columns.map((c, i) => Math.max(c.length, ...text.map((r) => r[i]?.length ?? 0)));
  const line = (cells: string[], numeric: boolean[]) =>
    cells.map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ');
  const numeric = columns.map((_, i) => rows.some((r) => typeof r[i] === 'number'));
  console.log(`\n${title}`);
  console.log(line(columns, numeric));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of text) console.log(line(r, numeric));
}

function fmt(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (Number.isInteger(x)) return String(x);
  const a = Math.abs(x);
  return a >= 100 ? x.toFixed(0) : a >= 10 ? x.toFixed(1) : a >= 0.1 ? x.toFixed(2) : x.toPrecision(2);
}

let started = { date: new Date(), load1: loadavg()[0]!, cpu: cpuSnapshot() };

/**
 * Call when a benchmark starts: its results record the time, the load average at that moment, and how much CPU
 * other processes took while it ran (see contention.ts).
 */
export function markStart(): void {
  started = { date: new Date(), load1: loadavg()[0]!, cpu: cpuSnapshot() };
}

/** What the numbers were measured on: a result without its load average cannot be judged. */
export function machineInfo() {
  let commit = 'unknown';
  let dirty = false;
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: ROOT, encoding: 'utf8' }).trim() !== '';
  } catch {
    // not a git checkout
  }
  return {
    date: started.date.toISOString(),
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memGiB: Math.round(totalmem() / 2 ** 30),
    loadavg1AtStart: Math.round(started.load1 * 100) / 100,
    commit: dirty ? `${commit}+dirty` : commit,
  };
}

/**
 * Writes bench/results/<name>.json (or `file`, e.g. a test's temporary directory): the machine, the parameters,
 * the raw summaries and the verdicts.
 */
export function writeResults(name: string, data: Record<string, unknown>, file = path.join(RESULTS_DIR, `${name}.json`)): string {
  mkdirSync(path.dirname(file), { recursive: true });
  const busy = contention(started.cpu, cpuSnapshot(), cpus().length);
  const machine = { ...machineInfo(), loadavg1AtEnd: Math.round(loadavg()[0]! * 100) / 100, ...busy };
  writeFileSync(file, `${JSON.stringify({ benchmark: name, machine, ...data }, null, 2)}\n`);
  console.log(`\nCPU over ${busy.wallS} s: this benchmark ${(busy.ourCpuShare * 100).toFixed(0)}% of the machine, other processes ${(busy.otherCpuShare * 100).toFixed(0)}%`);
  console.log(`wrote ${path.relative(ROOT, file)}`);
  return file;
}

export interface Target {
  name: string;
  measured: number;
  limit: number;
  /** `le`: measured must be ≤ limit; `ge`: ≥ limit. */
  op: 'le' | 'ge';
  unit?: string;
}

export function verdicts(targets: Target[]) {
  const out = targets.map((t) => ({ ...t, met: t.op === 'le' ? t.measured <= t.limit : t.measured >= t.limit }));
  printTable('Targets', ['target', 'measured', 'limit', 'met'], out.map((t) => [
    t.name, t.measured, `${t.op === 'le' ? '≤' : '≥'} ${t.limit}${t.unit ?? ''}`, t.met ? 'yes' : 'NO',
  ]));
  return out;
}

/** `--quick`: a short smoke run for development (few requests, one round); numbers from it are not reported. */
export const QUICK = process.argv.includes('--quick') || process.env.BENCH_QUICK === '1';
