/**
 * `npm start`: the API and one worker in the foreground on embedded defaults. When REDIS_URL (and REDIS_CLUSTER_NODES) is unset a private
 * redis-server (AOF on) is started in DATA_DIR/redis on a free port and stopped on exit.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '@chorus/shared/free-port';
import { WORKER_NODE_FLAGS } from '@chorus/shared/node-flags';
import { waitForRedisUp } from '@chorus/shared/redis';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dataDir = path.resolve(root, process.env.DATA_DIR ?? 'data');
const children: ChildProcess[] = [];
let redis: ChildProcess | undefined;
let stopping = false;


async function startRedis(): Promise<string> {
  const dir = path.join(dataDir, 'redis');
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  redis = spawn('redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--save', '',
    '--logfile', path.join(dir, 'redis.log'),
  ], { stdio: 'ignore' });
  redis.once('exit', (code) => {
    if (!stopping) {
      console.error(`redis-server exited (${code}); stopping`);
      void stop(1);
    }
  });
  const url = `redis://127.0.0.1:${port}`;
  await waitForRedisUp(url);
  return url;
}

function run(name: string, entry: string, env: NodeJS.ProcessEnv, nodeFlags: readonly string[] = []) {
  const child = spawn(process.execPath, [...nodeFlags, '--import', 'tsx', path.join(root, entry)], { cwd: root, env, stdio: 'inherit' });
  child.once('exit', (code, signal) => {
    if (!stopping) {
      console.error(`${name} exited (${code ?? signal}); stopping`);
      void stop(code ?? 1);
    }
  });
  children.push(child);
}

async function stop(code: number) {
  if (stopping) return;
  stopping = true;
  await Promise.all(
    children.map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.exitCode !== null || c.signalCode !== null) return resolve();
          c.once('exit', () => resolve());
          c.kill('SIGTERM');
        }),
    ),
  );
  if (redis && redis.exitCode === null) {
    await new Promise<void>((resolve) => {
      redis!.once('exit', () => resolve());
      redis!.kill('SIGTERM');
    });
  }
  process.exit(code);
}

const env: NodeJS.ProcessEnv = { ...process.env, DATA_DIR: dataDir };
// REDIS_CLUSTER_NODES names the Redis to use even without REDIS_URL (which then only defaults).
if (!env.REDIS_URL && !env.REDIS_CLUSTER_NODES) {
  env.REDIS_URL = await startRedis();
  console.log(`started a private redis-server at ${env.REDIS_URL} (data in ${path.join(dataDir, 'redis')})`);
}
run('worker', 'apps/worker/src/main.ts', env, WORKER_NODE_FLAGS);
run('api', 'apps/api/src/server.ts', env);
process.on('SIGINT', () => void stop(0));
process.on('SIGTERM', () => void stop(0));
