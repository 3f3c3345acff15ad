/**
 * Renders bench/results/benchmarks.png from the JSON results of the concurrency, worker-scaling and overhead
 * benchmarks (whichever exist). bench/run.ts calls it last; run it alone to redraw without measuring again.
 *
 *   node --import tsx bench/chart.ts
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { renderPanels, type Panel } from './lib/chart.ts';
import { isMain } from './lib/main.ts';
import { RESULTS_DIR } from './lib/report.ts';

type Rows = Record<string, number | string>[];
function load(name: string): { rows: Rows; machine: { date: string; loadavg1AtStart: number; cpus: number; cpuModel: string; otherCpuShare?: number }; params: Record<string, unknown> } | undefined {
  const file = path.join(RESULTS_DIR, `${name}.json`);
  return existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : undefined;
}
const col = (rows: Rows, k: string) => rows.map((r) => Number(r[k]));

export function renderChart(): string | undefined {
  const panels: Panel[] = [];
  const conc = load('concurrency');
  const scaling = load('worker-scaling');
  const overhead = load('overhead');
  if (conc) {
    const x = col(conc.rows, 'concurrency');
    panels.push({
      title: 'Concurrency sweep: time to first byte', x, logX: true, xLabel: 'concurrent clients (300-char pcm)', yLabel: 'ms',
      series: [
        { name: 'TTFB p50', values: col(conc.rows, 'ttfbP50'), color: '#2471a3' },
        { name: 'TTFB p95', values: col(conc.rows, 'ttfbP95'), color: '#2471a3', dashed: true },
        { name: 'end-to-end p50', values: col(conc.rows, 'e2eP50'), color: '#7d3c98' },
      ],
    });
    const stalls = col(conc.rows, 'worstStallMs');
    const worst = Math.max(...stalls);
    panels.push({
      title: worst > 0 ? 'Concurrency sweep: throughput and underrun' : 'Concurrency sweep: throughput (no playback stall)',
      x, logX: true, xLabel: 'concurrent clients (300-char pcm)',
      yLabel: worst > 0 ? 'audio s per s  /  stall ms' : 'audio seconds produced per second',
      series: [
        { name: 'audio seconds produced per second', values: col(conc.rows, 'audioSecondsPerSecond'), color: '#1e8449' },
        ...(worst > 0 ? [{ name: 'worst playback stall (ms)', values: stalls, color: '#c0392b' }] : []),
      ],
    });
  }
  if (scaling) {
    const x = col(scaling.rows, 'workers');
    panels.push({
      title: `Worker scaling: latency-bound engine (${String(scaling.params.delayMs)} ms/segment)`, x, logX: true, xLabel: 'worker processes (1 job each)', yLabel: 'requests per second',
      series: [
        { name: 'measured', values: col(scaling.rows, 'rps'), color: '#1e8449' },
        { name: 'ideal (N × 1 worker)', values: col(scaling.rows, 'idealRps'), color: '#7f8c8d', dashed: true },
      ],
    });
  }
  if (overhead) {
    const rows = overhead.rows;
    const x = [...new Set(col(rows, 'concurrency'))];
    const of = (f: string) => rows.filter((r) => r.format === f).map((r) => Number(r.throughputRatio));
    panels.push({
      title: 'Overhead: service throughput / direct pipeline', x, logX: true, xLabel: 'concurrent requests (300-char paragraph)', yLabel: 'ratio',
      hline: { y: 0.85, label: 'target ≥ 0.85' },
      series: [
        { name: 'mp3', values: of('mp3'), color: '#d35400' },
        { name: 'pcm', values: of('pcm'), color: '#2471a3' },
      ],
    });
  }
  if (panels.length === 0) return undefined;
  const sources = { concurrency: conc, 'worker scaling': scaling, overhead };
  // The load average counts the benchmarks' own processes; the share of CPU other processes took is the clean figure.
  const others = Object.entries(sources).filter(([, r]) => r).map(([k, r]) => {
    const share = r!.machine.otherCpuShare;
    return `${k} ${share === undefined ? `load ${r!.machine.loadavg1AtStart}` : `${Math.round(share * 100)}%`}`;
  }).join(', ');
  const m = (conc ?? scaling ?? overhead)!.machine;
  const png = renderPanels(panels, {
    title: 'Chorus benchmarks',
    footnote: `${m.date.slice(0, 16).replace('T', ' ')} UTC, ${m.cpus} CPUs (${m.cpuModel}) shared with the load generator; other processes' CPU share: ${others}. See docs/benchmarks.md.`,
  });
  const file = path.join(RESULTS_DIR, 'benchmarks.png');
  writeFileSync(file, png);
  console.log(`wrote ${path.relative(process.cwd(), file)}`);
  return file;
}

if (isMain(import.meta.url)) renderChart();
