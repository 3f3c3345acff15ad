/**
 * Prints the results in bench/results/*.json as Markdown tables (the ones docs/benchmarks.md quotes), so the
 * document can be refreshed from a new run without copying numbers by hand.
 *
 *   node --import tsx bench/markdown.ts
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { RESULTS_DIR } from './lib/report.ts';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- results files are our own JSON, read for display only
type Json = Record<string, any>;
const load = (name: string): Json | undefined => {
  const f = path.join(RESULTS_DIR, `${name}.json`);
  return existsSync(f) ? (JSON.parse(readFileSync(f, 'utf8')) as Json) : undefined;
};
const table = (head: string[], rows: unknown[][]) =>
  [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
const when = (r: Json) => {
  const m = r.machine;
  const others = m.otherCpuShare === undefined ? '' : `, other processes used ${Math.round(m.otherCpuShare * 100)}% of the CPUs during its ${m.wallS} s`;
  return `_${m.date.slice(0, 16).replace('T', ' ')} UTC, commit ${m.commit}, 1-min load ${m.loadavg1AtStart} at start${others}${r.params?.quick ? ', QUICK RUN' : ''}_`;
};
const targets = (r: Json) => table(['target', 'measured', 'limit', 'met'], (r.targets as Json[]).map((t) => [t.name, t.measured, `${t.op === 'le' ? '≤' : '≥'} ${t.limit}${t.unit ?? ''}`, t.met ? 'yes' : '**no**']));

const out: string[] = [];
const o = load('overhead');
if (o) {
  out.push('### Overhead', when(o), table(
    ['format', 'c', 'TTFB p50 direct', 'TTFB p50 service', 'added', 'TTFB p95 direct / service', 'req/s direct', 'req/s service', 'throughput ratio'],
    (o.rows as Json[]).map((r) => [r.format, r.concurrency, r.directTtfbP50, r.serviceTtfbP50, r.addedTtfbP50, `${r.directTtfbP95} / ${r.serviceTtfbP95}`, r.directRps, r.serviceRps, r.throughputRatio]),
  ), '', `naive pipeline (espeak-ng → fresh ffmpeg) mp3 TTFB p50: ${o.naive.ttfbP50} ms`, '',
  table(['stage of the service first byte (mp3, c=1)', 'median ms'], Object.entries(o.firstByteStages as Json)),
  '', table(['format', 'c', 'mode', ...Object.keys((o.cpuPerRequestMs as Json[])[0]!).filter((k) => !['format', 'concurrency', 'mode'].includes(k))],
    (o.cpuPerRequestMs as Json[]).map((r) => Object.values(r))), '', targets(o));
}
const il = load('input-length');
if (il) {
  out.push('### Input length', when(il), table(['format', 'chars', 'first segment', 'TTFB p50', 'TTFB p95', 'p50 / 40 chars', 'total p50'],
    (il.rows as Json[]).map((r) => [r.format, r.chars, r.firstSegmentChars, r.ttfbP50, r.ttfbP95, r.ratioVs40, r.totalP50])), '', targets(il));
}
const c = load('concurrency');
if (c) {
  out.push('### Concurrency sweep', when(c), table(
    ['c', 'TTFB p50', 'TTFB p95', 'p50 × c=1', 'e2e p50', 'e2e p95', 'RTF p50', 'RTF p95', 'worst stall ms', 'worst chunk gap ms', 'req/s', 'audio s / s'],
    (c.rows as Json[]).map((r) => [r.concurrency, r.ttfbP50, r.ttfbP95, r.ttfbP50VsC1, r.e2eP50, r.e2eP95, r.rtfP50, r.rtfP95, r.worstStallMs, r.worstGapMs, r.rps, r.audioSecondsPerSecond])));
}
const f = load('fanout');
if (f) {
  const r = f.row as Json;
  out.push('### Fan-out', when(f), table(['measure', 'idle', 'under load'], [
    ['streams relayed at once (API `chorus_active_streams`)', 0, r.peakRelayedStreams],
    ['API Redis connections', r.apiRedisConnectionsIdle, r.apiRedisConnectionsPeak],
    ['API RSS MB', r.apiRssIdleMB, r.apiRssPeakMB],
    ['errors', 0, r.errors],
    ['TTFB p50 / p95 ms', '', `${r.ttfbP50} / ${r.ttfbP95}`],
    ['API CPU s over the run', '', r.apiCpuS],
  ]), '', targets(f));
}
const w = load('worker-scaling');
if (w) {
  out.push('### Worker scaling', when(w), table(['workers', 'req/s', 'ideal', 'scaling ×', 'efficiency', 'TTFB p50', 'e2e p50'],
    (w.rows as Json[]).map((r) => [r.workers, r.rps, r.idealRps, r.scaling, r.efficiency, r.ttfbP50, r.e2eP50])));
}
const b = load('backlog');
if (b) {
  out.push('### Realtime under backlog', when(b), table(['backlog', 'requests', 'TTFB p50', 'TTFB p95', 'slot wait p50', 'slot wait p95'],
    (['without', 'with'] as const).map((m) => [m, b.rows[m].n, b.rows[m].ttfbP50, b.rows[m].ttfbP95, b.rows[m].queueWaitP50, b.rows[m].queueWaitP95])), '', targets(b));
}
const p = load('profile-pcm');
if (p) {
  for (const proc of ['worker', 'api']) {
    if (!p[proc]) continue;
    out.push(`### CPU profile: ${proc} (busy ${p[proc].totalMs} ms)`, when(p),
      table(['module', 'ms', '%'], (p[proc].byModule as Json[]).slice(0, 8).map((m) => [m.module, m.ms, m.share])));
  }
}
console.log(out.filter((s) => s !== '').join('\n\n'));
