import { readdirSync, readFileSync } from 'node:fs';

export interface ProcInfo {
  pid: number;
  ppid: number;
  /** Executable name as the kernel reports it (`espeak-ng`, `ffmpeg`, `node`). */
  comm: string;
  cmdline: string;
  /** CPU niceness (stat field 19). */
  nice: number;
}

function readProc(pid: number): ProcInfo | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm is in parentheses and may contain spaces; fields after the last ')' are space-separated.
    const close = stat.lastIndexOf(')');
    const comm = stat.slice(stat.indexOf('(') + 1, close);
    const fields = stat.slice(close + 2).split(' ');
    const [state, ppid] = fields;
    if (state === 'Z') return undefined; // exited, not yet reaped: no longer running anything
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
    return { pid, ppid: Number(ppid), comm, cmdline, nice: Number(fields[16]) };
  } catch {
    return undefined; // exited while we looked
  }
}

/** Every live process below `root` in the process table (children, grandchildren, ...), read from /proc. */
export function descendants(root: number): ProcInfo[] {
  const all: ProcInfo[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const info = readProc(Number(name));
    if (info) all.push(info);
  }
  const out: ProcInfo[] = [];
  const parents = new Set([root]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const p of all) {
      if (parents.has(p.ppid) && !parents.has(p.pid)) {
        parents.add(p.pid);
        out.push(p);
        grew = true;
      }
    }
  }
  return out;
}

/** Descendants of `root` whose executable is `comm`. */
export function descendantsNamed(root: number, comm: string): ProcInfo[] {
  return descendants(root).filter((p) => p.comm === comm);
}

/** Bytes a process has written so far (`wchar` in /proc/<pid>/io), or 0 when it is gone. */
export function bytesWritten(pid: number): number {
  try {
    return Number(/^wchar: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** A WAV header: what espeak-ng --stdout writes before its first samples. */
const WAV_HEADER_BYTES = 44;

/**
 * The espeak-ng processes below `root`, split into those that have written audio (working, or done, for a job)
 * and the worker's warm ones (engines/espeak-pool.ts), idle on stdin until a job takes one: they have not yet
 * written a WAV header (wchar counts a byte or so written by the spawning code before exec).
 */
export function espeakProcesses(root: number): { working: ProcInfo[]; idle: ProcInfo[] } {
  const all = descendantsNamed(root, 'espeak-ng');
  const written = new Map(all.map((p) => [p.pid, bytesWritten(p.pid)]));
  return {
    working: all.filter((p) => written.get(p.pid)! >= WAV_HEADER_BYTES),
    idle: all.filter((p) => written.get(p.pid)! < WAV_HEADER_BYTES),
  };
}

/** Resident set size of one process in bytes (VmRSS), or 0 when it is gone. */
export function rssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Polls `check` until it returns true or `timeoutMs` passes; resolves with the time it took (ms) or -1. */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, stepMs = 20): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    if (await check()) return performance.now() - t0;
    if (performance.now() - t0 > timeoutMs) return -1;
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
