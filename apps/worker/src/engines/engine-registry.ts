import type { TtsEngine } from './engine.ts';
import { EspeakEngine } from './espeak-engine.ts';
import { BenchEngine, benchEngineOptionsFromEnv } from './bench-engine.ts';

/** Engine factories by id; ENGINES selects which a worker starts. */
const FACTORIES: Record<string, () => TtsEngine> = {
  espeak: () => new EspeakEngine(),
  /** Benchmark only (bench/worker-scaling.ts): sleeps BENCH_ENGINE_DELAY_MS per segment, then a tone. */
  bench: () => new BenchEngine(benchEngineOptionsFromEnv(process.env)),
};

export function availableEngineIds(): string[] {
  return Object.keys(FACTORIES);
}

export async function createEngines(ids: readonly string[]): Promise<Map<string, TtsEngine>> {
  const engines = new Map<string, TtsEngine>();
  for (const id of ids) {
    const factory = FACTORIES[id];
    if (!factory) throw new Error(`ENGINES: unknown engine "${id}" (available: ${availableEngineIds().join(', ')})`);
    const engine = factory();
    await engine.init?.();
    engines.set(id, engine);
  }
  return engines;
}
