import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { track } from './child-cleanup.ts';
import { freePort } from '@chorus/shared/free-port';
import { waitForRedisUp } from '@chorus/shared/redis';

export { freePort };

/** One short-lived connection to 127.0.0.1:`port` for `fn` (no retries: a node that is down answers an error). */
export async function askRedis<T>(port: number, fn: (c: Redis) => Promise<T>): Promise<T> {
  const c = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  c.on('error', () => {});
  try {
    await c.connect();
    return await fn(c);
  } finally {
    c.disconnect();
  }
}

export interface RedisServer {
  url: string;
  port: number;
  dir: string;
  process: ChildProcess;
  stop(): Promise<void>;
  /** The redis-server process is alive (not killed or exited). */
  readonly running: boolean;
  /** Kill (SIGKILL) without cleanup, keeping the data dir for a restart. */
  kill(): Promise<void>;
  restart(): Promise<void>;
}



/** A test-owned redis-server on a free port in a temp dir (never the shared 6379 one). */
export async function startRedisServer(opts: { appendonly?: boolean; extraArgs?: string[] } = {}): Promise<RedisServer> {
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'chorus-redis-'));
  const args = [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '',
    '--appendonly', opts.appendonly ? 'yes' : 'no', '--appendfsync', 'always', ...(opts.extraArgs ?? []),
  ];
  const url = `redis://127.0.0.1:${port}`;
  let proc = track(spawn('redis-server', args, { stdio: 'ignore' }));
  await waitForRedisUp(url);
  const server: RedisServer = {
    url, port, dir,
    get process() {
      return proc;
    },
    get running() {
      return proc.exitCode === null && proc.signalCode === null;
    },
    async kill() {
      // A process killed by a signal keeps exitCode null (signalCode is set): check both.
      if (server.running) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGKILL');
        await exited;
      }
    },
    async restart() {
      await server.kill();
      proc = track(spawn('redis-server', args, { stdio: 'ignore' }));
      await waitForRedisUp(url);
    },
    async stop() {
      await server.kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return server;
}
