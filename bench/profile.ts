/**
 * Where the service's CPU goes: runs the overhead benchmark's heaviest service case (300-char paragraph,
 * concurrency 8) against an API and a worker started with `node --cpu-prof`, then prints each process's self
 * time by module and by function. The raw .cpuprofile files stay in bench/results/profiles/ (open them in
 * Chrome DevTools → Performance, or speedscope).
 *
 *   node --import tsx bench/profile.ts [pcm|mp3] [--quick]
 */
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { summarizeProfile } from './lib/cpu-profile.ts';
import { AGENT, speech, speechBody } from './lib/http-client.ts';
import { closedLoop } from './lib/load.ts';
import { isMain } from './lib/main.ts';
import { QUICK, markStart, RESULTS_DIR, printTable, writeResults } from './lib/report.ts';
import { BenchStack } from './lib/stack.ts';
import { PARAGRAPH_300 } from './lib/texts.ts';

const PROFILE_DIR = path.join(RESULTS_DIR, 'profiles');

export async function runProfile(format = 'pcm') {
  markStart();
  rmSync(PROFILE_DIR, { recursive: true, force: true });
  mkdirSync(PROFILE_DIR, { recursive: true });
  process.env.BENCH_CPU_PROF = '1';
  const stack = await BenchStack.start({ workers: 1, workerEnv: { ENGINES: 'espeak', WORKER_CONCURRENCY: '8' } });
  const pids = { api: stack.api.pid, worker: stack.workers[0]!.pid };
  try {
    await closedLoop(8, 16, () => speech(stack.baseUrl, speechBody(PARAGRAPH_300, format), { keepChunks: false }));
    const n = QUICK ? 24 : 120;
    const { wallMs } = await closedLoop(8, n, () => speech(stack.baseUrl, speechBody(PARAGRAPH_300, format), { keepChunks: false }));
    console.log(`${n} requests (${format}, c=8) in ${(wallMs / 1000).toFixed(1)} s`);
  } finally {
    AGENT.destroy();
    await stack.stop();
    delete process.env.BENCH_CPU_PROF;
  }
  const out: Record<string, unknown> = {};
  for (const [name, pid] of Object.entries(pids)) {
    // CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile; thread 0 is the main thread (tsx adds a loader thread).
    const file = readdirSync(PROFILE_DIR).find((f) => f.includes(`.${pid}.0.`) && f.endsWith('.cpuprofile'));
    if (!file) {
      console.log(`no profile from ${name} (pid ${pid})`);
      continue;
    }
    const s = summarizeProfile(path.join(PROFILE_DIR, file));
    printTable(`${name}: self time by module (busy ${s.totalMs} ms, whole run incl. start-up)`, ['module', 'ms', '%'],
      s.byModule.map((m) => [m.module, m.ms, m.share]));
    printTable(`${name}: self time by function`, ['function', 'ms', '%'], s.byFunction.map((f) => [f.fn, f.ms, f.share]));
    out[name] = { file: path.relative(RESULTS_DIR, path.join(PROFILE_DIR, file)), ...s };
  }
  writeResults(`profile-${format}`, { params: { format, concurrency: 8, chars: PARAGRAPH_300.length, quick: QUICK }, ...out });
}

if (isMain(import.meta.url)) await runProfile(process.argv.slice(2).find((a) => !a.startsWith('--')) ?? 'pcm');
