import { readFileSync } from 'node:fs';
import { treeCpuMs } from './processes.ts';

/*
 * How much of the machine other people's processes used while a benchmark ran. The load average cannot say:
 * it lags by a minute and counts the benchmark's own processes. Instead: all CPU time the kernel accounted
 * (/proc/stat) minus the CPU time of this process and everything below it (the stack it started, and the
 * espeak-ng/ffmpeg children those reaped).
 */

const TICK_MS = 10;

/** Busy CPU time of the whole machine so far (all CPUs, ms). */
function systemBusyMs(): number {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal ...: everything but idle and iowait.
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = cpu;
  return (user + nice + system + irq + softirq + steal) * TICK_MS;
}

export interface CpuSnapshot {
  at: number;
  system: number;
  ours: number;
}

export function cpuSnapshot(): CpuSnapshot {
  return { at: performance.now(), system: systemBusyMs(), ours: treeCpuMs(process.pid) };
}

/** Other processes' share of the machine between two snapshots (0..1 of all CPUs), and ours. */
export function contention(from: CpuSnapshot, to: CpuSnapshot, cpus: number) {
  const capacity = (to.at - from.at) * cpus;
  const ours = to.ours - from.ours;
  const others = Math.max(0, to.system - from.system - ours);
  return {
    wallS: Math.round((to.at - from.at) / 100) / 10,
    ourCpuShare: Math.round((ours / capacity) * 1000) / 1000,
    otherCpuShare: Math.round((others / capacity) * 1000) / 1000,
  };
}
