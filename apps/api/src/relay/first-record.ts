import { ChorusError, errorNameForCode } from '@chorus/shared';
import type { StreamEntry } from './job-stream.ts';
import type { StartedJob, SpeechService } from '../services/speech-service.ts';

/**
 * Waits for a job's first record, so a job that fails before producing audio is still answered with a proper
 * status and JSON error. A job nobody picks up within QUEUE_TIMEOUT_S is removed and answered 503.
 */
export async function awaitFirstRecord(
  started: StartedJob,
  speech: SpeechService,
  queueTimeoutS: number,
): Promise<StreamEntry> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = Date.now() + queueTimeoutS * 1000;
  const first = started.stream.next();
  for (;;) {
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), Math.max(0, deadline - Date.now()));
    });
    const result = await Promise.race([first, timeout]).finally(() => clearTimeout(timer));
    if (result !== 'timeout') {
      if (!result) throw new ChorusError('TTS_ERR_INTERNAL', 'The job stream closed before any audio.');
      if (result.record.type === 'error') throw errorFromRecord(result.record.code, result.record.message);
      return result;
    }
    // Still waiting in the queue: give up. Already running: the first chunk is moments away, keep waiting.
    const state = await speech.queue(started.job.engine).getJobState(started.jobId).catch(() => 'unknown');
    if (state !== 'active' && state !== 'completed' && state !== 'failed') {
      started.stream.close();
      await speech.cancel(started.job.engine, started.jobId).catch(() => {});
      throw new ChorusError('TTS_ERR_QUEUE_TIMEOUT', `No worker picked up the request within ${queueTimeoutS} s.`, {
        retryAfterS: 2,
      });
    }
  }
}

export function errorFromRecord(code: string, message: string): ChorusError {
  const name = errorNameForCode(code);
  return new ChorusError(name, name === 'TTS_ERR_INTERNAL' ? 'Synthesis failed.' : message);
}
