import type { Queue } from 'bullmq';
import type { ApiMetrics } from './metrics.ts';

/** States in which SpeechService.cancel removes a job outright (no worker ever sees it). */
const QUEUED = new Set(['waiting', 'prioritized', 'delayed']);

/**
 * Runs a client-disconnect cancel and counts `chorus_jobs_total{status="cancelled"}` when the job was removed
 * while still queued; a job that a worker already holds is counted by that worker when it aborts. Queued before
 * and gone after is the proof of removal: a job that turned active in between still exists (and is the worker's
 * to count), and finished jobs are kept by retention, so they never look gone. Costs two Redis round trips per
 * disconnect, which is rare, and keeps the accounting out of the cancel path itself.
 */
export async function countQueuedCancel(
  queue: Queue,
  jobId: string,
  engine: string,
  metrics: ApiMetrics,
  cancel: () => Promise<void>,
): Promise<void> {
  const before = await queue.getJobState(jobId).catch(() => 'unknown');
  await cancel();
  if (!QUEUED.has(before)) return;
  const after = await queue.getJobState(jobId).catch(() => 'error');
  if (after === 'unknown') metrics.jobs.inc({ status: 'cancelled', engine });
}
