/**
 * Model names a client may send. OpenAI's names are aliases mapped to an engine (MODEL_ALIASES overrides the
 * defaults); engine ids are accepted as themselves. Which of them is *available* depends on the live workers.
 */

/** Engines this codebase knows; a worker serves the subset named in its ENGINES. */
export const KNOWN_ENGINES = ['espeak', 'piper', 'kokoro', 'bench'] as const;
export type KnownEngine = (typeof KNOWN_ENGINES)[number];

export const DEFAULT_MODEL_ALIASES: Readonly<Record<string, string>> = {
  'tts-1': 'espeak',
  'tts-1-hd': 'espeak',
  'gpt-4o-mini-tts': 'espeak',
  'gpt-4o-mini-tts-2025-12-15': 'espeak',
};

export class ModelTable {
  readonly aliases: Readonly<Record<string, string>>;
  readonly engines: readonly string[];

  constructor(aliasesSpec?: string, engines: readonly string[] = KNOWN_ENGINES) {
    this.engines = engines;
    const aliases: Record<string, string> = { ...DEFAULT_MODEL_ALIASES };
    for (const pair of (aliasesSpec ?? '').split(',').map((s) => s.trim()).filter(Boolean)) {
      const [alias, engine] = pair.split('=').map((s) => s.trim());
      if (!alias || !engine || !engines.includes(engine)) {
        throw new Error(`MODEL_ALIASES: "${pair}" must be alias=engine with engine one of ${engines.join(', ')}`);
      }
      aliases[alias] = engine;
    }
    this.aliases = aliases;
  }

  /** The engine behind a model name, or undefined for a model nobody has heard of (404). */
  engineFor(model: string): string | undefined {
    if (Object.hasOwn(this.aliases, model)) return this.aliases[model];
    return this.engines.includes(model) ? model : undefined;
  }

  /** Every model id (aliases first) whose engine is in `servedEngines`. */
  availableModels(servedEngines: ReadonlySet<string>): string[] {
    const aliases = Object.keys(this.aliases).filter((a) => servedEngines.has(this.aliases[a]!));
    return [...aliases, ...this.engines.filter((e) => servedEngines.has(e))];
  }
}
