import type { Queue } from 'bullmq';
import { ChorusError, PRIORITY } from '@chorus/shared';

/**
 * Load shedding by queue depth (MAX_QUEUE_DEPTH): a realtime request that would wait behind that many others is
 * refused with 429 `queue_full` before anything is queued, so clients back off instead of timing out.
 *
 * Depth = jobs waiting at priority 0 (stall retries) and at realtime priority, read in one script
 * (`getCountsPerPriority`). Batch items are not counted: a batch backlog must not shed realtime traffic.
 * The check and the enqueue are two round trips, so concurrent admissions in this process also count the ones
 * still between the two (possibly counted twice: under a burst we err towards refusing). Other API replicas can
 * overshoot the bound by the requests they admit in the same instant.
 */
export class QueueAdmission {
  readonly #maxDepth: number;
  readonly #admitting = new Map<string, number>();

  constructor(maxDepth: number) {
    this.#maxDepth = maxDepth;
  }

  async admit<T>(queue: Queue, model: string, enqueue: () => Promise<T>): Promise<T> {
    const others = this.#admitting.get(queue.name) ?? 0;
    this.#admitting.set(queue.name, others + 1);
    try {
      const counts = await queue.getCountsPerPriority([0, PRIORITY.realtime]);
      const depth = (counts['0'] ?? 0) + (counts[String(PRIORITY.realtime)] ?? 0) + others;
      if (depth >= this.#maxDepth) {
        throw new ChorusError(
          'TTS_ERR_QUEUE_FULL',
          `Too many requests are waiting for model '${model}' (${depth}); retry shortly.`,
          // Small on purpose: a queue drains in seconds, and the OpenAI SDKs wait for whatever we say.
          { retryAfterS: 1 },
        );
      }
      return await enqueue();
    } finally {
      const n = (this.#admitting.get(queue.name) ?? 1) - 1;
      if (n === 0) this.#admitting.delete(queue.name);
      else this.#admitting.set(queue.name, n);
    }
  }
}
