/**
 * Runs every benchmark in turn, then draws the chart. Each benchmark starts and stops its own private
 * redis-server, API and workers on 127.0.0.1, and bounds its own request loops.
 *
 *   npm run bench                      # everything (≈ 6–8 minutes on 2 cores, plus batch: 16 min on a busy machine)
 *   npm run bench -- --quick           # smoke run: a few requests each, numbers not meaningful
 *   npm run bench -- --wait-quiet      # first wait (up to 20 min) for the 1-min load average to drop below 1.0
 *   npm run bench -- overhead fanout   # only these (names: overhead input-length concurrency fanout worker-scaling backlog admission batch failover naive capacity profile)
 */
import { loadavg } from 'node:os';
import { runAdmission } from './admission.ts';
import { runBacklog } from './backlog.ts';
import { runBatch } from './batch.ts';
import { runCapacity } from './capacity.ts';
import { renderChart } from './chart.ts';
import { runConcurrency } from './concurrency.ts';
import { runFanout } from './fanout.ts';
import { runFailover } from './failover.ts';
import { runInputLength } from './input-length.ts';
import { runNaive } from './naive.ts';
import { sleep } from './lib/load.ts';
import { runOverhead } from './overhead.ts';
import { runProfile } from './profile.ts';
import { runWorkerScaling } from './worker-scaling.ts';

const ALL = {
  overhead: runOverhead,
  'input-length': runInputLength,
  concurrency: runConcurrency,
  fanout: runFanout,
  'worker-scaling': runWorkerScaling,
  backlog: runBacklog,
  admission: () => runAdmission(),
  batch: runBatch,
  // ~10 minutes: 2 × 3 rounds of 50 streams with a worker killed, and a round beside a CPU hog.
  failover: runFailover,
  // Issue 12: Chorus with its default settings against espeak-ng piped into a fresh ffmpeg per request.
  naive: () => runNaive(),
  // Issue 14: the capacity model's inputs (Redis per request, API per MB and stream, workers per engine), its plan
  // for a few targets and an autoscaling simulation; --streams N --rps M plans a target of your own.
  capacity: runCapacity,
  // Last: a CPU profile of the API and worker under the overhead benchmark's heaviest service case.
  profile: () => runProfile('pcm'),
} as const;

async function waitQuiet(maxMinutes = 20, below = 1.0) {
  for (let i = 0; i <= maxMinutes; i++) {
    const load = loadavg()[0]!;
    if (load < below) return;
    console.log(`1-min load average ${load.toFixed(2)} ≥ ${below}: waiting a minute (${i}/${maxMinutes})`);
    await sleep(60_000);
  }
  console.log('machine still busy; measuring anyway (the load is recorded with each result)');
}

const names = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const unknown = names.filter((n) => !(n in ALL));
if (unknown.length) {
  console.error(`unknown benchmark(s): ${unknown.join(', ')} (known: ${Object.keys(ALL).join(', ')})`);
  process.exit(2);
}
if (process.argv.includes('--wait-quiet')) await waitQuiet();
const t0 = performance.now();
for (const [name, run] of Object.entries(ALL)) {
  if (names.length && !names.includes(name)) continue;
  console.log(`\n=== ${name} (1-min load ${loadavg()[0]!.toFixed(2)}) ===`);
  const t = performance.now();
  await run();
  console.log(`${name}: ${((performance.now() - t) / 1000).toFixed(0)} s`);
}
renderChart();
console.log(`\nall done in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
