import type { Queue } from 'bullmq';
import { ChorusError } from '@chorus/shared';
import type { JobStream } from './job-stream.ts';

/** How often a quiet stream's job is looked at. */
const CHECK_EVERY_MS = 5000;
/** A stream whose Redis stays unreachable this long is given up (the client gets an error, not a hang). */
const UNREACHABLE_LIMIT_MS = 30_000;

/**
 * Guards a relayed stream against a job that can no longer finish it: a job that ended (completed, failed) or
 * vanished (a Sentinel failover that lost an unreplicated write, a manual removal) without a terminal record
 * on its stream. Normally every end of a job writes one — the processor, and the worker's `failed` listener for
 * jobs BullMQ fails itself (maxStartedAttempts) — so this is the safety net that turns "waits forever" into an
 * error. It looks only at streams the hub is reading (not paused for a slow client) that have been quiet for
 * CHECK_EVERY_MS, and acts on the second look, so a terminal record still in flight wins.
 */
export function watchJob(stream: JobStream, queue: Queue, jobId: string): void {
  let endedSeenAt: number | undefined;
  let unreachableSince: number | undefined;
  let checking = false;

  const check = async () => {
    const now = Date.now();
    if (!stream.wantsData || now - stream.lastDeliveryAt < CHECK_EVERY_MS) {
      endedSeenAt = undefined;
      return;
    }
    let state: string;
    try {
      state = await queue.getJobState(jobId);
      unreachableSince = undefined;
    } catch {
      unreachableSince ??= now;
      if (now - unreachableSince >= UNREACHABLE_LIMIT_MS) {
        stream.fail(new ChorusError('TTS_ERR_BACKEND_UNAVAILABLE', 'Lost the connection to the service backend.', {
          retryAfterS: 1,
        }));
      }
      return;
    }
    if (state !== 'completed' && state !== 'failed' && state !== 'unknown') {
      endedSeenAt = undefined;
      return;
    }
    if (endedSeenAt === undefined || stream.lastDeliveryAt > endedSeenAt) {
      endedSeenAt = now;
      return;
    }
    stream.fail(new ChorusError('TTS_ERR_INTERNAL', `The job ended (${state}) without finishing its audio.`));
  };

  const timer = setInterval(() => {
    if (stream.settled) {
      clearInterval(timer);
      return;
    }
    if (checking) return;
    checking = true;
    check().finally(() => (checking = false));
  }, CHECK_EVERY_MS);
  timer.unref();
}
