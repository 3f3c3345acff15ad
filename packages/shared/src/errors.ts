/**
 * The one error catalogue. Every failure a client can see is an entry here: the HTTP status, OpenAI's `type`
 * and `code`, and our own `TTS_ERR_*` name (what logs and metrics use). The API renders them with
 * {@link errorEnvelope}; the worker publishes them on the job's stream as a terminal `error` record.
 */
import { z } from 'zod';

export type ErrorType = 'invalid_request_error' | 'rate_limit_error' | 'server_error';

export interface ErrorSpec {
  status: number;
  type: ErrorType;
  code: string;
  /** The request field a client should look at, when it is always the same one. */
  param?: string;
}

export const ERRORS = {
  TTS_ERR_VALIDATION: { status: 400, type: 'invalid_request_error', code: 'invalid_value' },
  TTS_ERR_INPUT_TOO_LONG: { status: 400, type: 'invalid_request_error', code: 'string_too_long' },
  TTS_ERR_MISSING_FIELD: { status: 400, type: 'invalid_request_error', code: 'missing_required_parameter' },
  TTS_ERR_INVALID_TYPE: { status: 400, type: 'invalid_request_error', code: 'invalid_type' },
  TTS_ERR_VOICE_UNKNOWN: { status: 400, type: 'invalid_request_error', code: 'invalid_value' },
  TTS_ERR_INVALID_JSON: { status: 400, type: 'invalid_request_error', code: 'invalid_json' },
  TTS_ERR_AUDIO_TOO_LONG: { status: 400, type: 'invalid_request_error', code: 'audio_too_long', param: 'input' },
  TTS_ERR_AUTH: { status: 401, type: 'invalid_request_error', code: 'invalid_api_key' },
  TTS_ERR_PERMISSION_DENIED: { status: 403, type: 'invalid_request_error', code: 'permission_denied' },
  TTS_ERR_MODEL_NOT_FOUND: { status: 404, type: 'invalid_request_error', code: 'model_not_found' },
  TTS_ERR_NOT_FOUND: { status: 404, type: 'invalid_request_error', code: 'not_found' },
  TTS_ERR_REQUEST_TIMEOUT: { status: 408, type: 'invalid_request_error', code: 'request_timeout' },
  TTS_ERR_PAYLOAD_TOO_LARGE: { status: 413, type: 'invalid_request_error', code: 'payload_too_large' },
  TTS_ERR_URI_TOO_LONG: { status: 414, type: 'invalid_request_error', code: 'uri_too_long' },
  TTS_ERR_UNSUPPORTED_MEDIA_TYPE: { status: 415, type: 'invalid_request_error', code: 'unsupported_media_type' },
  TTS_ERR_HEADERS_TOO_LARGE: { status: 431, type: 'invalid_request_error', code: 'headers_too_large' },
  TTS_ERR_RATE_LIMITED: { status: 429, type: 'rate_limit_error', code: 'rate_limit_exceeded' },
  TTS_ERR_QUEUE_FULL: { status: 429, type: 'rate_limit_error', code: 'queue_full' },
  TTS_ERR_TOO_MANY_BATCHES: { status: 429, type: 'rate_limit_error', code: 'too_many_open_batches' },
  TTS_ERR_INTERNAL: { status: 500, type: 'server_error', code: 'internal_error' },
  TTS_ERR_ENGINE_FAILED: { status: 500, type: 'server_error', code: 'engine_error' },
  TTS_ERR_MODEL_UNAVAILABLE: { status: 503, type: 'server_error', code: 'model_unavailable' },
  TTS_ERR_BACKEND_UNAVAILABLE: { status: 503, type: 'server_error', code: 'backend_unavailable' },
  TTS_ERR_QUEUE_TIMEOUT: { status: 503, type: 'server_error', code: 'queue_timeout' },
  TTS_ERR_CANCELLED: { status: 499, type: 'invalid_request_error', code: 'cancelled' },
  TTS_ERR_SHUTTING_DOWN: { status: 503, type: 'server_error', code: 'shutting_down' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorName = keyof typeof ERRORS;

/** OpenAI's error body, the one shape every failure has on the wire (documented as `Error` in /openapi.json). */
export const ErrorEnvelopeSchema = z
  .object({
    error: z.object({
      message: z.string().describe('What went wrong, for people.'),
      type: z.enum(['invalid_request_error', 'rate_limit_error', 'server_error']).describe("OpenAI's error type."),
      param: z.string().nullable().describe('The request field at fault (a dotted path such as `voice.id`), or null.'),
      code: z.string().nullable().describe('A stable machine-readable code from the error catalogue.'),
    }),
  })
  .meta({
    id: 'Error',
    description: "OpenAI's error envelope.",
    example: {
      error: { message: "'input' is too long: at most 4096 characters.", type: 'invalid_request_error', param: 'input', code: 'string_too_long' },
    },
  });
export interface ErrorEnvelope {
  error: { message: string; type: string; param: string | null; code: string | null };
}

export interface ChorusErrorOptions {
  param?: string | null;
  cause?: unknown;
  /** Seconds a client should wait before retrying (429/503). */
  retryAfterS?: number;
}

/** A failure with a place in {@link ERRORS}; anything else is rendered as `TTS_ERR_INTERNAL`. */
export class ChorusError extends Error {
  override readonly name = 'ChorusError';
  readonly errorName: ErrorName;
  readonly status: number;
  readonly type: ErrorType;
  readonly code: string;
  readonly param: string | null;
  readonly retryAfterS: number | undefined;

  constructor(errorName: ErrorName, message: string, options: ChorusErrorOptions = {}) {
    super(message, { cause: options.cause });
    const spec: ErrorSpec = ERRORS[errorName];
    this.errorName = errorName;
    this.status = spec.status;
    this.type = spec.type;
    this.code = spec.code;
    this.param = options.param ?? spec.param ?? null;
    this.retryAfterS = options.retryAfterS;
  }

  toEnvelope(): ErrorEnvelope {
    return errorEnvelope(this.message, this.type, this.code, this.param);
  }
}

export function errorEnvelope(
  message: string,
  type: string,
  code: string | null,
  param: string | null = null,
): ErrorEnvelope {
  return { error: { message, type, param, code } };
}

/** Finds the catalogue entry whose OpenAI `code` matches (used when an error crosses Redis as a code). */
export function errorNameForCode(code: string): ErrorName {
  for (const [name, spec] of Object.entries(ERRORS) as [ErrorName, ErrorSpec][]) {
    if (spec.code === code) return name;
  }
  return 'TTS_ERR_INTERNAL';
}

/**
 * OpenAPI responses for the catalogue entries a route can answer with, one per status, each listing its codes
 * (route schemas declare these; /openapi.json documents them). Later names for the same status add their codes.
 */
export function errorResponses(...names: ErrorName[]) {
  const codes = new Map<number, Set<string>>();
  for (const name of names) {
    const spec: ErrorSpec = ERRORS[name];
    const set = codes.get(spec.status) ?? new Set<string>();
    set.add(`\`${spec.code}\``);
    codes.set(spec.status, set);
  }
  const out: Record<number, { description: string; content: { 'application/json': { schema: typeof ErrorEnvelopeSchema } } }> = {};
  for (const [status, set] of [...codes].sort(([a], [b]) => a - b)) {
    out[status] = {
      description: `Error (${[...set].join(', ')}).`,
      content: { 'application/json': { schema: ErrorEnvelopeSchema } },
    };
  }
  return out;
}
