import { fork, spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { SpawnerReply, SpawnerRequest } from './protocol.ts';

/**
 * A started process as the worker sees it: the part of ChildProcess that espeak-ng and LAME runs use. Events:
 * 'exit' (code, signal), then 'close' (code, signal) once stdout has ended too; 'error' when it could not start.
 */
export interface Spawned extends EventEmitter {
  readonly stdin: Writable;
  readonly stdout: Readable;
  readonly stderr: Readable;
  readonly pid?: number | undefined;
  readonly exitCode: number | null;
  readonly signalCode: NodeJS.Signals | null;
  kill(signal?: NodeJS.Signals): boolean;
}

export type SpawnFn = (command: string, args: readonly string[]) => Spawned;

/** Calls `fn` with the process's pid once it has one (at once for a local child; a remote one's comes by message). */
export function whenStarted(child: Spawned, fn: (pid: number) => void): void {
  if (child.pid !== undefined) fn(child.pid);
  else child.once('spawn', () => child.pid !== undefined && fn(child.pid));
}

/** Plain child_process.spawn (tests, benchmarks, and the worker until its spawner runs). */
export const spawnHere: SpawnFn = (command, args) => spawn(command, [...args], { stdio: ['pipe', 'pipe', 'pipe'] });

const SPAWNER_MAIN = fileURLToPath(new URL('./spawner-process.ts', import.meta.url));

/**
 * Starts the worker's espeak-ng and LAME processes from a small helper process instead of the worker itself.
 * Node spawns by fork + exec and blocks the calling event loop until the child has exec'd: on a busy host the
 * child must first get a CPU, and one spawn measured 30–58 ms of blocked event loop under load (bench/profile.ts:
 * `ChildProcess.spawn` was 36% of the worker's busy time, two spawns per request), time in which no job's audio
 * moves. The helper blocks instead; the worker gets the child's stdin and stdout sockets over the IPC channel
 * (libuv makes stdio pipes as socket pairs, which Node can pass) and its exit status as a message. The processes
 * are the helper's children; the worker signals them by pid (same user). If the helper dies, its processes are
 * killed and reported as failed (jobs retry), and a new helper starts.
 */
export class Spawner {
  #process: ChildProcess | undefined;
  #nextId = 1;
  readonly #pending = new Map<number, RemoteChild>();
  #closed = false;

  /** Spawns through the helper (started on first use). */
  readonly spawn: SpawnFn = (command, args) => {
    if (this.#closed) return spawnHere(command, args);
    const id = this.#nextId++;
    const child = new RemoteChild();
    this.#pending.set(id, child);
    this.#send({ t: 'spawn', id, command, args: [...args] });
    return child;
  };

  #send(message: SpawnerRequest): void {
    this.#ensure().send(message);
  }

  #ensure(): ChildProcess {
    if (this.#process?.connected) return this.#process;
    // The helper is TypeScript like the rest of the worker: it runs through tsx whatever this process was started with.
    const helper = fork(SPAWNER_MAIN, [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], execArgv: ['--import', 'tsx'] });
    this.#process = helper;
    helper.on('message', (message: SpawnerReply, handle?: Socket) => this.#onReply(helper, message, handle));
    helper.once('exit', () => {
      if (this.#process === helper) this.#process = undefined;
      // Its processes lose their reaper and their exit reports: stop them and fail their runs (jobs retry).
      for (const [id, child] of this.#pending) {
        if (child.owner !== helper) continue;
        this.#pending.delete(id);
        child.kill('SIGKILL');
        child.fail(new Error('spawner process exited'));
      }
    });
    helper.unref();
    (helper.channel as unknown as { unref?: () => void } | undefined)?.unref?.();
    return helper;
  }

  #onReply(helper: ChildProcess, message: SpawnerReply, handle: Socket | undefined): void {
    const child = this.#pending.get(message.id);
    if (!child) {
      handle?.destroy();
      return;
    }
    child.owner = helper;
    switch (message.t) {
      case 'pid':
        child.started(message.pid);
        break;
      // No handle: the process ended before its socket left the helper (the helper's copy closed): nothing to pass.
      case 'stdin':
        child.attachStdin(handle);
        break;
      case 'stdout':
        child.attachStdout(handle);
        // Both handles are here; once the helper answers this, it holds no copy that could read the output.
        helper.send({ t: 'sync', id: message.id } satisfies SpawnerRequest);
        break;
      case 'synced':
        child.synced();
        break;
      case 'exit':
        this.#pending.delete(message.id);
        child.exited(message.code, message.signal, message.stderr);
        break;
      case 'error':
        this.#pending.delete(message.id);
        child.fail(new Error(message.message));
        break;
    }
  }

  /** Stops the helper (its processes are killed with it); later spawns are plain child_process spawns. */
  close(): void {
    this.#closed = true;
    this.#process?.disconnect?.();
  }
}

/** The worker's view of a process the helper started: stdio through PassThroughs until the sockets arrive. */
class RemoteChild extends EventEmitter implements Spawned {
  readonly stdin = new PassThrough({ highWaterMark: 64 * 1024 });
  readonly stdout = new PassThrough({ highWaterMark: 64 * 1024 });
  readonly stderr = new PassThrough();
  pid: number | undefined;
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  owner: ChildProcess | undefined;
  #stdinSocket: Socket | undefined;
  #stdoutAttached = false;
  #stdoutEnded = false;
  #exit: [number | null, NodeJS.Signals | null] | undefined;
  #closeEmitted = false;
  #pendingSignal: NodeJS.Signals | undefined;

  constructor() {
    super();
    this.stdout.once('close', () => {
      this.#stdoutEnded = true;
      this.#maybeClose();
    });
  }

  started(pid: number): void {
    this.pid = pid;
    this.emit('spawn');
    if (this.#pendingSignal) this.kill(this.#pendingSignal);
  }

  attachStdin(socket: Socket | undefined): void {
    this.stdin.on('error', () => {});
    if (!socket) {
      this.stdin.destroy();
      return;
    }
    this.#stdinSocket = socket;
    socket.on('error', () => {}); // EPIPE when the process exits early: its exit status tells
    socket.resume(); // nothing to read from a process's stdin; let its end be seen
  }

  attachStdout(socket: Socket | undefined): void {
    this.#stdoutAttached = true;
    if (!socket) {
      this.stdout.end();
      return;
    }
    socket.on('error', (err) => this.stdout.destroy(err));
    socket.pipe(this.stdout);
  }

  /** From now on input reaches the process (see Spawner: no other copy of its output socket is open). */
  synced(): void {
    if (this.#stdinSocket) this.stdin.pipe(this.#stdinSocket);
  }

  exited(code: number | null, signal: NodeJS.Signals | null, stderr: string): void {
    this.exitCode = code;
    this.signalCode = signal;
    if (stderr) this.stderr.write(stderr);
    this.stderr.end();
    this.#exit = [code, signal];
    this.emit('exit', code, signal);
    this.#maybeClose();
  }

  fail(err: Error): void {
    this.signalCode ??= 'SIGKILL';
    this.stderr.end();
    if (!this.#stdoutAttached) this.stdout.end();
    this.stdin.destroy();
    this.emit('error', err);
    this.#exit = [null, this.signalCode];
    this.emit('exit', null, this.signalCode);
    this.#maybeClose();
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    if (this.#exit) return false;
    if (this.pid === undefined) {
      this.#pendingSignal = signal; // sent once the process has a pid
      return true;
    }
    try {
      process.kill(this.pid, signal);
      return true;
    } catch {
      return false;
    }
  }

  #maybeClose(): void {
    if (!this.#exit || !this.#stdoutEnded || this.#closeEmitted) return;
    this.#closeEmitted = true;
    const [code, signal] = this.#exit;
    queueMicrotask(() => this.emit('close', code, signal));
  }
}
