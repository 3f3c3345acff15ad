import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { Spawner, whenStarted, type Spawned } from './spawner.ts';

const spawner = new Spawner();
afterAll(() => spawner.close());

function collect(child: Spawned): Promise<{ out: Buffer; code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  const chunks: Buffer[] = [];
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => chunks.push(c));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code: number | null, signal: NodeJS.Signals | null) => resolve({ out: Buffer.concat(chunks), code, signal, stderr }));
  });
}

/** The parent pid of a process, from /proc. */
const ppid = (pid: number) => Number(readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')[1]);

describe('Spawner (a helper process starts the children; stdio sockets come back over IPC)', () => {
  it('runs a process whose stdin and stdout the worker holds: every byte through, exit status and stderr reported', async () => {
    const input = Buffer.alloc(3 * 1024 * 1024);
    for (let i = 0; i < input.length; i++) input[i] = (i * 7) & 0xff;
    const child = spawner.spawn('cat', []);
    const done = collect(child);
    child.stdin.end(input); // written at once, before the sockets arrived: buffered, none lost
    const { out, code, signal } = await done;
    expect(code).toBe(0);
    expect(signal).toBeNull();
    expect(out.equals(input)).toBe(true);

    const failing = spawner.spawn('sh', ['-c', 'echo oops >&2; exit 3']);
    failing.stdin.end();
    const r = await collect(failing);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('oops');
  });

  it('starts the process from the helper, not from this process (so no spawn blocks this event loop)', async () => {
    const child = spawner.spawn('sleep', ['30']);
    const pid = await new Promise<number>((resolve) => whenStarted(child, resolve));
    expect(ppid(pid)).not.toBe(process.pid);
    expect(ppid(ppid(pid))).toBe(process.pid); // the helper is this process's child
    const closed = collect(child);
    child.stdin.end();
    child.kill('SIGKILL');
    const r = await closed;
    expect(r.signal).toBe('SIGKILL');
  });

  it('reports a command that cannot start as an error, and a signal sent before the pid is known still lands', async () => {
    const missing = spawner.spawn('no-such-binary-chorus', []);
    missing.stdin.end();
    await expect(collect(missing)).rejects.toThrow(/ENOENT/);

    const early = spawner.spawn('sleep', ['30']);
    early.kill('SIGKILL'); // pid not known yet
    const r = await collect(early);
    expect(r.signal).toBe('SIGKILL');
  });

  it('a process stopped and continued by pid (the first-audio gate) goes on producing output', async () => {
    const child = spawner.spawn('cat', []);
    const done = collect(child);
    const pid = await new Promise<number>((resolve) => whenStarted(child, resolve));
    process.kill(pid, 'SIGSTOP');
    child.stdin.write('held ');
    await sleep(50);
    process.kill(pid, 'SIGCONT');
    child.stdin.end('and released');
    expect((await done).out.toString()).toBe('held and released');
  });

  it('when the helper dies, its processes are killed and their runs fail (jobs retry); the next spawn starts a new helper', async () => {
    const own = new Spawner();
    const child = own.spawn('sleep', ['30']);
    const closed = collect(child).catch((err: Error) => err);
    const pid = await new Promise<number>((resolve) => whenStarted(child, resolve));
    const helper = ppid(pid);
    process.kill(helper, 'SIGKILL');
    expect(await closed).toBeInstanceOf(Error);
    // the orphan was killed, not left running (gone, or a zombie waiting for init)
    const stateOf = (p: number) => {
      try {
        return readFileSync(`/proc/${p}/stat`, 'utf8').replace(/^.*\) /s, '')[0] ?? 'gone';
      } catch {
        return 'gone';
      }
    };
    for (let i = 0; i < 1000 && /^[RSD]$/.test(stateOf(pid)); i++) await sleep(10);
    expect(stateOf(pid)).toMatch(/^(gone|Z)$/);

    const next = own.spawn('cat', []);
    const r = collect(next);
    next.stdin.end('again');
    expect((await r).out.toString()).toBe('again');
    own.close();
  });
});
