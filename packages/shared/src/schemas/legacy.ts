import { z } from 'zod';
import { AudioFormat } from '../audio-formats.ts';
import { LangField, PresetNameField, SeedField, SpeedField, TemperatureField, type SynthesisOptions } from './synthesis.ts';

/** Fields of the legacy `/api/generate_tts*` body; anything else is ignored (kept stable for old clients). */
export const LEGACY_TTS_FIELDS = ['text', 'speaker', 'preset', 'temperature', 'speed', 'format', 'language', 'seed'] as const;

/** `POST /api/generate_tts` and `/api/generate_tts/stream` body; built per config for the input limit. */
export function legacyTtsRequestSchema(maxInputChars: number) {
  return z
    .object({
      text: z
        .string()
        .max(maxInputChars)
        .refine((s) => s.trim().length > 0, { message: 'text must contain text' })
        .meta({
          description: `The text to speak: 1 to ${maxInputChars} characters (MAX_INPUT_CHARS), not only whitespace.`,
          example: 'Hello from the legacy API.',
        }),
      speaker: z.string().min(1).max(200).optional().meta({
        description: 'A speaker id from GET /api/speakers (or its file-style name, `speaker1.wav`); default: the configured default speaker.',
        example: 'speaker1',
      }),
      preset: PresetNameField.optional().describe('A preset from GET /api/presets.'),
      temperature: TemperatureField.optional().describe('Sampling temperature, 0 to 2, for engines that sample.'),
      speed: SpeedField.default(1).describe('Speaking rate, 0.25 to 4.0.'),
      format: AudioFormat.default('wav').describe('The audio container (24 kHz mono).'),
      language: LangField.optional().meta({ description: 'A language tag for the engine.', example: 'en-US' }),
      seed: SeedField.optional().describe('A sampling seed for engines that sample.'),
    })
    .meta({ description: 'Unknown fields are ignored.', example: { text: 'Hello from the legacy API.', speaker: 'speaker1', format: 'wav' } });
}
export type LegacyTtsRequest = z.infer<ReturnType<typeof legacyTtsRequestSchema>>;

/** The legacy body's synthesis options under internal names (`language` → `lang`); it has no instructions. */
export function legacySynthesisOptions(body: LegacyTtsRequest): SynthesisOptions {
  return { speed: body.speed, lang: body.language, seed: body.seed, temperature: body.temperature };
}
