/*
 * A pure simulation of worker autoscaling on queue depth, as KEDA drives it through the Horizontal Pod Autoscaler:
 * every polling interval the metric (jobs waiting + running, `chorus_queue_jobs`) gives
 * desired = ceil(metric / target per replica), clamped to [min, max], skipped within HPA's tolerance; scale-down
 * takes the highest recommendation of the stabilization window (HPA's cooldown); a replica asked for serves only
 * after a start delay. The queue is a fluid FIFO: arrivals and departures are cumulative curves, so the wait of
 * work arriving at t is the time until departures catch up with what had arrived by t.
 */

export interface AutoscaleParams {
  /** Jobs per second arriving at simulated time t (seconds). */
  arrivalRate: (t: number) => number;
  durationS: number;
  /** Jobs per second one worker replica completes with every slot busy (measured). */
  jobsPerSecondPerReplica: number;
  /** Concurrent jobs per replica (WORKER_CONCURRENCY): running jobs count in the metric. */
  slotsPerReplica: number;
  /** The scaler's target value per replica (KEDA `listLength` / AverageValue). */
  targetPerReplica: number;
  minReplicas: number;
  maxReplicas: number;
  /** KEDA pollingInterval (and HPA sync period): how often desired is computed. */
  pollingIntervalS: number;
  /** From a scale-up decision to the new replica taking jobs (pod start + process start). */
  startDelayS: number;
  /** HPA scale-down stabilization window: scale down to the highest recommendation seen within it. */
  scaleDownWindowS: number;
  /** HPA tolerance: no change while |metric / (target × current) − 1| ≤ this. @defaultValue 0.1 */
  tolerance?: number;
  /** Simulation step. @defaultValue 1 */
  stepS?: number;
  /** false: replicas stay at minReplicas (the baseline without autoscaling). @defaultValue true */
  scaling?: boolean;
}

export interface SimRow {
  t: number;
  arrivalPerS: number;
  /** Replicas serving jobs. */
  ready: number;
  /** Replicas asked for (ready + starting). */
  desired: number;
  /** Jobs waiting (not yet in a slot). */
  queued: number;
  /** Jobs waiting + running: the scaler's metric. */
  metric: number;
  /** Wait of the work arriving at t until a slot starts it (s); if it had not started when the run ended, the time
   * to the end (a lower bound, flagged by `unfinished`). */
  waitS: number;
  unfinished: boolean;
}

/** HPA's formula for an AverageValue metric: ceil(metric / target), clamped; unchanged within the tolerance. */
export function desiredReplicas(metric: number, target: number, current: number, min: number, max: number, tolerance = 0.1): number {
  if (current > 0 && Math.abs(metric / (target * current) - 1) <= tolerance) return Math.min(max, Math.max(min, current));
  return Math.min(max, Math.max(min, Math.ceil(metric / target)));
}

export function simulateAutoscaling(p: AutoscaleParams): SimRow[] {
  const dt = p.stepS ?? 1;
  const steps = Math.round(p.durationS / dt);
  const scaling = p.scaling ?? true;
  const serviceS = p.slotsPerReplica / p.jobsPerSecondPerReplica;
  let ready = p.minReplicas;
  let desired = p.minReplicas;
  /** Replicas asked for and the time each starts serving. */
  const starting: number[] = [];
  /** Recommendations with their time, for the scale-down window. */
  const recs: { t: number; n: number }[] = [];
  let queued = 0;
  let running = 0;
  const arrived: number[] = [0];
  const started: number[] = [0];
  const rows: Omit<SimRow, 'waitS' | 'unfinished'>[] = [];
  for (let i = 0; i < steps; i++) {
    const t = i * dt;
    while (starting.length && starting[0]! <= t) {
      starting.shift();
      ready++;
    }
    if (scaling && i % Math.max(1, Math.round(p.pollingIntervalS / dt)) === 0) {
      const rec = desiredReplicas(queued + running, p.targetPerReplica, desired, p.minReplicas, p.maxReplicas, p.tolerance);
      recs.push({ t, n: rec });
      while (recs.length && recs[0]!.t < t - p.scaleDownWindowS) recs.shift();
      const next = rec >= desired ? rec : Math.max(rec, ...recs.map((r) => r.n));
      if (next > desired) {
        for (let k = desired; k < next; k++) starting.push(t + p.startDelayS);
      } else if (next < desired) {
        // Scale-down removes starting replicas first, then ready ones (a removed replica finishes its jobs: the
        // fluid model hands them to the rest).
        let drop = desired - next;
        while (drop > 0 && starting.length) (starting.pop(), drop--);
        ready -= drop;
      }
      desired = next;
    }
    const rate = p.arrivalRate(t);
    const inflow = rate * dt;
    // Fluid service: ready replicas start up to their throughput (oldest first); by Little's law the jobs running
    // are the start rate times the service time (slots / throughput of a replica).
    queued += inflow;
    const start = Math.min(queued, ready * p.jobsPerSecondPerReplica * dt);
    queued -= start;
    running = (start / dt) * serviceS;
    arrived.push(arrived[i]! + inflow);
    started.push(started[i]! + start);
    rows.push({ t, arrivalPerS: rate, ready, desired, queued, metric: queued + running });
  }
  // FIFO wait of the work arriving in step i: the first time the started curve reaches what had arrived by i.
  const out: SimRow[] = [];
  let j = 0;
  for (let i = 0; i < rows.length; i++) {
    const need = arrived[i + 1]! - 1e-9;
    while (j < rows.length && started[j + 1]! < need) j++;
    const unfinished = j >= rows.length;
    out.push({ ...rows[i]!, waitS: Math.max(0, (Math.min(j, rows.length) - i) * dt), unfinished });
  }
  return out;
}

/** A ramp from `base` up to `peak`, a hold, and back down: the traffic curve the capacity benchmark simulates. */
export function rampCurve(o: { base: number; peak: number; rampUpS: number; holdS: number; rampDownS: number; startS?: number }) {
  const s = o.startS ?? 0;
  return (t: number): number => {
    const x = t - s;
    if (x < 0) return o.base;
    if (x < o.rampUpS) return o.base + ((o.peak - o.base) * x) / o.rampUpS;
    if (x < o.rampUpS + o.holdS) return o.peak;
    const y = x - o.rampUpS - o.holdS;
    if (y < o.rampDownS) return o.peak - ((o.peak - o.base) * y) / o.rampDownS;
    return o.base;
  };
}
