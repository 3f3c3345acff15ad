import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ROOT, startStack, type Stack } from './helpers/stack.ts';
import { freePort } from './helpers/redis-server.ts';
import { track } from './helpers/child-cleanup.ts';
import { decodedDuration } from './helpers/audio.ts';
import { speechWithPause } from './helpers/slow-reader.ts';

/*
 * Issue 9, finding 7 at the gateway: the shipped deploy/nginx/nginx.conf, run by a real nginx in front of a real
 * API. Only what cannot run outside Docker is rewritten (listen address, upstream, resolver, paths) and the body
 * timeout is shortened so the test is quick. nginx comes from scripts/install.sh; without it this file is skipped.
 */

function which(bin: string): string | undefined {
  try {
    return execFileSync('sh', ['-c', `command -v ${bin}`], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}
const NGINX = which('nginx') ?? (which('/usr/sbin/nginx') ? '/usr/sbin/nginx' : undefined);
if (!NGINX) console.warn('nginx not installed (scripts/install.sh installs it): gateway checks skipped');

const BODY_TIMEOUT_S = 2;
let stack: Stack;
let nginx: ChildProcess | undefined;
let dir: string;
let gateway: string;
const apiRequests: string[] = [];

/** The shipped config with Docker-only parts swapped for local ones; fails if an expected line is missing. */
function localConfig(gatewayPort: number, apiPort: number): string {
  let conf = readFileSync(path.join(ROOT, 'deploy/nginx/nginx.conf'), 'utf8');
  const swap = (from: RegExp, to: string) => {
    expect(conf, `deploy/nginx/nginx.conf has ${from}`).toMatch(from);
    conf = conf.replace(from, to);
  };
  swap(/^worker_processes .*;$/m, `worker_processes 1;\ndaemon off;\npid ${dir}/nginx.pid;\nerror_log ${dir}/error.log;`);
  swap(/^\s*resolver .*;$/m, ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']
    .map((t) => `  ${t}_temp_path ${dir}/${t};`).join('\n'));
  swap(/listen 8000;/, `listen 127.0.0.1:${gatewayPort};`);
  swap(/http:\/\/api:8000/, `http://127.0.0.1:${apiPort}`);
  swap(/client_body_timeout \d+s;/, `client_body_timeout ${BODY_TIMEOUT_S}s;`);
  swap(/proxy_request_buffering on;/, 'proxy_request_buffering on;');
  return conf;
}

beforeAll(async () => {
  if (!NGINX) return;
  stack = await startStack({ redisUrl: inject('redisUrl') });
  stack.app.server.on('request', (req: http.IncomingMessage) => apiRequests.push(`${req.method} ${req.url}`));
  dir = mkdtempSync(path.join(tmpdir(), 'chorus-nginx-'));
  for (const t of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(path.join(dir, t));
  const port = await freePort();
  const conf = path.join(dir, 'nginx.conf');
  writeFileSync(conf, localConfig(port, Number(new URL(stack.baseUrl).port)));
  nginx = track(spawn(NGINX, ['-c', conf, '-p', dir], { stdio: 'ignore' }));
  gateway = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      if ((await fetch(`${gateway}/healthz`)).ok) break;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`nginx did not start: ${readFileSync(path.join(dir, 'error.log'), 'utf8')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
});
afterAll(async () => {
  nginx?.kill('SIGKILL');
  await stack?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!NGINX)('finding 7: gateway timeouts (real nginx, shipped config)', () => {
  it('a dribbled body is cut at the gateway and never reaches the API', async () => {
    const before = apiRequests.length;
    const t0 = performance.now();
    const socket = net.connect(Number(new URL(gateway).port), '127.0.0.1');
    socket.on('error', () => {});
    const body = JSON.stringify({ model: 'tts-1', voice: 'alloy', input: 'x'.repeat(300) });
    socket.write(`POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`);
    socket.write(body.slice(0, 10));
    // Then nothing: a client stalled mid-body.
    await new Promise<void>((resolve) => socket.on('close', () => resolve()));
    const s = (performance.now() - t0) / 1000;
    expect(s).toBeGreaterThanOrEqual(BODY_TIMEOUT_S * 0.9);
    expect(s).toBeLessThan(BODY_TIMEOUT_S + 15);
    expect(apiRequests.slice(before)).toEqual([]); // buffered at the gateway: the API never saw it
  });

  it('a long streamed response through the gateway, read with a pause longer than the timeouts, arrives whole', async () => {
    const input = 'Through the gateway a long answer keeps streaming past every receive timeout. '.repeat(36);
    const { status, bytes } = await speechWithPause(
      `${gateway}/v1/audio/speech`, { model: 'tts-1', voice: 'alloy', input, response_format: 'wav' }, BODY_TIMEOUT_S * 3000,
    );
    expect(status).toBe(200);
    expect(bytes.length).toBeGreaterThan(4_000_000);
    expect(await decodedDuration(bytes, 'wav')).toBeCloseTo((bytes.length - 44) / 48_000, 1);
  });
});
