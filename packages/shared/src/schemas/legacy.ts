import { z } from 'zod';
import { AudioFormat } from '../audio-formats.ts';

/** Fields of the legacy `/api/generate_tts*` body; anything else is ignored (kept stable for old clients). */
export const LEGACY_TTS_FIELDS = ['text', 'speaker', 'preset', 'temperature', 'speed', 'format', 'language', 'seed'] as const;

/** `POST /api/generate_tts` and `/api/generate_tts/stream` body; built per config for the input limit. */
export function legacyTtsRequestSchema(maxInputChars: number) {
  return z.object({
    text: z
      .string()
      .max(maxInputChars)
      .refine((s) => s.trim().length > 0, { message: 'text must contain text' }),
    speaker: z.string().min(1).max(200).optional(),
    preset: z.string().min(1).max(64).optional(),
    temperature: z.number().min(0).max(2).optional(),
    speed: z.number().min(0.25).max(4).default(1),
    format: AudioFormat.default('wav'),
    language: z.string().regex(/^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$/).optional(),
    seed: z.number().int().min(0).max(2 ** 32 - 1).optional(),
  });
}
export type LegacyTtsRequest = z.infer<ReturnType<typeof legacyTtsRequestSchema>>;
