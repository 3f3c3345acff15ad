import type { Job, Queue } from 'bullmq';
import { JOB_ID_PATTERN, LANES, TtsJob, type Lane, type StreamJob, type EndRecord, type ErrorRecord, type TtsJobResult } from '@chorus/shared';

export type LegacyJobStatus = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';

export interface JobView {
  job: Job;
  data: StreamJob;
  status: LegacyJobStatus;
}

/**
 * Finds a job by id across the engine queues (ids are unique across queues). Only the legacy job routes use this,
 * so the hot path stays free of extra bookkeeping writes.
 */
export async function findJob(
  jobId: string,
  engines: readonly string[],
  queue: (engine: string, lane: Lane) => Queue,
) {
  if (!JOB_ID_PATTERN.test(jobId)) return undefined;
  const found = await Promise.all(engines.flatMap((e) => LANES.map((lane) => queue(e, lane).getJob(jobId))));
  const job = found.find((j): j is Job => j !== undefined && j !== null);
  if (!job) return undefined;
  const parsed = TtsJob.safeParse(job.data);
  // Batch items (no stream) are not jobs of this API: their ids are not tts_ ids either.
  if (!parsed.success || parsed.data.streamKey === undefined) return undefined;
  const data = { ...parsed.data, streamKey: parsed.data.streamKey };
  const state = await job.getState();
  return { job, data, status: legacyStatus(state, job.failedReason) } satisfies JobView;
}

function legacyStatus(state: string, failedReason: string | undefined): LegacyJobStatus {
  switch (state) {
    case 'active':
      return 'running';
    case 'completed':
      return 'completed';
    case 'failed':
      return /cancel/i.test(failedReason ?? '') ? 'cancelled' : 'failed';
    default:
      return 'queued';
  }
}

const iso = (ms: number | undefined) => (ms ? new Date(ms).toISOString() : null);

/** The terminal record of a job's stream and when it was written (the entry id's milliseconds). */
export interface StreamOutcome {
  record: EndRecord | ErrorRecord;
  atMs: number;
}

/**
 * `GET /api/jobs/{id}` body. The stream's terminal record is written a moment before BullMQ marks the job
 * completed; a client that asks right after its download finished must already see `completed`.
 */
export function legacyJobBody(view: JobView, outcome?: StreamOutcome) {
  const result = view.job.returnvalue as TtsJobResult | null | undefined;
  let status = view.status;
  let finishedAt = view.job.finishedOn;
  let durationS = result?.durationS ?? null;
  let error = status === 'failed' || status === 'cancelled' ? (view.job.failedReason ?? 'failed') : null;
  if ((status === 'queued' || status === 'running') && outcome) {
    finishedAt = outcome.atMs;
    if (outcome.record.type === 'end') {
      status = 'completed';
      durationS = outcome.record.durationS;
    } else {
      status = outcome.record.code === 'cancelled' ? 'cancelled' : 'failed';
      error = outcome.record.message;
    }
  }
  return {
    job_id: view.job.id!,
    status,
    created_at: iso(view.job.timestamp),
    started_at: iso(view.job.processedOn),
    finished_at: iso(finishedAt),
    chars: view.data.text.length,
    duration_s: durationS,
    error,
  };
}
