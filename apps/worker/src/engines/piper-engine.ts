import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { ChorusError, type Speaker } from '@chorus/shared';
import { EngineError, type LoadedModel, type SynthesisInput, type TtsEngine } from './engine.ts';
import { plainText } from './plain-text.ts';
import { phonemize } from './onnx/phonemize.ts';
import { createSession, floatToPcm16, requireSignature, type Device, type OnnxOptions, type OnnxSession } from './onnx/session.ts';
import { InferenceBatcher, type BatchItem } from './onnx/batcher.ts';

const CHUNK_SAMPLES = 8192;

interface PiperVoice {
  name: string;
  file: string;
  sampleRate: number;
  espeakVoice: string;
  idMap: Map<string, number[]>;
  noiseScale: number;
  lengthScale: number;
  noiseW: number;
  speakers: Map<string, number>;
  multiSpeaker: boolean;
  device: Device;
  batcher: InferenceBatcher;
  session: OnnxSession;
}

/**
 * Piper (VITS) voices from MODELS_DIR/piper: every `<voice>.onnx` + `<voice>.onnx.json` pair. Text → espeak-ng IPA
 * (onnx/phonemize.ts) → ids through the voice's own phoneme_id_map → inference → PCM at the voice's sample rate.
 * Speaker voice names: `<voice>`, or `<voice>/<speaker>` for a multi-speaker voice.
 */
export class PiperEngine implements TtsEngine {
  readonly id = 'piper';
  /** The commonest Piper rate; each voice's own is given by sampleRateFor. */
  readonly sampleRate = 22_050;
  /** length_scale / speed; beyond this the pipeline time-stretches (VITS durations get odd past ~2×). */
  readonly speedRange = [0.5, 2] as const;
  readonly #dir: string;
  readonly #opts: OnnxOptions;
  readonly #voices = new Map<string, PiperVoice>();

  constructor(modelsDir: string, opts: OnnxOptions) {
    this.#dir = path.join(modelsDir, 'piper');
    this.#opts = opts;
  }

  async init(): Promise<void> {
    let files: string[];
    try {
      files = (await readdir(this.#dir)).sort();
    } catch {
      throw new EngineError(`${this.#dir}: no such folder (ENGINES includes piper; run chorus models pull <voice>)`);
    }
    const models = files.filter((f) => f.endsWith('.onnx'));
    for (const f of files.filter((f) => f.endsWith('.onnx.json'))) {
      if (!files.includes(f.slice(0, -5))) throw new EngineError(`${path.join(this.#dir, f.slice(0, -5))}: model file missing (its config is there)`);
    }
    if (models.length === 0) throw new EngineError(`${this.#dir}: no Piper voices (<voice>.onnx + <voice>.onnx.json)`);
    for (const f of models) await this.#load(f.slice(0, -5));
  }

  async #load(name: string) {
    const file = path.join(this.#dir, `${name}.onnx`);
    const configFile = `${file}.json`;
    const c = await readConfig(configFile);
    const { session, device } = await createSession(file, this.#opts);
    const multiSpeaker = c.numSpeakers > 1;
    requireSignature(file, session, 'Piper', ['input', 'input_lengths', 'scales', ...(multiSpeaker ? ['sid'] : [])], ['output']);
    const batcher = new InferenceBatcher(session, 'output', { max: this.#opts.batchMax, waitMs: this.#opts.batchWaitMs });
    const voice: PiperVoice = { ...c, name, file, device, session, batcher, multiSpeaker };
    this.#voices.set(name, voice);
    // Two different items of equal length for the exactness probe (see onnx/batcher.ts).
    const ids = [...voice.idMap.values()].map((v) => v[0]!);
    const probe = (k: number) => this.#item(voice, Array.from({ length: 9 }, (_, i) => ids[(i * k + k) % ids.length]!), 1, 0);
    await batcher.probe(probe(1), probe(2));
  }

  sampleRateFor(speaker: Speaker): number {
    return this.#resolve(speaker.voice).voice.sampleRate;
  }

  loaded(): LoadedModel {
    const voices = [...this.#voices.values()].flatMap((v) => [v.name, ...[...v.speakers.keys()].map((s) => `${v.name}/${s}`)]);
    const devices = new Set([...this.#voices.values()].map((v) => v.device));
    return { engine: this.id, device: devices.has('cuda') ? 'cuda' : 'cpu', voices };
  }

  /** Whether a voice batches (tests, benchmark). */
  batcherFor(voice: string): InferenceBatcher {
    return this.#resolve(voice).voice.batcher;
  }

  #resolve(name: string | undefined): { voice: PiperVoice; sid: number } {
    const [base, speaker] = (name ?? [...this.#voices.keys()][0]!).split('/') as [string, string | undefined];
    const voice = this.#voices.get(base);
    // The client's voice, not the engine, is wrong (a worker whose MODELS_DIR lacks it took the job): a 400, no retry.
    if (!voice) throw new ChorusError('TTS_ERR_VOICE_UNKNOWN', `unknown Piper voice "${base}" (not loaded by the worker that took the request)`, { param: 'voice' });
    if (speaker === undefined) return { voice, sid: 0 };
    const sid = voice.speakers.get(speaker);
    if (sid === undefined) throw new ChorusError('TTS_ERR_VOICE_UNKNOWN', `Piper voice ${base} has no speaker "${speaker}"`, { param: 'voice' });
    return { voice, sid };
  }

  /** IPA → ids: `^`, then each symbol's ids followed by the pad `_`, then `$`; symbols the voice lacks are dropped. */
  static ids(idMap: Map<string, number[]>, phonemes: string): number[] {
    const pad = idMap.get('_') ?? [0];
    const ids = [...(idMap.get('^') ?? []), ...pad];
    for (const symbol of phonemes) {
      const id = idMap.get(symbol);
      if (id) ids.push(...id, ...pad);
    }
    ids.push(...(idMap.get('$') ?? []));
    return ids;
  }

  #item(voice: PiperVoice, ids: number[], speed: number, sid: number): BatchItem {
    const scales = [voice.noiseScale, voice.lengthScale / speed, voice.noiseW];
    return {
      key: `${ids.length}|${scales.join(',')}`,
      perItem: {
        input: { type: 'int64', data: BigInt64Array.from(ids.map(BigInt)), dims: [ids.length] },
        input_lengths: { type: 'int64', data: BigInt64Array.of(BigInt(ids.length)), dims: [] },
        ...(voice.multiSpeaker ? { sid: { type: 'int64' as const, data: BigInt64Array.of(BigInt(sid)), dims: [] } } : {}),
      },
      shared: { scales: { type: 'float32', data: Float32Array.from(scales), dims: [3] } },
    };
  }

  async *synthesize(input: SynthesisInput, signal: AbortSignal): AsyncIterable<Buffer> {
    signal.throwIfAborted();
    const { voice, sid } = this.#resolve(input.speaker.voice);
    const phonemes = await phonemize(plainText(input.text).trim(), voice.espeakVoice, signal);
    const ids = PiperEngine.ids(voice.idMap, phonemes);
    if (ids.length <= 3) return; // nothing speakable
    const audio = await voice.batcher.run(this.#item(voice, ids, input.speed, sid));
    signal.throwIfAborted();
    for (let i = 0; i < audio.length; i += CHUNK_SAMPLES) yield floatToPcm16(audio.subarray(i, i + CHUNK_SAMPLES));
  }

  async close(): Promise<void> {
    for (const v of this.#voices.values()) await v.session.release();
    this.#voices.clear();
  }
}

async function readConfig(file: string) {
  let raw: string;
  try {
    raw = await readFile(file, 'utf8');
  } catch {
    throw new EngineError(`${file}: voice config missing`);
  }
  let c: Record<string, unknown>;
  try {
    c = JSON.parse(raw) as Record<string, unknown>;
  } catch (err) {
    throw new EngineError(`${file}: not valid JSON (${(err as Error).message})`);
  }
  const bad = (what: string) => new EngineError(`${file}: ${what}`);
  const audio = c.audio as { sample_rate?: unknown } | undefined;
  const sampleRate = audio?.sample_rate;
  if (typeof sampleRate !== 'number' || !Number.isInteger(sampleRate) || sampleRate < 8000 || sampleRate > 48_000) {
    throw bad('audio.sample_rate missing or not a sample rate');
  }
  const map = c.phoneme_id_map as Record<string, unknown> | undefined;
  if (!map || typeof map !== 'object' || Object.keys(map).length === 0) throw bad('phoneme_id_map missing or empty');
  const idMap = new Map<string, number[]>();
  for (const [symbol, ids] of Object.entries(map)) {
    if (!Array.isArray(ids) || !ids.every((i) => Number.isInteger(i) && i >= 0)) throw bad(`phoneme_id_map["${symbol}"] is not a list of ids`);
    idMap.set(symbol, ids as number[]);
  }
  const inference = (c.inference ?? {}) as Record<string, unknown>;
  const num = (v: unknown, fallback: number, name: string) => {
    if (v === undefined) return fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw bad(`inference.${name} is not a number`);
    return v;
  };
  const espeak = (c.espeak ?? {}) as { voice?: unknown };
  const espeakVoice = typeof espeak.voice === 'string' ? espeak.voice : 'en-us';
  if (!/^[A-Za-z0-9_-]{1,40}$/.test(espeakVoice)) throw bad(`espeak.voice "${espeakVoice}" is not an espeak-ng voice name`);
  const numSpeakers = c.num_speakers === undefined ? 1 : c.num_speakers;
  if (typeof numSpeakers !== 'number' || !Number.isInteger(numSpeakers) || numSpeakers < 1) throw bad('num_speakers is not a positive whole number');
  const speakers = new Map<string, number>();
  for (const [name, id] of Object.entries((c.speaker_id_map ?? {}) as Record<string, unknown>)) {
    if (!Number.isInteger(id) || (id as number) < 0 || (id as number) >= numSpeakers) throw bad(`speaker_id_map["${name}"] is not a speaker id below num_speakers`);
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(name)) continue; // not addressable as a voice name (the job schema refuses it)
    speakers.set(name, id as number);
  }
  return {
    sampleRate, idMap, espeakVoice, numSpeakers, speakers,
    noiseScale: num(inference.noise_scale, 0.667, 'noise_scale'),
    lengthScale: num(inference.length_scale, 1, 'length_scale'),
    noiseW: num(inference.noise_w, 0.8, 'noise_w'),
  };
}
