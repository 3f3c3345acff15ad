import OpenAI, { APIConnectionError, APIConnectionTimeoutError, APIError } from 'openai';
import { loadCliConfig } from '@chorus/shared/config';
import type { ApiOpts } from './api-options.ts';
import { CliError } from './errors.ts';

/*
 * The OpenAI SDK client the API-facing commands share (`speak`, `batch`): built from their shared flags
 * (api-options.ts) with the SDK's own environment variables behind them, and one readable line for whatever the SDK
 * throws. Loaded when one of those commands runs (and by main.ts to read an unexpected error), never up front.
 */

export interface ApiClient {
  client: OpenAI;
  baseUrl: string;
}

/** Flags win over OPENAI_BASE_URL / OPENAI_API_KEY (validated in the shared config). */
export function createApiClient(opts: ApiOpts): ApiClient {
  const cfg = loadCliConfig();
  const baseUrl = (opts.baseUrl ?? cfg.apiBaseUrl).replace(/\/+$/, '');
  if (!URL.canParse(baseUrl) || !/^https?:$/.test(new URL(baseUrl).protocol)) {
    throw new CliError(`--base-url: not an http(s) URL: ${baseUrl}`);
  }
  const apiKey = opts.apiKey ?? cfg.apiKey;
  const client = new OpenAI({
    baseURL: baseUrl,
    // A gateway without API_KEYS needs no key, but the SDK insists on one: give it a placeholder and send no
    // Authorization header at all (a null default header removes it), so a keyed gateway says "missing key".
    apiKey: apiKey ?? 'none',
    ...(apiKey === undefined ? { defaultHeaders: { Authorization: null } } : {}),
    maxRetries: opts.retries ?? 2,
  });
  return { client, baseUrl };
}

/**
 * What the SDK threw, as one line: `400 invalid_value (voice): Invalid voice 'x'…`, `cannot reach <baseUrl>: connect
 * ECONNREFUSED …`; undefined if it is not the SDK's.
 */
export function apiErrorLine(err: unknown, baseUrl = 'the API'): string | undefined {
  if (err instanceof APIConnectionTimeoutError) return `${baseUrl} did not answer in time (request timed out)`;
  if (err instanceof APIConnectionError) return `cannot reach ${baseUrl}: ${rootCause(err)}`;
  if (!(err instanceof APIError)) return undefined;
  const e = err as APIError & { error?: { message?: unknown } };
  const what = [e.code ?? e.type, e.param ? `(${e.param})` : undefined].filter(Boolean).join(' ');
  const message = typeof e.error?.message === 'string' ? e.error.message : undefined;
  // No envelope (a proxy's HTML page, an empty body): say so, with the start of what came (the SDK's message).
  if (!message) return `${e.status} from ${baseUrl}, not an API error (a proxy? wrong URL?): ${oneLine(err.message, 160)}`;
  return `${e.status}${what ? ` ${what}` : ''}: ${oneLine(message, 1000)}`;
}

function oneLine(s: string, max: number): string {
  const flat = s.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/** The innermost cause (`connect ECONNREFUSED 127.0.0.1:1`, `getaddrinfo ENOTFOUND x`), not fetch's "fetch failed". */
function rootCause(err: Error): string {
  let e: unknown = err;
  while (e instanceof Error && e.cause instanceof Error) e = e.cause;
  const inner = e as NodeJS.ErrnoException;
  if (inner === err) return err.message;
  return inner.message || inner.code || String(inner);
}
