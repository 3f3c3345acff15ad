/**
 * Neural voices: real-time factor and time to first audio, CUDA against CPU, at several concurrencies.
 *
 * (a) Engine level, in-process (always): the worker's own config (loadWorkerConfig with EXECUTION_PROVIDERS set per
 *     run) and engine factory (createEngines) load Piper/Kokoro from MODELS_DIR; N clients in a closed loop each
 *     send a text, split by the worker's segmenter and synthesized segment by segment as the worker does. Per request:
 *     time to the first PCM chunk, total time, audio seconds; RTF = synthesis time / audio duration (< 1: faster
 *     than real time).
 * (b) End to end (`--http`): a private redis-server, the API and one worker process per provider set (as the other
 *     benchmarks start them), raw pcm over HTTP: time to first byte and RTF.
 *
 * Each run reports the device every model actually got (the session module falls back to the CPU with one warning
 * when CUDA is asked for and unusable); such rows are marked as fallbacks and get no CUDA-vs-CPU speed-up.
 *
 *   node --import tsx bench/neural-rtf.ts --models-dir ./models          # a GPU host: cuda,cpu against cpu
 *   node --import tsx bench/neural-rtf.ts --generated                    # here: generated models, realistic compute
 *   flags: --engines piper,kokoro   --voice piper=<voice> --voice kokoro=<voice> (default: first loaded)
 *          --providers cuda,cpu (EXECUTION_PROVIDERS under test)   --baseline cpu|none
 *          --concurrency 1,4,16   --requests N (per level, at least the concurrency; default 32, --quick 8)
 *          --threads N (ORT_INTRA_OP_THREADS; default the worker's: 0 = all cores)   --http   --out FILE
 *          --generated-size realistic|tiny   --quick
 */
import { execFileSync } from 'node:child_process';
import { setMaxListeners } from 'node:events';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { liveWorkers, loadWorkerConfig, type Speaker } from '@chorus/shared';
import { segmentText } from '../apps/worker/src/audio/segmenter.ts';
import { benchEngineOptionsFromEnv } from '../apps/worker/src/engines/bench-engine.ts';
import { createEngines } from '../apps/worker/src/engines/engine-registry.ts';
import type { TtsEngine } from '../apps/worker/src/engines/engine.ts';
import type { KokoroEngine } from '../apps/worker/src/engines/kokoro-engine.ts';
import type { PiperEngine } from '../apps/worker/src/engines/piper-engine.ts';
import { resetCudaWarningForTests } from '../apps/worker/src/engines/onnx/session.ts';
import { generateModelsDir } from '../test/helpers/onnx-models.ts';
import { AGENT, speech } from './lib/http-client.ts';
import { closedLoop } from './lib/load.ts';
import { isMain } from './lib/main.ts';
import { pcmSeconds } from './lib/playback.ts';
import { machineInfo, markStart, printTable, writeResults } from './lib/report.ts';
import { BenchStack } from './lib/stack.ts';
import { percentile, round } from './lib/stats.ts';

/** English prose of different lengths (one sentence to several paragraphs); request i sends TEXTS[i % 4]. */
export const TEXTS = [
  'Good morning. The train to the coast leaves at nine.',
  'The library opens at eight on weekdays and at ten on Saturdays. Books borrowed before the holiday are due back ' +
    'on the second Monday of the month, and the reading room upstairs stays open late on Thursdays.',
  'Most of the village had gathered at the harbour by the time the boats came in. The catch was small, as it had ' +
    'been all season, but nobody seemed to mind: the weather had held, the nets were whole, and every crew was ' +
    'home before dark. Children ran along the wall counting the gulls, while their parents talked about the price ' +
    'of diesel and whether the new pier would ever be finished. Later, when the lamps were lit, the talk turned ' +
    'to the festival.',
  'Engineers who build speech systems learn to listen differently. A pause that lasts a little too long, a ' +
    'question that falls instead of rising, a number read as a year when it was meant as a price: each is small, ' +
    'and each tells the listener that no person is speaking. The first systems stitched together recordings of ' +
    'single sounds, and their voices were clear but lifeless. Statistical models smoothed the joins and lost the ' +
    'clarity. Neural models changed both at once, learning from hours of speech how a sentence should move.\n\n' +
    'Speed mattered just as much. A voice that takes two seconds to begin is useless in a conversation, however ' +
    'natural it sounds, so the measure that counts is how soon the first sound arrives and whether the rest keeps ' +
    'ahead of the listener. On a graphics card a small model can produce a minute of audio in a second or two; on ' +
    'an ordinary processor the same model may need most of a minute, and under load it may fall behind entirely. ' +
    'That is why the numbers below are reported per device, and never under a label that the hardware did not earn.',
];

/**
 * Generated models: `realistic` compute as bench/inference-batching.ts (12 dense 768-wide layers); `tiny` for the
 * test that keeps this script working (numbers meaningless).
 */
const GENERATED_COMPUTE = { realistic: { layers: 12, hidden: 768 }, tiny: { layers: 1, hidden: 8 } } as const;

export interface Options {
  modelsDir?: string;
  generated: boolean;
  generatedSize: keyof typeof GENERATED_COMPUTE;
  engines: string[];
  voices: Record<string, string>;
  providers: string;
  baseline: string;
  concurrency: number[];
  requests: number;
  threads?: number;
  http: boolean;
  out?: string;
  quick: boolean;
}

const list = (s: string) => s.split(',').map((x) => x.trim()).filter(Boolean);

export function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      'models-dir': { type: 'string' },
      generated: { type: 'boolean', default: false },
      'generated-size': { type: 'string', default: 'realistic' },
      engines: { type: 'string', default: 'piper,kokoro' },
      voice: { type: 'string', multiple: true, default: [] },
      providers: { type: 'string', default: 'cuda,cpu' },
      baseline: { type: 'string', default: 'cpu' },
      concurrency: { type: 'string', default: '1,4,16' },
      requests: { type: 'string' },
      threads: { type: 'string' },
      http: { type: 'boolean', default: false },
      out: { type: 'string' },
      quick: { type: 'boolean', default: false },
    },
  });
  const engines = list(values.engines);
  const bad = engines.filter((e) => e !== 'piper' && e !== 'kokoro');
  if (bad.length || engines.length === 0) throw new Error(`--engines: piper and/or kokoro (got ${values.engines})`);
  if (!values.generated && !values['models-dir']) throw new Error('give --models-dir DIR (real models) or --generated');
  const voices: Record<string, string> = {};
  for (const v of values.voice) {
    const [engine, voice] = v.includes('=') ? (v.split(/=(.*)/s) as [string, string]) : [engines.length === 1 ? engines[0]! : '', v];
    if (!engines.includes(engine) || !voice) throw new Error(`--voice ${v}: expected <engine>=<voice> for one of ${engines.join(', ')}`);
    voices[engine] = voice;
  }
  const concurrency = list(values.concurrency).map(Number);
  if (concurrency.length === 0 || !concurrency.every((c) => Number.isInteger(c) && c >= 1 && c <= 256)) {
    throw new Error(`--concurrency: whole numbers 1…256 (got ${values.concurrency})`);
  }
  const generatedSize = values['generated-size'];
  if (generatedSize !== 'realistic' && generatedSize !== 'tiny') throw new Error(`--generated-size: realistic or tiny (got ${generatedSize})`);
  const quick = values.quick || process.env.BENCH_QUICK === '1';
  const requests = values.requests === undefined ? (quick ? 8 : 32) : Number(values.requests);
  if (!Number.isInteger(requests) || requests < 1) throw new Error(`--requests: a whole number ≥ 1 (got ${values.requests})`);
  const threads = values.threads === undefined ? undefined : Number(values.threads);
  if (threads !== undefined && (!Number.isInteger(threads) || threads < 0)) throw new Error(`--threads: a whole number ≥ 0 (got ${values.threads})`);
  return {
    modelsDir: values['models-dir'], generated: values.generated, generatedSize, engines, voices, providers: values.providers,
    baseline: values.baseline, concurrency, requests, threads, http: values.http, out: values.out, quick,
  };
}

export interface Row {
  method: 'engine' | 'http';
  engine: string;
  voice: string;
  /** EXECUTION_PROVIDERS of the run. */
  providers: string;
  /** Where the model actually ran. */
  device: 'cpu' | 'cuda';
  /** CUDA was asked for and the model ran on the CPU: these are CPU numbers. */
  cudaFallback: boolean;
  concurrency: number;
  requests: number;
  errors: number;
  firstAudioP50Ms: number;
  firstAudioP95Ms: number;
  totalP50Ms: number;
  totalP95Ms: number;
  rtfP50: number;
  rtfP95: number;
  /** Audio seconds produced per wall-clock second, all clients together. */
  audioSecondsPerSecond: number;
  /** Items per inference call (engine level; > 1 only where the model passes the batcher's exactness probe). */
  meanBatch?: number;
}

export interface RunInfo {
  method: 'engine' | 'http';
  providers: string;
  engine: string;
  device: 'cpu' | 'cuda';
  cudaFallback: boolean;
  /** The warning the worker gave for the fallback. */
  fallbackReason?: string;
  loadSeconds?: number;
  voice: string;
}

interface Sample {
  firstMs: number;
  totalMs: number;
  audioS: number;
  error?: string;
}

function summarizeLevel(base: Omit<Row, 'concurrency' | 'requests' | 'errors' | 'firstAudioP50Ms' | 'firstAudioP95Ms' | 'totalP50Ms' | 'totalP95Ms' | 'rtfP50' | 'rtfP95' | 'audioSecondsPerSecond'>,
  concurrency: number, samples: Sample[], wallMs: number): Row {
  const ok = samples.filter((s) => !s.error && s.audioS > 0);
  const first = ok.map((s) => s.firstMs);
  const total = ok.map((s) => s.totalMs);
  const rtf = ok.map((s) => s.totalMs / 1000 / s.audioS);
  return {
    ...base, concurrency, requests: samples.length, errors: samples.length - ok.length,
    firstAudioP50Ms: round(percentile(first, 50)), firstAudioP95Ms: round(percentile(first, 95)),
    totalP50Ms: round(percentile(total, 50)), totalP95Ms: round(percentile(total, 95)),
    rtfP50: round(percentile(rtf, 50), 4), rtfP95: round(percentile(rtf, 95), 4),
    audioSecondsPerSecond: round((ok.reduce((a, s) => a + s.audioS, 0) / wallMs) * 1000, 2),
  };
}

const deviceLabel = (r: { device: string; cudaFallback: boolean }) => (r.cudaFallback ? 'cpu (CUDA FALLBACK)' : r.device);

function announce(info: RunInfo) {
  const how = info.method === 'engine' ? 'in-process' : 'through the stack';
  if (info.cudaFallback) {
    console.log(`!! ${info.engine} (${how}): EXECUTION_PROVIDERS=${info.providers} asked for CUDA, but the model runs on the CPU` +
      `${info.fallbackReason ? `: ${info.fallbackReason}` : ''}. Its "${info.providers}" rows are CPU numbers.`);
  } else {
    console.log(`${info.engine} (${how}): EXECUTION_PROVIDERS=${info.providers} → device ${info.device}, voice ${info.voice}` +
      `${info.loadSeconds !== undefined ? `, loaded in ${info.loadSeconds} s` : ''}`);
  }
}

/** Per request: the worker's segments in order, time to the first PCM chunk and to the last, audio seconds. */
async function synthesizeOnce(engine: TtsEngine, speaker: Speaker, sampleRate: number, text: string): Promise<Sample> {
  const t0 = performance.now();
  let firstMs = Number.NaN;
  let bytes = 0;
  // One signal per request, as the worker has one per job. phonemize() spawns one espeak-ng per punctuation piece
  // at once, each adding an abort listener: a long segment passes Node's default warning limit of 10.
  const signal = AbortSignal.timeout(300_000);
  setMaxListeners(256, signal);
  try {
    for (const segment of segmentText(text)) {
      for await (const pcm of engine.synthesize({ text: segment, speaker, speed: 1 }, signal)) {
        if (bytes === 0 && pcm.length > 0) firstMs = performance.now() - t0;
        bytes += pcm.length;
      }
    }
  } catch (err) {
    return { firstMs, totalMs: performance.now() - t0, audioS: 0, error: (err as Error).message };
  }
  return { firstMs, totalMs: performance.now() - t0, audioS: bytes / 2 / sampleRate };
}

function batchStats(engine: TtsEngine, voice: string): { calls: number; items: number } {
  if (engine.id === 'piper') return (engine as PiperEngine).batcherFor(voice).stats;
  if (engine.id === 'kokoro') return (engine as KokoroEngine).batcher.stats;
  return { calls: 0, items: 0 };
}

const warmUpTexts = (opts: Options) => (opts.quick ? TEXTS.slice(0, 1) : TEXTS);
const requestsAt = (opts: Options, c: number) => Math.max(opts.requests, c);

/** (a) One provider set, in-process: each engine built by the worker's own config and factory. */
async function engineRuns(opts: Options, modelsDir: string, providers: string, infos: RunInfo[], rows: Row[]) {
  for (const id of opts.engines) {
    const warnings: string[] = [];
    resetCudaWarningForTests(); // one warning per engine load, not per process, so each fallback names its reason
    const config = loadWorkerConfig({
      ...process.env, ENGINES: id, MODELS_DIR: modelsDir, EXECUTION_PROVIDERS: providers,
      ...(opts.threads !== undefined ? { ORT_INTRA_OP_THREADS: String(opts.threads) } : {}),
    });
    const t0 = performance.now();
    const engines = await createEngines(config.engines, {
      modelsDir: config.modelsDir, executionProviders: config.executionProviders, intraOpThreads: config.intraOpThreads,
      inferenceBatchMax: config.inferenceBatchMax, inferenceBatchWaitMs: config.inferenceBatchWaitMs,
      bench: benchEngineOptionsFromEnv(process.env), warn: (m) => warnings.push(m),
    });
    const engine = engines.get(id)!;
    try {
      const loaded = engine.loaded!();
      const voice = opts.voices[id] ?? loaded.voices[0]!;
      const cudaFallback = config.executionProviders.includes('cuda') && loaded.device !== 'cuda';
      const info: RunInfo = {
        method: 'engine', providers, engine: id, device: loaded.device, cudaFallback, voice,
        loadSeconds: round((performance.now() - t0) / 1000, 2),
        ...(cudaFallback ? { fallbackReason: warnings.find((w) => /cuda/i.test(w)) ?? 'no reason given' } : {}),
      };
      infos.push(info);
      announce(info);
      const speaker: Speaker = { id: `${id}:${voice}`, name: voice, engine: id, voice, language: 'en' };
      const sampleRate = engine.sampleRateFor?.(speaker) ?? engine.sampleRate;
      // Warm-up: every text once (first CUDA runs pay for kernel selection and memory pools); --quick: the shortest.
      for (const text of warmUpTexts(opts)) {
        const s = await synthesizeOnce(engine, speaker, sampleRate, text);
        if (s.error) throw new Error(`${id} voice ${voice}: warm-up failed: ${s.error}`);
      }
      for (const c of opts.concurrency) {
        const before = { ...batchStats(engine, voice) };
        const { results, wallMs } = await closedLoop(c, requestsAt(opts, c), (i) => synthesizeOnce(engine, speaker, sampleRate, TEXTS[i % TEXTS.length]!));
        const after = batchStats(engine, voice);
        const row = summarizeLevel({ method: 'engine', engine: id, voice, providers, device: loaded.device, cudaFallback }, c, results, wallMs);
        row.meanBatch = round((after.items - before.items) / Math.max(1, after.calls - before.calls), 2);
        const err = results.find((r) => r.error);
        if (err) console.log(`${id} c=${c}: ${row.errors} request(s) failed, e.g. ${err.error}`);
        rows.push(row);
      }
    } finally {
      await engine.close?.();
    }
  }
}

/** (b) One provider set through a private stack: API + one worker process with EXECUTION_PROVIDERS set. */
async function httpRuns(opts: Options, modelsDir: string, providers: string, infos: RunInfo[], rows: Row[]) {
  const stack = await BenchStack.start({
    workers: 1,
    workerEnv: {
      ENGINES: opts.engines.join(','), MODELS_DIR: modelsDir, EXECUTION_PROVIDERS: providers, LOG_LEVEL: 'warn',
      WORKER_CONCURRENCY: String(Math.max(...opts.concurrency)),
      ...(opts.threads !== undefined ? { ORT_INTRA_OP_THREADS: String(opts.threads) } : {}),
    },
  });
  try {
    const [worker] = await liveWorkers(stack.redis, stack.keys);
    const fallbackLine = stack.workers[0]!.output().split('\n').find((l) => /CUDA provider is not usable/.test(l));
    const reason = fallbackLine ? ((JSON.parse(fallbackLine) as { msg?: string }).msg ?? fallbackLine) : undefined;
    for (const id of opts.engines) {
      const model = worker?.models?.find((m) => m.engine === id);
      if (!model) throw new Error(`the worker's heartbeat lists no ${id} model`);
      const voice = opts.voices[id] ?? model.voices[0]!;
      const cudaFallback = providers.split(',').includes('cuda') && model.device !== 'cuda';
      const info: RunInfo = { method: 'http', providers, engine: id, device: model.device, cudaFallback, voice, ...(cudaFallback ? { fallbackReason: reason ?? 'no reason logged' } : {}) };
      infos.push(info);
      announce(info);
      const request = async (text: string): Promise<Sample> => {
        const r = await speech(stack.baseUrl, { model: id, voice, input: text, response_format: 'pcm' }, { keepChunks: false, timeoutMs: 300_000 });
        const error = r.error ?? (r.status !== 200 ? `HTTP ${r.status}` : undefined);
        return { firstMs: r.ttfbMs, totalMs: r.totalMs, audioS: pcmSeconds(r.bytes), ...(error ? { error } : {}) };
      };
      for (const text of warmUpTexts(opts)) {
        const s = await request(text);
        if (s.error) throw new Error(`${id} voice ${voice} over HTTP: warm-up failed: ${s.error}`);
      }
      for (const c of opts.concurrency) {
        const { results, wallMs } = await closedLoop(c, requestsAt(opts, c), (i) => request(TEXTS[i % TEXTS.length]!));
        rows.push(summarizeLevel({ method: 'http', engine: id, voice, providers, device: model.device, cudaFallback }, c, results, wallMs));
      }
    }
  } finally {
    AGENT.destroy();
    await stack.stop();
  }
}

/** The GPU, where nvidia-smi is there to say (results from a GPU host should name it). */
function gpuInfo(): string | undefined {
  try {
    return execFileSync('nvidia-smi', ['--query-gpu=name,driver_version,memory.total', '--format=csv,noheader'], { encoding: 'utf8', timeout: 10_000 }).trim() || undefined;
  } catch {
    return undefined;
  }
}

export interface Comparison {
  method: 'engine' | 'http';
  engine: string;
  concurrency: number;
  /** RTF and first-audio p50 of the baseline divided by the tested run's; undefined when both ran on the CPU. */
  rtfSpeedup?: number;
  firstAudioSpeedup?: number;
  note?: string;
}

function compare(rows: Row[], opts: Options): Comparison[] {
  if (opts.baseline === 'none' || opts.baseline === opts.providers) return [];
  const out: Comparison[] = [];
  for (const tested of rows.filter((r) => r.providers === opts.providers)) {
    const base = rows.find((r) => r.providers === opts.baseline && r.method === tested.method && r.engine === tested.engine && r.concurrency === tested.concurrency);
    if (!base) continue;
    const c: Comparison = { method: tested.method, engine: tested.engine, concurrency: tested.concurrency };
    if (tested.device === base.device) {
      c.note = `both on ${tested.device}${tested.cudaFallback ? ' (CUDA fell back): no speed-up to report' : ''}`;
    } else {
      c.rtfSpeedup = round(base.rtfP50 / tested.rtfP50, 2);
      c.firstAudioSpeedup = round(base.firstAudioP50Ms / tested.firstAudioP50Ms, 2);
    }
    out.push(c);
  }
  return out;
}

export async function runNeuralRtf(argv: string[] = process.argv.slice(2)) {
  const opts = parseOptions(argv);
  markStart();
  const compute = GENERATED_COMPUTE[opts.generatedSize];
  const generated = opts.generated ? generateModelsDir(compute) : undefined;
  const modelsDir = generated?.dir ?? path.resolve(opts.modelsDir!);
  const providerSets = [...new Set([opts.providers, ...(opts.baseline === 'none' ? [] : [opts.baseline])])];
  const infos: RunInfo[] = [];
  const rows: Row[] = [];
  try {
    console.log(`models: ${generated ? `generated (${compute.layers} layers × ${compute.hidden}; not real voices)` : modelsDir}; ` +
      `texts of ${TEXTS.map((t) => t.length).join(' / ')} chars; concurrency ${opts.concurrency.join(', ')}; ` +
      `${opts.requests} requests per level (at least the concurrency); provider sets: ${providerSets.join(' | ')}`);
    for (const providers of providerSets) await engineRuns(opts, modelsDir, providers, infos, rows);
    if (opts.http) for (const providers of providerSets) await httpRuns(opts, modelsDir, providers, infos, rows);
  } finally {
    if (generated) rmSync(generated.dir, { recursive: true, force: true });
  }

  for (const method of ['engine', 'http'] as const) {
    const mine = rows.filter((r) => r.method === method);
    if (mine.length === 0) continue;
    printTable(method === 'engine'
      ? 'Neural synthesis, engine level in-process (ms; RTF = synthesis time / audio duration)'
      : 'Neural synthesis through the stack, raw pcm over HTTP (ms; first audio = time to first byte)',
    ['engine', 'voice', 'EXECUTION_PROVIDERS', 'ran on', 'c', 'n', 'first p50', 'first p95', 'total p50', 'total p95', 'RTF p50', 'RTF p95', 'audio s/s', ...(method === 'engine' ? ['batch'] : []), 'errors'],
    mine.map((r) => [r.engine, r.voice, r.providers, deviceLabel(r), r.concurrency, r.requests, r.firstAudioP50Ms, r.firstAudioP95Ms,
      r.totalP50Ms, r.totalP95Ms, r.rtfP50, r.rtfP95, r.audioSecondsPerSecond, ...(method === 'engine' ? [r.meanBatch] : []), r.errors]));
  }
  const comparison = compare(rows, opts);
  if (comparison.length) {
    printTable(`Speed-up of ${opts.providers} over ${opts.baseline} (p50 ratios, > 1: faster)`, ['method', 'engine', 'c', 'RTF', 'first audio', 'note'],
      comparison.map((c) => [c.method, c.engine, c.concurrency, c.rtfSpeedup, c.firstAudioSpeedup, c.note]));
  }
  const fallbacks = infos.filter((i) => i.cudaFallback);
  if (fallbacks.length) {
    console.log(`\n!! CUDA was NOT used for: ${[...new Set(fallbacks.map((f) => `${f.engine} (${f.method})`))].join(', ')}. ` +
      `Their "${opts.providers}" rows ran on the CPU. Reason: ${fallbacks[0]!.fallbackReason}`);
  }
  const data = {
    params: {
      models: generated ? `generated (${compute.layers}×${compute.hidden})` : modelsDir,
      engines: opts.engines, providers: opts.providers, baseline: opts.baseline, concurrency: opts.concurrency,
      requestsPerLevel: opts.requests, threads: opts.threads ?? 'worker default', http: opts.http,
      textChars: TEXTS.map((t) => t.length), gpu: gpuInfo() ?? null,
    },
    runs: infos, rows, comparison,
  };
  const name = opts.generated ? 'neural-rtf-generated' : 'neural-rtf';
  if (opts.out) {
    const file = path.resolve(opts.out);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, `${JSON.stringify({ benchmark: name, machine: machineInfo(), ...data }, null, 2)}\n`);
    console.log(`\nwrote ${file}`);
  } else {
    writeResults(name, data);
  }
  return data;
}

if (isMain(import.meta.url)) {
  try {
    await runNeuralRtf();
  } catch (err) {
    console.error(`neural-rtf: ${(err as Error).message}`);
    process.exitCode = 1;
  }
}
