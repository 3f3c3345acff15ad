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
  return z
    .object({
      model: z.string().min(1).max(200).meta({
        description:
          'An OpenAI alias (`tts-1`, `tts-1-hd`, `gpt-4o-mini-tts`, `gpt-4o-mini-tts-2025-12-15`), routed to the first of ' +
          'its configured engines a live worker serves, or an engine id (`espeak`, `piper`, `kokoro`). Unknown: 404 `model_not_found`.',
        example: 'tts-1',
      }),
      input: z
        .string()
        .max(maxInputChars)
        .refine((s) => s.trim().length > 0, { message: 'input must contain text' })
        .meta({
          description: `The text to speak: 1 to ${maxInputChars} characters (MAX_INPUT_CHARS), not only whitespace.`,
          example: 'The quick brown fox jumped over the lazy dog.',
        }),
      voice: z
        .union([
          z.string().min(1).max(200),
          z.object({ id: z.string().min(1).max(200).describe('The voice name.') }).describe('A voice given as an object.'),
        ])
        .meta({
          description:
            'One of the 13 OpenAI voice names (alloy ash ballad coral echo fable onyx nova sage shimmer verse marin cedar), ' +
            'a configured speaker id, or a voice a live worker loaded for the engine (Kokoro voices blend as `a+b` or ' +
            '`a(2)+b(1)`). See GET /v1/audio/voices.',
          example: 'alloy',
        }),
      instructions: InstructionsField.optional().describe(
        'Style instructions, passed to engines that support style control and ignored by the others.',
      ),
      response_format: AudioFormat.default('mp3').describe('The audio container (24 kHz mono).'),
      speed: SpeedField.default(1).meta({ description: 'Speaking rate, 0.25 to 4.0.', example: 1 }),
      stream_format: StreamFormat.default('audio').describe(
        '`audio`: the raw container bytes, chunked. `sse`: Server-Sent Events with base64 deltas (text/event-stream).',
      ),
      // Extensions (documented in README): OpenAI's SDKs never send them.
      stream: z.boolean().default(true).describe(
        'Chorus extension. `false`: answer once the audio is complete, with Content-Length (exact WAV sizes). ' +
          'Also accepted as the query parameter `?stream=false`; the body wins when both are given.',
      ),
      lang: LangField.optional().meta({ description: 'Chorus extension: a language tag for the engine.', example: 'en-US' }),
      seed: SeedField.optional().describe('Chorus extension: a sampling seed for engines that sample.'),
      preset: PresetNameField.optional().describe('Chorus extension: a preset from the voices file (see GET /api/presets).'),
      temperature: TemperatureField.optional().describe('Chorus extension: sampling temperature, 0 to 2.'),
    })
    .meta({
      description: 'Unknown fields are ignored and named in the `x-chorus-ignored-params` response header.',
      example: { model: 'tts-1', input: 'Hello from Chorus.', voice: 'alloy', response_format: 'mp3' },
    });
}
export type SpeechRequest = z.infer<ReturnType<typeof speechRequestSchema>>;

/** `POST /v1/audio/speech` query: `?stream=false` as existing integrations send it; other values are ignored. */
export const SpeechQuery = z.object({
  stream: z
    .enum(['true', 'false', '1', '0'])
    .optional()
    .catch(undefined)
    .describe('Chorus extension: `false` (or `0`) is `stream: false` when the body does not say; other values are ignored.'),
});

/** The OpenAI body's synthesis options under internal names (the one place its wire names are mapped). */
export function speechSynthesisOptions(body: SpeechRequest): SynthesisOptions {
  return { speed: body.speed, lang: body.lang, instructions: body.instructions, seed: body.seed, temperature: body.temperature };
}
