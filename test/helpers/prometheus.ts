import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from './redis-server.ts';

export interface PromSample {
  metric: Record<string, string>;
  value: number;
}

export interface PrometheusServer {
  url: string;
  output(): string;
  /** An instant PromQL query through the HTTP API. */
  query(promql: string): Promise<PromSample[]>;
  /**
   * Polls `promql` until `ready` accepts the result (scrapes land every second) or `timeoutMs` passes; returns the
   * last result either way so the caller's assertion shows what was there.
   */
  until(promql: string, ready: (r: PromSample[]) => boolean, timeoutMs?: number): Promise<PromSample[]>;
  stop(): Promise<void>;
}

/**
 * A real Prometheus (Debian's `prometheus` binary) on a free port, with its TSDB in a temp dir and a generated
 * config scraping `targets` (job name → host:port list) every second.
 */
export async function startPrometheus(targets: Record<string, string[]>): Promise<PrometheusServer> {
  const dir = mkdtempSync(path.join(tmpdir(), 'chorus-prom-'));
  const port = await freePort();
  const scrapeConfigs = Object.entries(targets)
    .map(([job, list]) => `  - job_name: ${job}\n    static_configs:\n      - targets: [${list.map((t) => `'${t}'`).join(', ')}]`)
    .join('\n');
  writeFileSync(
    path.join(dir, 'prometheus.yml'),
    `global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n${scrapeConfigs}\n`,
  );
  const child: ChildProcess = spawn('prometheus', [
    `--config.file=${path.join(dir, 'prometheus.yml')}`,
    `--storage.tsdb.path=${path.join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`,
    '--log.level=warn',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.on('error', (err) => (out += `\nspawn prometheus: ${err.message}`)); // ENOENT: not installed
  child.stdout!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-50_000)));
  child.stderr!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-50_000)));
  const url = `http://127.0.0.1:${port}`;

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    }
    rmSync(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + 20_000;
  for (;;) {
    const ok = await fetch(`${url}/-/ready`).then((r) => r.ok, () => false);
    if (ok) break;
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`prometheus did not start:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }

  const query = async (promql: string): Promise<PromSample[]> => {
    const res = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(promql)}`);
    const body = (await res.json()) as {
      status: string; error?: string; data: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] };
    };
    if (body.status !== 'success') throw new Error(`PromQL ${promql}: ${body.error}`);
    return body.data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
  };

  return {
    url,
    output: () => out,
    query,
    async until(promql, ready, timeoutMs = 15_000) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const result = await query(promql);
        if (ready(result) || Date.now() > end) return result;
        await new Promise((r) => setTimeout(r, 250));
      }
    },
    stop,
  };
}

/** The value of a query that must return exactly one series (or undefined when it returned none). */
export function single(result: PromSample[]): number | undefined {
  if (result.length > 1) throw new Error(`expected one series, got ${JSON.stringify(result)}`);
  return result[0]?.value;
}
