import type { z } from 'zod';
import { ChorusError } from './errors.ts';

/**
 * Turns the first zod issue into the OpenAI-style 400 a client sees: `param` is the field's path
 * (`voice.id`), `code` tells missing from wrong-typed from out-of-range.
 */
export function validationError(error: z.ZodError, input: unknown, paramPrefix = ''): ChorusError {
  const issue = error.issues[0];
  if (!issue) return new ChorusError('TTS_ERR_VALIDATION', 'invalid request');
  const param = paramPrefix + (issue.path.map(String).join('.') || '') || null;
  const field = param ?? 'body';
  if (VERBATIM.has(issue.message)) return new ChorusError('TTS_ERR_VALIDATION', issue.message, { param });
  if (valueAt(input, issue.path) === undefined && (issue.code === 'invalid_type' || issue.code === 'invalid_union')) {
    return new ChorusError('TTS_ERR_MISSING_FIELD', `Missing required parameter: '${field}'.`, { param });
  }
  if (issue.code === 'invalid_type') {
    return new ChorusError('TTS_ERR_INVALID_TYPE', `Invalid type for '${field}': expected ${issue.expected}.`, {
      param,
    });
  }
  if (issue.code === 'too_big' && issue.origin === 'string') {
    return new ChorusError(
      'TTS_ERR_INPUT_TOO_LONG',
      `'${field}' is too long: at most ${String(issue.maximum)} characters.`,
      { param },
    );
  }
  if (issue.code === 'too_big' || issue.code === 'too_small') {
    const bound = issue.code === 'too_big' ? `<= ${String(issue.maximum)}` : `>= ${String(issue.minimum)}`;
    const what = issue.origin === 'string' ? 'length must be' : 'must be';
    return new ChorusError('TTS_ERR_VALIDATION', `Invalid '${field}': ${what} ${bound}.`, { param });
  }
  if (issue.code === 'invalid_value') {
    return new ChorusError(
      'TTS_ERR_VALIDATION',
      `Invalid '${field}': expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}.`,
      { param },
    );
  }
  return new ChorusError('TTS_ERR_VALIDATION', `Invalid '${field}': ${issue.message}`, { param });
}

/** Messages {@link verbatim} marked: sent as they are instead of the generic wording above. */
const VERBATIM = new Set<string>();

/**
 * A field's own error message, for every check of that field (`z.coerce.number(verbatim(m)).int(verbatim(m))`):
 * the 400 then carries exactly `message` (code `invalid_value`), as query parameters have always been reported.
 */
export function verbatim(message: string): { error: string } {
  VERBATIM.add(message);
  return { error: message };
}

/** Parses or throws the 400. */
export function parseOrThrow<T extends z.ZodType>(schema: T, value: unknown, paramPrefix = ''): z.infer<T> {
  const result = schema.safeParse(value);
  if (!result.success) throw validationError(result.error, value, paramPrefix);
  return result.data;
}

// zod 4 leaves the offending input out of issues; look it up to tell "missing" from "wrong type".
function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let v: unknown = input;
  for (const key of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[key];
  }
  return v;
}
