import { z } from 'zod';
import { AudioFormat } from '../audio-formats.ts';
import { Preset, Speaker } from '../voices.ts';
import { SynthesisOptions } from './synthesis.ts';
import { BatchItemSink } from './batch-item.ts';

/**
 * The payload of a `synthesize` job. Jobs outlive deploys: add new fields as optional, never repurpose one.
 * Everything a worker needs travels here (resolved speaker, preset values), so workers do no lookups.
 */
export const TtsJob = z.object({
  v: z.literal(1),
  requestId: z.string(),
  /**
   * The Redis Stream this job publishes to; built by the API with RedisKeys.audioStream. Absent only on jobs whose
   * `sink` is storage (batch items); every realtime job has one.
   */
  streamKey: z.string().min(1).optional(),
  /** Where the audio goes instead of a stream: a batch item's file in storage (see batches.ts). */
  sink: BatchItemSink.optional(),
  /** Engine id (the queue is derived from it). */
  engine: z.string(),
  /** The model name as the client sent it (for metrics and logs). */
  model: z.string(),
  text: z.string().min(1),
  speaker: Speaker,
  format: AudioFormat,
  /** speed, lang, instructions, seed, temperature: top-level fields of the payload, as they always were. */
  ...SynthesisOptions.shape,
  /** Preset name and its values, resolved by the API. */
  preset: z.object({ name: z.string(), values: Preset }).optional(),
  /** Which route asked (metrics label). */
  route: z.string().default('speech'),
  /** realtime work runs ahead of batch items. */
  priority: z.enum(['realtime', 'batch']).default('realtime'),
  enqueuedAt: z.number(),
  /** Who may read the job back (GET /api/jobs/{id}): a keyed hash of the API key that created it; none while keys are off. */
  owner: z.string().optional(),
  /** MAX_AUDIO_SECONDS when the job was accepted: the worker fails it once its audio passes this. */
  maxAudioS: z.number().positive().optional(),
});
export type TtsJob = z.infer<typeof TtsJob>;
/** A job relayed through a Redis Stream (every job but a batch item). */
export type StreamJob = TtsJob & { streamKey: string };
/** What the API builds; defaults applied by the schema may be omitted. */
export type TtsJobInput = z.input<typeof TtsJob>;

/** What a completed job returns to BullMQ (kept while the job is retained). */
export const TtsJobResult = z.object({
  bytes: z.number().int(),
  durationS: z.number(),
  chars: z.number().int(),
  chunks: z.number().int(),
});
export type TtsJobResult = z.infer<typeof TtsJobResult>;
