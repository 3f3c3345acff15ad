import { z } from 'zod';

/*
 * The one home of a request's synthesis parameters. The dialect schemas (speech.ts, legacy.ts) reuse these field
 * schemas under their own wire names, the job payload (job.ts) spreads SynthesisOptions' shape, and the API's
 * SynthesisParams and the worker's SynthesisInput are typed from it. Ranges are OpenAI's where OpenAI has one.
 */

/** Speaking rate, 1 = normal (OpenAI: 0.25–4). */
export const SpeedField = z.number().min(0.25).max(4);
/** A BCP 47-like language tag (`en`, `en-US`, `pt_BR`). */
export const LangField = z.string().regex(/^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$/);
/** Style instructions for engines that take them (OpenAI: up to 4,096 characters). */
export const InstructionsField = z.string().max(4096);
/** Sampling seed for engines that sample (an unsigned 32-bit integer). */
export const SeedField = z.number().int().min(0).max(2 ** 32 - 1);
/** Sampling temperature for engines that sample. */
export const TemperatureField = z.number().min(0).max(2);
/** The name of a preset from the voices file (resolved by the API). */
export const PresetNameField = z.string().min(1).max(64);

/** What a request asks of the synthesis itself, under internal names; travels unchanged from route to engine. */
export const SynthesisOptions = z.object({
  speed: SpeedField,
  lang: LangField.optional(),
  instructions: InstructionsField.optional(),
  seed: SeedField.optional(),
  temperature: TemperatureField.optional(),
});
export type SynthesisOptions = z.infer<typeof SynthesisOptions>;

const OPTION_KEYS = Object.keys(SynthesisOptions.shape) as (keyof SynthesisOptions)[];

/** The synthesis options out of a larger object (a job payload); absent ones stay absent. */
export function pickSynthesisOptions(from: SynthesisOptions): SynthesisOptions {
  const out: Record<string, unknown> = {};
  for (const key of OPTION_KEYS) if (from[key] !== undefined) out[key] = from[key];
  return out as SynthesisOptions;
}
