import { z } from 'zod';

/**
 * A batch item's output: its audio goes to storage as file `fileId` (under StorageKeys.file), and its outcome is
 * recorded under `customId` in the batch's outcome hash. The file id is chosen when the item is enqueued, so every
 * attempt of the item writes (and replaces) the same object.
 */
export const BatchItemSink = z.object({
  type: z.literal('storage'),
  batchId: z.string().regex(/^batch_[0-9a-f]{28}$/),
  customId: z.string().min(1),
  fileId: z.string().regex(/^file-[0-9a-f]{28}$/),
  /** The batch's owner: the audio file belongs to the same client. */
  owner: z.string().optional(),
  /** The input line (1-based): output and archive keep the input order. */
  line: z.number().int().positive(),
  /** FILE_RETENTION_S at submission: how long the audio file is kept. */
  retentionS: z.number().int().positive(),
});
export type BatchItemSink = z.infer<typeof BatchItemSink>;
