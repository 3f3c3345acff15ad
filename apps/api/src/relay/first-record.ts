import { ChorusError, errorNameForCode } from '@chorus/shared';
import type { StreamEntry } from './job-stream.ts';
import type { StartedJob, SpeechService } from '../services/speech-service.ts';

/** After QUEUE_TIMEOUT_S, how often a job that is running (or recovering from a crash) is looked at again. */
const RECHECK_MS = 2000;

/**
 * Waits for a job's first record, so a job that fails before producing audio is still answered with a proper
 * status and JSON error. A job nobody picks up within QUEUE_TIMEOUT_S is removed and answered 503. A job that
 * ended without a record is left to the job watchdog (relay/job-watchdog.ts), which fails the stream.
 */
export async function awaitFirstRecord(
  started: StartedJob,
  speech: SpeechService,
  queueTimeoutS: number,
): Promise<StreamEntry> {
  let timer: NodeJS.Timeout | undefined;
  let deadline = Date.now() + queueTimeoutS * 1000;
  const first = started.stream.next();
  for (;;) {
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), Math.max(0, deadline - Date.now()));
    });
    const result = await Promise.race([first, timeout]).finally(() => clearTimeout(timer));
    if (result !== 'timeout') {
      if (!result) {
        // Closed by its reader: the client disconnected and cancelOnDisconnect already cancelled the job.
        if (started.stream.closed) throw new ChorusError('TTS_ERR_CANCELLED', 'The client closed the request.');
        throw new ChorusError('TTS_ERR_INTERNAL', 'The job stream closed before any audio.');
      }
      if (result.record.type === 'error') throw errorFromRecord(result.record.code, result.record.message, result.record.param);
      speech.noteStarted(started.job); // admission's start rate (queue-admission.ts)
      return result;
    }
    deadline = Date.now() + RECHECK_MS;
    if (!(await neverStarted(speech, started))) continue;
    started.stream.close();
    await speech.cancel(started.job.engine, started.jobId).catch(() => {});
    throw new ChorusError('TTS_ERR_QUEUE_TIMEOUT', `No worker picked up the request within ${queueTimeoutS} s.`, {
      retryAfterS: 2,
    });
  }
}

/**
 * Still waiting and never started: a queue timeout. A job that is active, or waiting again after its worker
 * died (stall recovery, `attemptsStarted` > 0), is worth waiting for; so is one we cannot look at right now.
 */
async function neverStarted(speech: SpeechService, started: StartedJob): Promise<boolean> {
  try {
    const job = await speech.queue(started.job.engine).getJob(started.jobId);
    if (!job) return false;
    const state = await job.getState();
    return ['waiting', 'prioritized', 'delayed', 'paused', 'wait'].includes(state) && !(job.attemptsStarted > 0);
  } catch {
    return false;
  }
}

export function errorFromRecord(code: string, message: string, param?: string): ChorusError {
  const name = errorNameForCode(code);
  if (name === 'TTS_ERR_INTERNAL') return new ChorusError(name, 'Synthesis failed.');
  return new ChorusError(name, message, param === undefined ? {} : { param });
}
