import { Command, InvalidArgumentError } from 'commander';

/*
 * The flags the API-facing commands (`speak`, `batch`) share. Kept apart from api-client.ts, which loads the OpenAI
 * SDK: declaring the commands must not load it (`chorus models …` never talks to the API).
 */

export interface ApiOpts {
  baseUrl?: string;
  apiKey?: string;
  retries?: number;
}

function retriesArg(v: string): number {
  if (!/^\d+$/.test(v)) throw new InvalidArgumentError('expected a whole number');
  return Number(v);
}

/** Adds --base-url, --api-key and --retries to a command (or to a group: read them with optsWithGlobals). */
export function addApiOptions(cmd: Command): Command {
  return cmd
    .option('--base-url <url>', 'Chorus API base URL (default: $OPENAI_BASE_URL or http://localhost:8000/v1)')
    .option('--api-key <key>', 'API key, sent as a Bearer token (default: $OPENAI_API_KEY)')
    .option('--retries <n>', 'further tries after a connection error, 408, 409, 429 or 5xx (SDK backoff)', retriesArg, 2);
}
