import { z } from 'zod';
import { AudioFormat, FORMAT_INFO } from '../audio-formats.ts';
import { BATCH_ID_PATTERN, FILE_ID_PATTERN } from '../ids.ts';
import { verbatim } from '../validation.ts';

/*
 * What the API's routes take and give besides the synthesis bodies (speech.ts, legacy.ts): path and query
 * parameters, and the JSON the routes answer with. Routes declare these (apps/api/src/plugins/openapi.ts validates
 * requests with them and renders /openapi.json from them); responses are documented, not serialized through them.
 * Schemas with an `id` become named components of the document.
 */

const unixTime = (what: string) => z.number().int().describe(`${what} (Unix seconds).`);

// ---- path parameters --------------------------------------------------------------------------------------

export const FileIdParams = z.object({ id: z.string().meta({ description: 'A file id.', example: 'file-0123456789abcdef0123456789ab' }) });
export const BatchIdParams = z.object({ id: z.string().meta({ description: 'A batch id.', example: 'batch_0123456789abcdef0123456789ab' }) });
export const ModelIdParams = z.object({ id: z.string().meta({ description: 'A model id.', example: 'tts-1' }) });
export const JobIdParams = z.object({ job_id: z.string().describe('A job id, from the `x-job-id` response header.') });

// ---- files ------------------------------------------------------------------------------------------------

export const FileObject = z
  .object({
    id: z.string().meta({ example: 'file-0123456789abcdef0123456789ab' }),
    object: z.literal('file'),
    bytes: z.number().int().describe('Size in bytes.'),
    created_at: unixTime('Upload time'),
    expires_at: unixTime('When the file is deleted (FILE_RETENTION_S after upload)'),
    filename: z.string(),
    purpose: z.string().describe('`batch` for uploads; `batch_output` for files Chorus writes (batch output, error and audio files).'),
    status: z.literal('processed'),
    status_details: z.null(),
  })
  .meta({ id: 'File', description: "OpenAI's File object." });

/** `POST /v1/files` body, as documentation only: the route reads the multipart stream itself. */
export const FileUploadBody = z.object({
  file: z.file().describe('The JSONL batch input file (at most MAX_BATCH_FILE_BYTES bytes).'),
  purpose: z.literal('batch').describe('Chorus accepts `batch`.'),
});

export const FileListQuery = z.object({
  limit: z.coerce
    .number(verbatim('limit must be an integer from 1 to 10000.'))
    .int(verbatim('limit must be an integer from 1 to 10000.'))
    .min(1, verbatim('limit must be an integer from 1 to 10000.'))
    .max(10_000, verbatim('limit must be an integer from 1 to 10000.'))
    .default(10_000)
    .describe('Page size, 1 to 10000.'),
  order: z.enum(['asc', 'desc'], verbatim("order must be 'asc' or 'desc'.")).default('desc').describe('By creation time.'),
  after: z
    .string(verbatim('after must be a file id from a previous page.'))
    .regex(FILE_ID_PATTERN, verbatim('after must be a file id from a previous page.'))
    .optional()
    .describe('Cursor: the `last_id` of the previous page.'),
  purpose: z.string().optional().describe('Only files with this purpose.'),
});

const listOf = <T extends z.ZodType>(item: T) =>
  z.object({
    object: z.literal('list'),
    data: z.array(item),
    first_id: z.string().nullable(),
    last_id: z.string().nullable(),
    has_more: z.boolean(),
  });

export const FileList = listOf(FileObject);
export const FileDeleted = z.object({ id: z.string(), object: z.literal('file'), deleted: z.literal(true) });

// ---- batches ----------------------------------------------------------------------------------------------

export const BatchCreateBody = z.object({
  input_file_id: z.string().min(1).max(100).meta({
    description: 'An uploaded file (purpose `batch`) of JSONL lines `{custom_id, method: "POST", url: "/v1/audio/speech", body}`.',
    example: 'file-0123456789abcdef0123456789ab',
  }),
  endpoint: z.string().meta({ description: 'Must be `/v1/audio/speech`.', example: '/v1/audio/speech' }),
  completion_window: z.string().meta({
    description: "`24h`, or (Chorus extension) a duration from `1s` to `168h` such as `30m`.",
    example: '24h',
  }),
  // OpenAI: up to 16 pairs, keys up to 64 characters, values up to 512.
  metadata: z
    .record(z.string().max(64), z.string().max(512))
    .refine((m) => Object.keys(m).length <= 16, 'at most 16 keys')
    .nullish()
    .describe('Up to 16 string pairs (keys up to 64 characters, values up to 512).'),
});

export const BatchListQuery = z.object({
  limit: z.coerce
    .number(verbatim('limit must be an integer from 1 to 100.'))
    .int(verbatim('limit must be an integer from 1 to 100.'))
    .min(1, verbatim('limit must be an integer from 1 to 100.'))
    .max(100, verbatim('limit must be an integer from 1 to 100.'))
    .default(20)
    .describe('Page size, 1 to 100.'),
  after: z
    .string(verbatim('after must be a batch id from a previous page.'))
    .regex(BATCH_ID_PATTERN, verbatim('after must be a batch id from a previous page.'))
    .optional()
    .describe('Cursor: the `last_id` of the previous page.'),
});

const LineErrorSchema = z.object({
  code: z.string(),
  message: z.string(),
  param: z.string().nullable(),
  line: z.number().int().describe('1-based line of the input file.'),
});

export const BatchObject = z
  .object({
    id: z.string().meta({ example: 'batch_0123456789abcdef0123456789ab' }),
    object: z.literal('batch'),
    endpoint: z.string(),
    errors: z.object({ object: z.literal('list'), data: z.array(LineErrorSchema) }).nullable()
      .describe('Why validation failed, per input line.'),
    input_file_id: z.string(),
    completion_window: z.string(),
    status: z.enum(['validating', 'failed', 'in_progress', 'finalizing', 'completed', 'expired', 'cancelling', 'cancelled']),
    output_file_id: z.string().nullable().describe('JSONL: one line per completed item, `response.body.file_id` is its audio.'),
    error_file_id: z.string().nullable().describe('JSONL: one line per failed item, with the OpenAI error body.'),
    created_at: unixTime('Creation time'),
    in_progress_at: z.number().int().nullable(),
    expires_at: z.number().int().nullable(),
    finalizing_at: z.number().int().nullable(),
    completed_at: z.number().int().nullable(),
    failed_at: z.number().int().nullable(),
    expired_at: z.number().int().nullable(),
    cancelling_at: z.number().int().nullable(),
    cancelled_at: z.number().int().nullable(),
    request_counts: z.object({ total: z.number().int(), completed: z.number().int(), failed: z.number().int() }),
    metadata: z.record(z.string(), z.string()).nullable(),
  })
  .meta({ id: 'Batch', description: "OpenAI's Batch object (speech is Chorus's endpoint)." });

export const BatchList = listOf(BatchObject);

// ---- models, voices, legacy catalogue -------------------------------------------------------------------

export const ModelObject = z
  .object({
    id: z.string().meta({ example: 'tts-1' }),
    object: z.literal('model'),
    created: z.number().int(),
    owned_by: z.literal('chorus'),
    engine: z.string().describe('Chorus: the engine a request for this model goes to now.'),
    devices: z.array(z.string()).describe('Chorus: devices (`cpu`, `cuda`) live workers run that engine on.'),
  })
  .meta({ id: 'Model', description: "OpenAI's Model object, plus where requests for it run." });

export const ModelList = z.object({ object: z.literal('list'), data: z.array(ModelObject) });

export const VoiceList = z.object({
  voices: z.array(
    z.object({
      id: z.string().meta({ example: 'alloy' }),
      name: z.string(),
      engine: z.string(),
      language: z.string(),
      gender: z.string().nullable(),
      speaker: z.string().describe('The speaker the name resolves to now.'),
      devices: z.array(z.string()).optional().describe('For voices a live worker loaded: the devices it runs on.'),
    }),
  ),
});

export const SpeakerList = z.object({
  speakers: z.array(
    z.object({
      id: z.string().meta({ example: 'speaker1' }),
      name: z.string(),
      engine: z.string(),
      language: z.string(),
      gender: z.string().nullable(),
      openai_voices: z.array(z.string()).describe('OpenAI voice names mapped to this speaker.'),
    }),
  ),
});

export const PresetList = z.object({
  presets: z.array(
    z.looseObject({ id: z.string().meta({ example: 'neutral' }) }).describe('The preset name and its values from the voices file.'),
  ),
});

export const LegacyJob = z.object({
  job_id: z.string(),
  status: z.enum(['queued', 'running', 'completed', 'failed', 'cancelled']),
  created_at: z.string().nullable().describe('ISO 8601.'),
  started_at: z.string().nullable().describe('ISO 8601.'),
  finished_at: z.string().nullable().describe('ISO 8601.'),
  chars: z.number().int(),
  duration_s: z.number().nullable(),
  error: z.string().nullable(),
});

// ---- health -----------------------------------------------------------------------------------------------

export const Liveness = z.object({ status: z.literal('ok') });
export const Readiness = z.object({
  status: z.enum(['ready', 'not_ready']),
  redis: z.boolean().describe('Redis answered a PING.'),
  workers: z.number().int().describe('Live workers (heartbeats within their TTL).'),
  draining: z.boolean().describe('This replica is shutting down.'),
});

// ---- audio and event streams ------------------------------------------------------------------------------

/** Binary audio bodies, one media type per `response_format`. */
export function audioContent(description: string) {
  const content: Record<string, { schema: z.ZodType }> = {};
  for (const format of AudioFormat.options) {
    content[FORMAT_INFO[format].contentType] = {
      schema: z.string().meta({ format: 'binary', description: `\`${format}\`: ${description}` }),
    };
  }
  return content;
}

const Usage = z.object({
  input_tokens: z.number().int().describe('Input characters.'),
  output_tokens: z.number().int().describe('Audio duration in 20 ms frames.'),
  total_tokens: z.number().int(),
});

/** One `data:` line of `stream_format: "sse"` (then `data: [DONE]`). */
export const SpeechStreamEvent = z
  .union([
    z.object({
      type: z.literal('speech.audio.delta'),
      audio: z.string().describe('Base64 of the next bytes of the chosen container.'),
    }),
    z.object({ type: z.literal('speech.audio.done'), usage: Usage }),
    z.object({
      type: z.literal('speech.audio.error'),
      error: z.object({ message: z.string(), type: z.string(), code: z.string() }),
    }).describe('A failure after the stream started.'),
  ])
  .meta({
    id: 'SpeechStreamEvent',
    description:
      'Each event is one `data: <JSON>` line and a blank line: deltas in order, then `speech.audio.done` (or ' +
      '`speech.audio.error`), then `data: [DONE]`. Decoding every delta in order gives the bytes of the raw route.',
  });

/** One event of the legacy SSE routes: `id: <seq>` and `data: <JSON>`. */
export const LegacyStreamEvent = z
  .union([
    z.object({ type: z.literal('start'), job_id: z.string(), format: AudioFormat, sample_rate: z.number().int() }),
    z.object({ type: z.literal('audio'), seq: z.number().int(), audio: z.string().describe('Base64 of the chunk.') }),
    z.object({ type: z.literal('done'), job_id: z.string(), duration_s: z.number(), bytes: z.number().int(), chars: z.number().int() }),
    z.object({ type: z.literal('error'), message: z.string(), code: z.string() }),
  ])
  .meta({
    id: 'LegacyStreamEvent',
    description:
      'Each event is `id: <seq>` and `data: <JSON>`: `start` (not on a resume), one `audio` per chunk, then `done` or ' +
      '`error`. Resume with `Last-Event-ID` on GET /api/jobs/{job_id}/events.',
  });
