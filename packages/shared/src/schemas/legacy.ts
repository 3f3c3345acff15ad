import { z } from 'zod';
import { AudioFormat } from '../audio-formats.ts';
import { LangField, PresetNameField, SeedField, SpeedField, TemperatureField, type SynthesisOptions } from './synthesis.ts';

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
    preset: PresetNameField.optional(),
    temperature: TemperatureField.optional(),
    speed: SpeedField.default(1),
    format: AudioFormat.default('wav'),
    language: LangField.optional(),
    seed: SeedField.optional(),
  });
}
export type LegacyTtsRequest = z.infer<ReturnType<typeof legacyTtsRequestSchema>>;

/** The legacy body's synthesis options under internal names (`language` → `lang`); it has no instructions. */
export function legacySynthesisOptions(body: LegacyTtsRequest): SynthesisOptions {
  return { speed: body.speed, lang: body.language, seed: body.seed, temperature: body.temperature };
}
