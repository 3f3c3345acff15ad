import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { ChorusError, parseVoiceBlend, VoiceBlendError } from '@chorus/shared';
import { EngineError, type LoadedModel, type SynthesisInput, type TtsEngine } from './engine.ts';
import { plainText } from './plain-text.ts';
import { phonemize } from './onnx/phonemize.ts';
import { createSession, floatToPcm16, requireSignature, type Device, type OnnxOptions, type OnnxSession } from './onnx/session.ts';
import { InferenceBatcher, type BatchItem } from './onnx/batcher.ts';

const SAMPLE_RATE = 24_000;
const STYLE_ROWS = 510;
const STYLE_DIM = 256;
/** Phoneme tokens per inference call (the model's context is 512 with the two pads). */
export const KOKORO_MAX_TOKENS = 510;
const CHUNK_SAMPLES = 8192;
const MODEL_FILE = path.join('onnx', 'model.onnx');

/** Kokoro's voice-name prefix → espeak-ng language (a = American English, b = British, e = Spanish, …). */
const LANGUAGES: Record<string, string> = {
  a: 'en-us', b: 'en-gb', e: 'es', f: 'fr-fr', h: 'hi', i: 'it', p: 'pt-br', j: 'ja', z: 'cmn',
};

/**
 * Kokoro-82M from the ONNX folder as published (onnx-community/Kokoro-82M-v1.0-ONNX) in MODELS_DIR/kokoro:
 * `onnx/model.onnx`, the vocabulary from `config.json` (`vocab`) or `tokenizer.json` (`model.vocab`), and voice
 * style files `voices/<voice>.bin` (510×256 float32). Voice names may be blends (`af_bella(2)+af_sky(1)`).
 */
export class KokoroEngine implements TtsEngine {
  readonly id = 'kokoro';
  readonly sampleRate = SAMPLE_RATE;
  readonly speedRange = [0.5, 2] as const;
  readonly #dir: string;
  readonly #opts: OnnxOptions;
  #session: OnnxSession | undefined;
  #batcher: InferenceBatcher | undefined;
  #device: Device = 'cpu';
  #vocab = new Map<string, number>();
  readonly #voices = new Map<string, Float32Array>();

  constructor(modelsDir: string, opts: OnnxOptions) {
    this.#dir = path.join(modelsDir, 'kokoro');
    this.#opts = opts;
  }

  async init(): Promise<void> {
    this.#vocab = await readVocab(this.#dir);
    const voicesDir = path.join(this.#dir, 'voices');
    let files: string[];
    try {
      files = (await readdir(voicesDir)).filter((f) => f.endsWith('.bin')).sort();
    } catch {
      throw new EngineError(`${voicesDir}: no such folder (Kokoro voices/<voice>.bin)`);
    }
    if (files.length === 0) throw new EngineError(`${voicesDir}: no voice files (<voice>.bin)`);
    for (const f of files) {
      const file = path.join(voicesDir, f);
      const bytes = await readFile(file);
      if (bytes.length !== STYLE_ROWS * STYLE_DIM * 4) {
        throw new EngineError(`${file}: ${bytes.length} bytes, expected ${STYLE_ROWS * STYLE_DIM * 4} (510×256 float32)`);
      }
      const data = new Float32Array(STYLE_ROWS * STYLE_DIM);
      new Uint8Array(data.buffer).set(bytes);
      if (!data.every(Number.isFinite)) throw new EngineError(`${file}: holds values that are not finite numbers`);
      this.#voices.set(f.slice(0, -4), data);
    }
    const file = path.join(this.#dir, MODEL_FILE);
    const { session, device } = await createSession(file, this.#opts);
    requireSignature(file, session, 'Kokoro', ['input_ids', 'style', 'speed'], ['waveform']);
    this.#session = session;
    this.#device = device;
    this.#batcher = new InferenceBatcher(session, 'waveform', { max: this.#opts.batchMax, waitMs: this.#opts.batchWaitMs });
    const first = [...this.#voices.keys()][0]!;
    const ids = [...this.#vocab.values()];
    const probe = (k: number) => this.#item(Array.from({ length: 9 }, (_, i) => ids[(i * k + k) % ids.length]!), first, 1);
    await this.#batcher.probe(probe(1), probe(2));
  }

  loaded(): LoadedModel {
    return { engine: this.id, device: this.#device, voices: [...this.#voices.keys()] };
  }

  get batcher(): InferenceBatcher {
    return this.#batcher!;
  }

  /** The style vector used for `voice` (a name or blend) and `tokens` phoneme tokens: the weighted mix of rows. */
  styleVector(voice: string, tokens: number): Float32Array {
    let parts;
    try {
      parts = parseVoiceBlend(voice, (v) => this.#voices.has(v));
    } catch (err) {
      // The client's voice is wrong (not loaded here): a 400, no retry.
      if (err instanceof VoiceBlendError) throw new ChorusError('TTS_ERR_VOICE_UNKNOWN', `Kokoro voice: ${err.message}`, { param: 'voice' });
      throw err;
    }
    const row = Math.min(Math.max(tokens, 0), STYLE_ROWS - 1);
    const out = new Float32Array(STYLE_DIM);
    for (const { voice: name, weight } of parts) {
      const data = this.#voices.get(name)!;
      for (let c = 0; c < STYLE_DIM; c++) out[c]! += weight * data[row * STYLE_DIM + c]!;
    }
    return out;
  }

  /** IPA → ids through the vocabulary (unknown symbols dropped), cut at word boundaries into ≤510-token pieces. */
  tokenize(phonemes: string): number[][] {
    const pieces: number[][] = [];
    let current: number[] = [];
    for (const word of phonemes.split(/(?<= )/)) {
      const ids = [...word].map((s) => this.#vocab.get(s)).filter((id): id is number => id !== undefined);
      if (current.length + ids.length > KOKORO_MAX_TOKENS && current.length > 0) {
        pieces.push(current);
        current = [];
      }
      // A single "word" over the limit (no spaces) is cut where the limit falls.
      while (ids.length > KOKORO_MAX_TOKENS) pieces.push(ids.splice(0, KOKORO_MAX_TOKENS));
      current.push(...ids);
    }
    if (current.length > 0) pieces.push(current);
    return pieces;
  }

  #item(tokens: number[], voice: string, speed: number): BatchItem {
    const ids = [0, ...tokens, 0];
    // Style row = voice[min(max(T-2, 0), 509)], T = ids with both pads.
    const style = this.styleVector(voice, ids.length - 2);
    return {
      key: `${ids.length}|${speed}`,
      perItem: {
        input_ids: { type: 'int64', data: BigInt64Array.from(ids.map(BigInt)), dims: [ids.length] },
        style: { type: 'float32', data: style, dims: [STYLE_DIM] },
        speed: { type: 'float32', data: Float32Array.of(speed), dims: [] },
      },
      shared: {},
    };
  }

  async *synthesize(input: SynthesisInput, signal: AbortSignal): AsyncIterable<Buffer> {
    signal.throwIfAborted();
    const voice = input.speaker.voice ?? [...this.#voices.keys()][0]!;
    this.styleVector(voice, 0); // unknown voice: fail before phonemising
    const language = LANGUAGES[voice[0]!.toLowerCase()] ?? 'en-us';
    const phonemes = await phonemize(plainText(input.text).trim(), language, signal);
    for (const tokens of this.tokenize(phonemes)) {
      const audio = await this.#batcher!.run(this.#item(tokens, voice, input.speed));
      signal.throwIfAborted();
      for (let i = 0; i < audio.length; i += CHUNK_SAMPLES) yield floatToPcm16(audio.subarray(i, i + CHUNK_SAMPLES));
    }
  }

  async close(): Promise<void> {
    await this.#session?.release();
    this.#session = undefined;
  }
}

async function readVocab(dir: string): Promise<Map<string, number>> {
  const candidates: [string, (j: Record<string, unknown>) => unknown][] = [
    [path.join(dir, 'config.json'), (j) => j.vocab],
    [path.join(dir, 'tokenizer.json'), (j) => (j.model as Record<string, unknown> | undefined)?.vocab],
  ];
  const problems: string[] = [];
  for (const [file, pick] of candidates) {
    let raw: string;
    try {
      raw = await readFile(file, 'utf8');
    } catch {
      problems.push(`${file}: missing`);
      continue;
    }
    let vocab: unknown;
    try {
      vocab = pick(JSON.parse(raw) as Record<string, unknown>);
    } catch (err) {
      throw new EngineError(`${file}: not valid JSON (${(err as Error).message})`);
    }
    if (vocab === undefined) {
      problems.push(`${file}: has no vocab`);
      continue;
    }
    if (!vocab || typeof vocab !== 'object' || Object.keys(vocab).length === 0) throw new EngineError(`${file}: vocab is not a symbol → id map`);
    const map = new Map<string, number>();
    for (const [s, id] of Object.entries(vocab)) {
      if (!Number.isInteger(id) || (id as number) < 0) throw new EngineError(`${file}: vocab["${s}"] is not an id`);
      map.set(s, id as number);
    }
    return map;
  }
  throw new EngineError(`Kokoro vocabulary not found (${problems.join('; ')})`);
}
