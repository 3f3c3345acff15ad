/**
 * Model names a client may send. OpenAI's names are aliases for an ordered list of engines (best first; the API
 * routes a request to the first one a live worker serves); engine ids are accepted as themselves. Which of them
 * is *available* depends on the live workers.
 */

/** Engines this codebase knows; a worker serves the subset named in its ENGINES. */
export const KNOWN_ENGINES = ['espeak', 'piper', 'kokoro', 'bench'] as const;
export type KnownEngine = (typeof KNOWN_ENGINES)[number];

/** Neural first, espeak-ng last: it runs everywhere, so an alias always has somewhere to go. */
const DEFAULT_CHAIN = ['kokoro', 'piper', 'espeak'] as const;

export const DEFAULT_MODEL_ALIASES: Readonly<Record<string, readonly string[]>> = {
  'tts-1': DEFAULT_CHAIN,
  'tts-1-hd': DEFAULT_CHAIN,
  'gpt-4o-mini-tts': DEFAULT_CHAIN,
  'gpt-4o-mini-tts-2025-12-15': DEFAULT_CHAIN,
};

export class ModelTable {
  /** Alias → engines, best first. A null-prototype map: model names come from clients. */
  readonly aliases: Readonly<Record<string, readonly string[]>>;
  readonly engines: readonly string[];

  /**
   * `aliasesSpec` is MODEL_ALIASES: `alias=engine|engine|...` pairs, comma separated, merged over the defaults
   * (`tts-1=espeak` pins an alias to one engine).
   */
  constructor(aliasesSpec?: string, engines: readonly string[] = KNOWN_ENGINES) {
    this.engines = engines;
    const aliases: Record<string, readonly string[]> = Object.assign(Object.create(null), DEFAULT_MODEL_ALIASES);
    for (const pair of (aliasesSpec ?? '').split(',').map((s) => s.trim()).filter(Boolean)) {
      const [alias, chainSpec, ...rest] = pair.split('=').map((s) => s.trim());
      const chain = (chainSpec ?? '').split('|').map((s) => s.trim());
      if (!alias || rest.length > 0 || chain.some((e) => !engines.includes(e)) || new Set(chain).size !== chain.length) {
        throw new Error(
          `MODEL_ALIASES: "${pair}" must be alias=engine or alias=engine|engine|... with engines from ${engines.join(', ')}`,
        );
      }
      aliases[alias] = chain;
    }
    this.aliases = aliases;
  }

  /** The engines behind a model name, best first; undefined for a model nobody has heard of (404). */
  enginesFor(model: string): readonly string[] | undefined {
    if (Object.hasOwn(this.aliases, model)) return this.aliases[model];
    return this.engines.includes(model) ? [model] : undefined;
  }

  /** The engine a request for `model` goes to: the first of its engines in `servedEngines`. */
  routeFor(model: string, servedEngines: ReadonlySet<string>): string | undefined {
    return this.enginesFor(model)?.find((e) => servedEngines.has(e));
  }

  /** Every model id (aliases first) that some engine in `servedEngines` can run. */
  availableModels(servedEngines: ReadonlySet<string>): string[] {
    const aliases = Object.keys(this.aliases).filter((a) => this.routeFor(a, servedEngines) !== undefined);
    return [...aliases, ...this.engines.filter((e) => servedEngines.has(e))];
  }
}
