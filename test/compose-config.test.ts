import { execFile, execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers/stack.ts';
import { WORKER_NODE_FLAGS } from '@chorus/shared/node-flags';

/*
 * There is no Docker engine on CI machines, but Debian's docker-compose (1.29) validates a compose file offline,
 * and promtool checks the Prometheus config: both come from scripts/install.sh.
 */

const run = promisify(execFile);

function has(bin: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const HAS_COMPOSE = has('docker-compose');
if (!HAS_COMPOSE) console.warn('docker-compose not installed (scripts/install.sh installs it): compose checks skipped');

async function composeConfig(...files: string[]): Promise<string> {
  const args = files.flatMap((f) => ['-f', f]);
  // A clean environment: the defaults in the file must be enough (no .env needed).
  const { stdout } = await run('docker-compose', [...args, 'config'], { cwd: ROOT, env: { PATH: process.env.PATH } });
  return stdout;
}

/** The lines of one service in `docker-compose config` output (services are indented by two spaces). */
function serviceBlock(config: string, name: string): string {
  const lines = config.split('\n');
  const start = lines.indexOf(`  ${name}:`);
  if (start < 0) throw new Error(`no service ${name}`);
  const end = lines.findIndex((l, i) => i > start && /^ {0,2}\S/.test(l));
  return lines.slice(start, end < 0 ? undefined : end).join('\n');
}

describe.skipIf(!HAS_COMPOSE)('docker-compose.yml', () => {
  it('validates, with redis (AOF), api, gateway, worker, prometheus and grafana', async () => {
    const config = await composeConfig('docker-compose.yml');
    const { stdout } = await run('docker-compose', ['-f', 'docker-compose.yml', 'config', '--services'], { cwd: ROOT });
    expect(stdout.trim().split('\n').sort()).toEqual(['api', 'gateway', 'grafana', 'prometheus', 'redis', 'worker']);
    expect(serviceBlock(config, 'redis')).toMatch(/- --appendonly\n\s+- ["']?yes["']?\n/);
  });

  it('api and worker can be scaled: no fixed host ports or container names', async () => {
    const config = await composeConfig('docker-compose.yml');
    for (const name of ['api', 'worker']) {
      const block = serviceBlock(config, name);
      expect(block, name).not.toMatch(/^\s{4}ports:/m);
      expect(block, name).not.toMatch(/container_name/);
      expect(block, name).toMatch(/stop_grace_period/);
    }
    // Prometheus discovers replicas by service name and the ports the services listen on.
    const prom = readFileSync(path.join(ROOT, 'deploy/prometheus/prometheus.yml'), 'utf8');
    expect(prom).toMatch(/names: \[api\]\s+type: A\s+port: 8000/);
    expect(prom).toMatch(/names: \[worker\]\s+type: A\s+port: 9464/);
    expect(serviceBlock(config, 'api')).toMatch(/PORT: '8000'/);
    expect(serviceBlock(config, 'worker')).toMatch(/METRICS_PORT: '9464'/);
  });

  it('every file it mounts or builds from exists', async () => {
    const config = await composeConfig('docker-compose.yml');
    const sources = [...config.matchAll(/^\s+- (\/[^:\s]+):[^\s]+/gm)].map((m) => m[1]!);
    expect(sources.length).toBeGreaterThanOrEqual(4);
    for (const s of sources) expect(existsSync(s), s).toBe(true);
    const dockerfiles = [...config.matchAll(/dockerfile: (\S+)/g)].map((m) => m[1]!);
    expect(dockerfiles.sort()).toEqual(['apps/api/Dockerfile', 'apps/worker/Dockerfile']);
    for (const d of dockerfiles) expect(existsSync(path.join(ROOT, d)), d).toBe(true);
    // Grafana reads the dashboards where the provisioning file says they are.
    const provider = readFileSync(path.join(ROOT, 'deploy/grafana/provisioning/dashboards/chorus.yml'), 'utf8');
    const dashPath = /path:\s*(\S+)/.exec(provider)![1]!;
    expect(serviceBlock(config, 'grafana')).toContain(`deploy/grafana/dashboards:${dashPath}:ro`);
  });

  it('the api trusts X-Forwarded-For from exactly the gateway: its fixed address, not every hop', async () => {
    const config = await composeConfig('docker-compose.yml');
    const gateway = /ipv4_address: (\S+)/.exec(serviceBlock(config, 'gateway'))?.[1];
    expect(gateway).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    expect(serviceBlock(config, 'api')).toContain(`TRUST_PROXY: ${gateway}`);
    // Static addresses must lie outside the range Docker hands out, or another container could take it first.
    expect(config).toMatch(/ip_range: 172\.29\.85\.128\/25/);
    expect(gateway!.split('.').map(Number)[3]).toBeLessThan(128);
  });

  it('keeps the GPU reservation commented out, and the GPU overlay validates with it', async () => {
    const raw = readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8');
    expect(raw).toMatch(/^\s+#[\s-]+driver: nvidia/m);
    expect(serviceBlock(await composeConfig('docker-compose.yml'), 'worker')).not.toContain('nvidia');
    const gpu = serviceBlock(await composeConfig('docker-compose.yml', 'docker-compose.gpu.yml'), 'worker');
    expect(gpu).toContain('driver: nvidia');
    expect(gpu).toContain('EXECUTION_PROVIDERS: cuda,cpu');
    // The CUDA image (Dockerfile target `gpu`) with the CUDA build of onnxruntime-node.
    expect(gpu).toContain('target: gpu');
    expect(gpu).toContain('ONNXRUNTIME_NODE_INSTALL: cuda12');
    expect(readFileSync(path.join(ROOT, 'apps/worker/Dockerfile'), 'utf8')).toMatch(/^FROM nvidia\/cuda:12[.\d]*-cudnn-runtime-\S+ AS gpu$/m);
  });
});

describe.skipIf(!has('promtool'))('deploy/prometheus/prometheus.yml', () => {
  it('passes promtool check config', async () => {
    const { stdout } = await run('promtool', ['check', 'config', 'deploy/prometheus/prometheus.yml'], { cwd: ROOT });
    expect(stdout).toContain('SUCCESS');
  });
});

describe('deploy/nginx/nginx.conf', () => {
  it('sets X-Forwarded-For to the address it sees instead of appending to what the client sent', () => {
    const nginx = readFileSync(path.join(ROOT, 'deploy/nginx/nginx.conf'), 'utf8');
    expect(nginx).toMatch(/^\s*proxy_set_header X-Forwarded-For \$remote_addr;/m);
    expect(nginx).not.toContain('$proxy_add_x_forwarded_for');
  });
});

describe('Dockerfiles', () => {
  /** The USER of each stage (`FROM … AS name`), the last one winning, as Docker applies it. */
  function stageUsers(file: string): Map<string, string> {
    const users = new Map<string, string>();
    let stage = '';
    for (const l of readFileSync(path.join(ROOT, file), 'utf8').split('\n')) {
      const from = /^FROM\s+\S+(?:\s+AS\s+(\S+))?/i.exec(l);
      if (from) stage = from[1] ?? file;
      const user = /^USER\s+(\S+)/i.exec(l);
      if (user) users.set(stage, user[1]!);
    }
    return users;
  }

  it('the api and every worker target run as uid 1000, so all of them can write the shared DATA_DIR volume', () => {
    // `node` is uid 1000 in the official node images; the gpu target (a CUDA base image) names the uid itself.
    const uid1000 = (u: string | undefined) => u === 'node' || /^1000(:1000)?$/.test(u ?? '');
    expect(uid1000(stageUsers('apps/api/Dockerfile').get('apps/api/Dockerfile'))).toBe(true);
    const worker = stageUsers('apps/worker/Dockerfile');
    for (const target of ['cpu', 'gpu']) expect(uid1000(worker.get(target)), `worker ${target}: USER ${worker.get(target)}`).toBe(true);
  });

  it('every worker start passes WORKER_NODE_FLAGS: both image targets, the npm scripts, npm start', () => {
    const read = (file: string) => readFileSync(path.join(ROOT, file), 'utf8');
    const cmds = read('apps/worker/Dockerfile').split('\n').filter((l) => /^CMD \[.*apps\/worker\/src\/main\.ts/.test(l));
    expect(cmds).toHaveLength(2); // cpu and gpu
    for (const cmd of cmds) {
      const argv = JSON.parse(cmd.replace(/^CMD /, '')) as string[];
      expect(argv.slice(1, 1 + WORKER_NODE_FLAGS.length), cmd).toEqual([...WORKER_NODE_FLAGS]);
    }
    const scripts = [
      (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts.worker!,
      (JSON.parse(read('apps/worker/package.json')) as { scripts: Record<string, string> }).scripts.start!,
    ];
    for (const script of scripts) expect(script.split(' ').slice(1, 1 + WORKER_NODE_FLAGS.length), script).toEqual([...WORKER_NODE_FLAGS]);
    expect(read('scripts/launch.ts')).toContain("run('worker', 'apps/worker/src/main.ts', env, WORKER_NODE_FLAGS)");
  });
});
