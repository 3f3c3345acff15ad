import type { RedisClient } from '@chorus/shared';
import type { Logger } from 'pino';
import type { RedisKeys } from '@chorus/shared/keys';

/**
 * BullMQ has no cross-process cancel. The API sets a cancel flag and PUBLISHes the job id; the worker holding
 * the job aborts it through `worker.cancelJob` (the processor's AbortSignal). The flag covers the job that was
 * not active yet when the message went out.
 */
export class CancelListener {
  readonly #subscriber: RedisClient;
  readonly #redis: RedisClient;
  readonly #keys: RedisKeys;

  constructor(subscriber: RedisClient, redis: RedisClient, keys: RedisKeys) {
    this.#subscriber = subscriber;
    this.#redis = redis;
    this.#keys = keys;
  }

  async start(onCancel: (jobId: string) => void, logger: Logger): Promise<void> {
    this.#subscriber.on('message', (channel: string, jobId: string) => {
      if (channel !== this.#keys.cancelChannel()) return;
      logger.debug({ jobId }, 'cancel requested');
      onCancel(jobId);
    });
    await this.#subscriber.subscribe(this.#keys.cancelChannel());
  }

  async isCancelled(jobId: string): Promise<boolean> {
    return (await this.#redis.exists(this.#keys.cancelFlag(jobId))) === 1;
  }
}
