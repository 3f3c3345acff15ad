import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import type { SpawnerReply, SpawnerRequest } from './protocol.ts';

/*
 * The spawner: a small process the worker forks once, which starts espeak-ng and LAME for it and hands their stdin
 * and stdout back over the IPC channel (see spawner.ts for why). It keeps stderr (the last 2,000 characters) and
 * reports the exit. When the worker goes away (its IPC channel closes), every process started here is killed.
 */

const children = new Map<number, ChildProcessByStdio<Writable, Readable, Readable>>();

function reply(message: SpawnerReply, handle?: Writable | Readable): void {
  if (!process.connected) return;
  // The handle leaves this process with the message (keepOpen false): the worker owns it from then on.
  if (handle) process.send!(message, handle as never);
  else process.send!(message);
}

function start(id: number, command: string, args: string[]): void {
  if (!process.connected) quit();
  let child: ChildProcessByStdio<Writable, Readable, Readable>;
  try {
    child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (err) {
    reply({ t: 'error', id, message: (err as Error).message });
    return;
  }
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-2000)));
  child.once('error', (err) => reply({ t: 'error', id, message: err.message }));
  if (child.pid === undefined) return; // 'error' follows
  children.set(id, child);
  reply({ t: 'pid', id, pid: child.pid });
  reply({ t: 'stdin', id }, child.stdin);
  reply({ t: 'stdout', id }, child.stdout);
  child.once('exit', (code, signal) => {
    children.delete(id);
    // stderr may still hold the process's last words: wait for it to end (it does once the process is gone).
    const send = () => reply({ t: 'exit', id, code, signal, stderr });
    if (child.stderr.readableEnded) send();
    else child.stderr.once('close', send);
  });
}

process.on('message', (message: SpawnerRequest) => {
  if (message.t === 'spawn') start(message.id, message.command, message.args);
  else if (message.t === 'sync') reply({ t: 'synced', id: message.id });
});

/** The worker is gone: nothing started here may outlive it. */
function quit(): never {
  for (const child of children.values()) child.kill('SIGKILL');
  process.exit(0);
}

process.on('disconnect', quit);
// The worker may have died while this process was still loading (before the listener above existed): then no
// 'disconnect' comes. Checked now and every second after.
if (!process.connected) quit();
setInterval(() => {
  if (!process.connected) quit();
}, 1000).unref();

reply({ t: 'ready', id: 0 });
