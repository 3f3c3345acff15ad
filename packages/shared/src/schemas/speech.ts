import { z } from 'zod';
import { AudioFormat } from '../audio-formats.ts';
import {
  InstructionsField, LangField, PresetNameField, SeedField, SpeedField, TemperatureField, type SynthesisOptions,
} from './synthesis.ts';

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
    instructions: InstructionsField.optional(),
    response_format: AudioFormat.default('mp3'),
    speed: SpeedField.default(1),
    stream_format: StreamFormat.default('audio'),
    // Extensions (documented in README): OpenAI's SDKs never send them.
    stream: z.boolean().default(true),
    lang: LangField.optional(),
    seed: SeedField.optional(),
    preset: PresetNameField.optional(),
    temperature: TemperatureField.optional(),
  });
}
export type SpeechRequest = z.infer<ReturnType<typeof speechRequestSchema>>;

/** The OpenAI body's synthesis options under internal names (the one place its wire names are mapped). */
export function speechSynthesisOptions(body: SpeechRequest): SynthesisOptions {
  return { speed: body.speed, lang: body.lang, instructions: body.instructions, seed: body.seed, temperature: body.temperature };
}
