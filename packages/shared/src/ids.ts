import { randomBytes } from 'node:crypto';

/** `req_<32 hex>`: the request id every response carries and every log line of the request repeats. */
export function newRequestId(): string {
  return `req_${randomBytes(16).toString('hex')}`;
}

/** BullMQ job ids may not contain `:` nor be all digits; the `tts_` prefix guarantees both. */
export function newJobId(): string {
  return `tts_${randomBytes(12).toString('hex')}`;
}

export const JOB_ID_PATTERN = /^tts_[0-9a-f]{24}$/;

/**
 * `file-<12 hex: ms since epoch><16 hex random>`: ids sort by creation time as strings, which is what the file
 * listing's order and `after` cursor use.
 */
export function newFileId(now = Date.now()): string {
  return `file-${now.toString(16).padStart(12, '0')}${randomBytes(8).toString('hex')}`;
}

export const FILE_ID_PATTERN = /^file-[0-9a-f]{28}$/;

/** `batch_<12 hex: ms since epoch><16 hex random>`: sorts by creation time, like file ids (listing, `after`). */
export function newBatchId(now = Date.now()): string {
  return `batch_${now.toString(16).padStart(12, '0')}${randomBytes(8).toString('hex')}`;
}

export const BATCH_ID_PATTERN = /^batch_[0-9a-f]{28}$/;

/** A batch item's BullMQ job id: its line's index, so cancel can name every item without a stored list. */
export function batchItemJobId(batchId: string, index: number): string {
  return `${batchId}-${index}`;
}
