import { Command, InvalidArgumentError, Option } from 'commander';
import { addApiOptions, type ApiOpts } from '../api-options.ts';

/* `chorus speak`: its arguments and flags. What it does is in actions/speak.ts, loaded when it runs. */

export const FORMATS = ['mp3', 'opus', 'aac', 'flac', 'wav', 'pcm'] as const;
export type Format = (typeof FORMATS)[number];

export interface SpeakOpts extends ApiOpts {
  voice: string;
  model: string;
  format?: Format;
  output: string;
  speed?: number;
  instructions?: string;
  verbose?: boolean;
}

function speedArg(v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError('expected a number (0.25 to 4)');
  return n; // the range is the API's to enforce, with its own error line
}

export function speakCommand(): Command {
  const cmd = new Command('speak')
    .description('synthesize text to an audio file, or to stdout with -o -')
    .argument('[text]', 'what to say; "-" or absent reads it from stdin')
    .option('-v, --voice <voice>', 'voice: an OpenAI name, an engine voice or a blend', 'alloy')
    .option('-m, --model <model>', 'model (tts-1, tts-1-hd, gpt-4o-mini-tts, or an engine name)', 'tts-1')
    .addOption(new Option('-f, --format <format>', 'audio format (default: from the -o extension, else mp3)').choices(FORMATS))
    .requiredOption('-o, --output <file>', 'where the audio goes: a file, or - for stdout')
    .option('--speed <x>', 'speaking rate, 0.25 to 4', speedArg)
    .option('--instructions <text>', 'delivery instructions (for models that take them)')
    .option('--verbose', 'show the engine, job and request ids on stderr');
  return addApiOptions(cmd).action(async (text: string | undefined, opts: SpeakOpts) => (await import('../actions/speak.ts')).speak(text, opts));
}
