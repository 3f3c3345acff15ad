import { z } from 'zod';
import { AudioFormat } from '../audio-formats.ts';

/** OpenAI's documented fields plus our extensions; anything else is ignored and named in a response header. */
export const SPEECH_FIELDS = [
  'model', 'input', 'voice', 'instructions', 'response_format', 'speed', 'stream_format',
  'stream', 'lang', 'seed', 'preset', 'temperature',
] as const;

export const StreamFormat = z.enum(['audio', 'sse']);

/** `POST /v1/audio/speech` body. Built per config because the input limit is configurable. */
export function speechRequestSchema(maxInputChars: number) {
  return z.object({
    model: z.string().min(1).max(200),
    input: z
      .string()
      .max(maxInputChars)
      .refine((s) => s.trim().length > 0, { message: 'input must contain text' }),
    voice: z.union([z.string().min(1).max(200), z.object({ id: z.string().min(1).max(200) })]),
    instructions: z.string().max(4096).optional(),
    response_format: AudioFormat.default('mp3'),
    speed: z.number().min(0.25).max(4).default(1),
    stream_format: StreamFormat.default('audio'),
    // Extensions (documented in README): OpenAI's SDKs never send them.
    stream: z.boolean().default(true),
    lang: z.string().regex(/^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$/).optional(),
    seed: z.number().int().min(0).max(2 ** 32 - 1).optional(),
    preset: z.string().min(1).max(64).optional(),
    temperature: z.number().min(0).max(2).optional(),
  });
}
export type SpeechRequest = z.infer<ReturnType<typeof speechRequestSchema>>;
