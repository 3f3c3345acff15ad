import { KNOWN_ENGINES, type KnownEngine } from '@chorus/shared';
import type { TtsEngine } from './engine.ts';
import { EspeakEngine } from './espeak-engine.ts';
import { BenchEngine, type BenchEngineOptions } from './bench-engine.ts';
import { PiperEngine } from './piper-engine.ts';
import { KokoroEngine } from './kokoro-engine.ts';
import type { Device, OnnxOptions } from './onnx/session.ts';
import type { DeferRefill } from '../processors/first-audio-gate.ts';
import type { SpawnFn } from '../spawner/spawner.ts';

/** What factories need; the worker builds it from its config (no factory reads process.env). */
export interface EngineSettings {
  modelsDir: string;
  executionProviders: readonly Device[];
  intraOpThreads: number;
  inferenceBatchMax: number;
  inferenceBatchWaitMs: number;
  /** Warm espeak-ng processes per recently used argument set (ESPEAK_POOL_SIZE); absent or 0: none. */
  espeakPoolSize?: number;
  /** When warm pools start replacements (the first-audio gate's `whenIdle`). */
  deferRefill?: DeferRefill;
  /** How espeak-ng processes start (the worker's spawner helper). */
  spawn?: SpawnFn;
  bench: BenchEngineOptions;
  warn(message: string): void;
}

const onnx = (s: EngineSettings): OnnxOptions => ({
  providers: s.executionProviders, intraOpThreads: s.intraOpThreads, batchMax: s.inferenceBatchMax,
  batchWaitMs: s.inferenceBatchWaitMs, warn: s.warn,
});

/** One factory per engine in KNOWN_ENGINES (the shared list is the source: a missing or extra one fails typecheck). */
const FACTORIES: Record<KnownEngine, (s: EngineSettings) => TtsEngine> = {
  espeak: (s) => new EspeakEngine('espeak-ng', { poolSize: s.espeakPoolSize, deferRefill: s.deferRefill, spawn: s.spawn }),
  piper: (s) => new PiperEngine(s.modelsDir, onnx(s)),
  kokoro: (s) => new KokoroEngine(s.modelsDir, onnx(s)),
  /** Benchmark only (bench/worker-scaling.ts): sleeps BENCH_ENGINE_DELAY_MS per segment, then a tone. */
  bench: (s) => new BenchEngine(s.bench),
};

export function availableEngineIds(): string[] {
  return [...KNOWN_ENGINES];
}

/** Starts the engines named in ENGINES; each loads its models here, before the worker takes jobs. */
export async function createEngines(ids: readonly string[], settings: EngineSettings): Promise<Map<string, TtsEngine>> {
  const engines = new Map<string, TtsEngine>();
  for (const id of ids) {
    if (!(KNOWN_ENGINES as readonly string[]).includes(id)) {
      throw new Error(`ENGINES: unknown engine "${id}" (available: ${availableEngineIds().join(', ')})`);
    }
    const engine = FACTORIES[id as KnownEngine](settings);
    await engine.init?.();
    engines.set(id, engine);
  }
  return engines;
}
