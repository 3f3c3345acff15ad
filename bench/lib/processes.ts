import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from '@chorus/shared/free-port';
import { waitForRedisUp } from '@chorus/shared/redis';

export { freePort };
export { rssBytes } from '../../test/helpers/processes.ts';

/*
 * Every process a benchmark starts is registered here and killed when the benchmark ends, however it ends
 * (normal exit, an exception, Ctrl-C): a benchmark must never leave a redis-server, API or worker running.
 */

const children = new Set<ChildProcess>();
let hooked = false;

function hookExit() {
  if (hooked) return;
  hooked = true;
  process.on('exit', () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      process.exitCode = 130;
      process.exit();
    });
  }
}

export interface Child {
  process: ChildProcess;
  pid: number;
  output(): string;
  /** SIGTERM, then SIGKILL after `graceMs`. Resolves once the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

export function startChild(command: string, args: string[], env: Record<string, string>, cwd?: string): Child {
  hookExit();
  const child = spawn(command, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  let out = '';
  const keep = (d: Buffer) => (out = (out + d.toString()).slice(-100_000));
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  return {
    process: child,
    pid: child.pid!,
    output: () => out,
    stop(graceMs = 3000) {
      if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
      return new Promise((resolve) => {
        const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
        child.once('exit', () => {
          clearTimeout(t);
          resolve();
        });
        child.kill('SIGTERM');
      });
    },
  };
}


export interface RedisServerHandle {
  url: string;
  port: number;
  child: Child;
  stop(): Promise<void>;
}

/**
 * A private redis-server on a free 127.0.0.1 port (benchmarks never touch a shared Redis); no persistence unless
 * `appendOnly` (AOF, fsync every second: what `npm start`'s embedded Redis runs with).
 */
export async function startRedisServer(opts: { appendOnly?: boolean } = {}): Promise<RedisServerHandle> {
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'chorus-bench-redis-'));
  const child = startChild('redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', opts.appendOnly ? 'yes' : 'no',
  ], {});
  const url = `redis://127.0.0.1:${port}`;
  try {
    await waitForRedisUp(url);
  } catch (err) {
    throw new Error(`redis-server did not start:\n${child.output()}`, { cause: err });
  }
  return {
    url, port, child,
    async stop() {
      await child.stop(2000);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}


/**
 * CPU time (user + system, ms) a process has used so far, from /proc/<pid>/stat (10 ms clock ticks). `children`
 * adds the CPU of its children that have exited and been waited for (espeak-ng and ffmpeg runs of a worker).
 */
export function cpuMs(pid: number | 'self', opts: { children?: boolean } = {}): number {
  const f = statFields(pid);
  if (!f) return 0;
  const own = f[11]! + f[12]!;
  return (opts.children ? own + f[13]! + f[14]! : own) * 10;
}

/**
 * /proc/<pid>/stat after the command name, as numbers (state is field 3, ppid 4; utime, stime, cutime, cstime are
 * fields 14–17, so f[1] is the ppid and f[11..14] the times); undefined for a process that is gone.
 */
function statFields(pid: number | string): number[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
  } catch {
    return undefined;
  }
}

/**
 * CPU (ms) of `root` and its live descendants, each including the children it has reaped. The worker's espeak-ng
 * and LAME are children of its spawner helper (alive for the worker's whole life), so `cpuMs(worker, { children:
 * true })` alone misses them. A subtree whose parent was SIGKILLed is reaped by init and drops out.
 */
export function treeCpuMs(root: number): number {
  const stats = new Map<number, { ppid: number; cpu: number }>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const f = statFields(name); // undefined: exited while we looked
    if (f) stats.set(Number(name), { ppid: f[1]!, cpu: (f[11]! + f[12]! + f[13]! + f[14]!) * 10 });
  }
  const inTree = new Set([root]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const [pid, s] of stats) {
      if (!inTree.has(pid) && inTree.has(s.ppid)) {
        inTree.add(pid);
        grew = true;
      }
    }
  }
  let total = 0;
  for (const pid of inTree) total += stats.get(pid)?.cpu ?? 0;
  return total;
}

/**
 * TCP connections that process `pid` holds to `remotePort` on this host: its socket fds matched against
 * /proc/net/tcp by inode. Counts the API's own Redis connections without relying on connection names (the
 * workers use the same names).
 */
export function tcpConnectionsTo(pid: number, remotePort: number): number {
  const inodes = new Set<string>();
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m) inodes.add(m[1]!);
      } catch {
        // fd closed while we looked
      }
    }
  } catch {
    return 0;
  }
  let n = 0;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10) continue;
      const rem = cols[2]!;
      const state = cols[3]!;
      // 01 = ESTABLISHED
      if (state === '01' && parseInt(rem.split(':')[1]!, 16) === remotePort && inodes.has(cols[9]!)) n++;
    }
  }
  return n;
}
