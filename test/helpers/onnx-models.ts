import { mkdirSync, writeFileSync, mkdtempSync, readFileSync, rmSync, truncateSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import onnxProto from 'onnx-proto';

/*
 * Tiny ONNX models with exactly the published Piper and Kokoro input/output signatures (NOTES.md "Engines"), plus
 * real-format config, vocab and voice files, written into a MODELS_DIR laid out as `chorus models pull` does.
 * Real weights cannot be downloaded here; these models make deterministic audio whose length follows the token
 * count and the length scale / speed, and whose content follows the ids, `sid` and the style row — enough to test
 * the real loading, phonemising, batching and inference code. `layers`/`hidden` add realistic compute (bench/).
 *
 * Piper:  input int64 [batch,T], input_lengths int64 [batch], scales float32 [3], (sid int64 [batch])
 *         → output float32 [batch,1,1,N], N = round(T × HOP × length_scale)
 * Kokoro: input_ids int64 [batch,T], style float32 [batch,256], speed float32 [batch]
 *         → waveform float32 [batch,N], N = round(T × HOP / speed[0])
 */

const { onnx } = onnxProto;
const FLOAT = onnx.TensorProto.DataType.FLOAT;
const INT64 = onnx.TensorProto.DataType.INT64;
export const PIPER_HOP = 256;
export const KOKORO_HOP = 300;
const VOCAB_SIZE = 256;

type Dim = number | string;
const valueInfo = (name: string, elemType: number, dims: Dim[]) => ({
  name,
  type: { tensorType: { elemType, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
});

class Graph {
  nodes: onnxProto.onnx.INodeProto[] = [];
  initializers: onnxProto.onnx.ITensorProto[] = [];
  #n = 0;
  #rand = 12345;

  op(opType: string, inputs: string[], attrs: onnxProto.onnx.IAttributeProto[] = []): string {
    const out = `${opType.toLowerCase()}_${this.#n++}`;
    this.nodes.push({ opType, input: inputs, output: [out], attribute: attrs });
    return out;
  }
  floats(values: number[] | Float32Array, dims: number[]): string {
    const name = `c_${this.#n++}`;
    const data = Float32Array.from(values);
    this.initializers.push({ name, dataType: FLOAT, dims, rawData: new Uint8Array(data.buffer) });
    return name;
  }
  ints(values: number[], dims: number[]): string {
    const name = `c_${this.#n++}`;
    const data = BigInt64Array.from(values.map(BigInt));
    this.initializers.push({ name, dataType: INT64, dims, rawData: new Uint8Array(data.buffer) });
    return name;
  }
  /** Deterministic pseudo-random weights (no Math.random: the same model every time). */
  random(n: number, scale: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      this.#rand = (this.#rand * 1103515245 + 12345) & 0x7fffffff;
      out[i] = ((this.#rand / 0x7fffffff) * 2 - 1) * scale;
    }
    return out;
  }
}
const ints = (name: string, values: number[]) => ({ name, type: onnx.AttributeProto.AttributeType.INTS, ints: values });
const int = (name: string, value: number) => ({ name, type: onnx.AttributeProto.AttributeType.INT, i: value });

export interface ComputeOptions {
  /** Dense tanh layers over the token embeddings (0 = almost no compute). */
  layers?: number;
  hidden?: number;
}

/**
 * Shared body: [B,T] ids → per-item frequency [B,1] (from the embedded ids through `layers` dense layers) and the
 * sample count N = round(T × hop × scale). `extraFreq` ([B,1]) adds sid/style dependence.
 */
function body(g: Graph, ids: string, scale: string, hop: number, extraFreq: string, compute: ComputeOptions) {
  const hidden = compute.hidden ?? 8;
  const T = g.op('Gather', [g.op('Shape', [ids]), g.ints([1], [])], [int('axis', 0)]);
  const n = g.op('Cast', [g.op('Round', [g.op('Mul', [g.op('Mul', [g.op('Cast', [T], [int('to', FLOAT)]), g.floats([hop], [])]), scale])])], [int('to', INT64)]);
  const t = g.op('Cast', [g.op('Range', [g.ints([0], []), n, g.ints([1], [])])], [int('to', FLOAT)]); // [N]
  let h = g.op('Gather', [g.floats(g.random(VOCAB_SIZE * hidden, 1), [VOCAB_SIZE, hidden]), ids], [int('axis', 0)]); // [B,T,H]
  for (let l = 0; l < (compute.layers ?? 1); l++) {
    h = g.op('Tanh', [g.op('MatMul', [h, g.floats(g.random(hidden * hidden, 1.5 / Math.sqrt(hidden)), [hidden, hidden])])]);
  }
  // Mean over tokens and features → [B,1]; the ids decide the pitch, so every token matters.
  const m = g.op('ReduceMean', [h], [ints('axes', [1, 2]), int('keepdims', 0)]); // [B]
  const m1 = g.op('Unsqueeze', [m, g.ints([1], [1])]); // [B,1]
  const freq = g.op('Add', [g.op('Add', [g.op('Mul', [m1, g.floats([0.02], [])]), g.floats([0.03], [])]), extraFreq]); // cycles/sample
  const phase = g.op('Mul', [g.op('Unsqueeze', [t, g.ints([0], [1])]), freq]); // [B,N]
  return g.op('Sin', [g.op('Mul', [phase, g.floats([2 * Math.PI], [])])]);
}

function model(g: Graph, inputs: ReturnType<typeof valueInfo>[], outputs: ReturnType<typeof valueInfo>[]): Uint8Array {
  return onnx.ModelProto.encode({
    irVersion: 7,
    producerName: 'chorus-test',
    opsetImport: [{ domain: '', version: 13 }],
    graph: { name: 'g', node: g.nodes, initializer: g.initializers, input: inputs, output: outputs },
  }).finish();
}

/**
 * `noise`: add unseeded RandomNormalLike noise scaled by noise_scale, as real Piper (VITS) graphs sample it — such a
 * model is not deterministic, and the batcher's exactness probe must refuse it.
 */
export function piperModel(opts: { multiSpeaker?: boolean; noise?: boolean } & ComputeOptions = {}): Uint8Array {
  const g = new Graph();
  const lengthScale = g.op('Gather', ['scales', g.ints([1], [])], [int('axis', 0)]);
  const noiseScale = g.op('Gather', ['scales', g.ints([0], [])], [int('axis', 0)]);
  // input_lengths is part of the signature; the tiny model reads it only to scale the amplitude by T/len (= 1).
  const lenRatio = g.op('Div', [
    g.op('Cast', [g.op('Gather', [g.op('Shape', ['input']), g.ints([1], [])], [int('axis', 0)])], [int('to', FLOAT)]),
    g.op('Cast', [g.op('Unsqueeze', ['input_lengths', g.ints([1], [1])])], [int('to', FLOAT)]),
  ]); // [B,1]
  const extra = opts.multiSpeaker
    ? g.op('Mul', [g.op('Cast', [g.op('Unsqueeze', ['sid', g.ints([1], [1])])], [int('to', FLOAT)]), g.floats([0.01], [])])
    : g.floats([0], []);
  const wave = body(g, 'input', lengthScale, PIPER_HOP, extra, opts);
  const amp = g.op('Mul', [g.op('Mul', [noiseScale, g.floats([0.6], [])]), lenRatio]);
  let audio = g.op('Mul', [wave, amp]);
  if (opts.noise) audio = g.op('Add', [audio, g.op('Mul', [g.op('RandomNormalLike', [audio], [{ name: 'scale', type: onnx.AttributeProto.AttributeType.FLOAT, f: 0.01 }]), noiseScale])]);
  const out = g.op('Unsqueeze', [audio, g.ints([1, 2], [2])]);
  g.nodes.push({ opType: 'Identity', input: [out], output: ['output'] });
  const inputs = [
    valueInfo('input', INT64, ['batch_size', 'phonemes']),
    valueInfo('input_lengths', INT64, ['batch_size']),
    valueInfo('scales', FLOAT, [3]),
    ...(opts.multiSpeaker ? [valueInfo('sid', INT64, ['batch_size'])] : []),
  ];
  return model(g, inputs, [valueInfo('output', FLOAT, ['batch_size', 1, 1, 'time'])]);
}

export function kokoroModel(opts: ComputeOptions = {}): Uint8Array {
  const g = new Graph();
  const inv = g.op('Reciprocal', [g.op('Gather', ['speed', g.ints([0], [])], [int('axis', 0)])]);
  // The style vector moves the pitch: its mean, weighted.
  const styleFreq = g.op('Mul', [g.op('ReduceMean', ['style'], [ints('axes', [1]), int('keepdims', 1)]), g.floats([0.05], [])]);
  const wave = body(g, 'input_ids', inv, KOKORO_HOP, styleFreq, opts);
  g.nodes.push({ opType: 'Mul', input: [wave, g.floats([0.5], [])], output: ['waveform'] });
  return model(
    g,
    [valueInfo('input_ids', INT64, ['batch_size', 'sequence_length']), valueInfo('style', FLOAT, ['batch_size', 256]), valueInfo('speed', FLOAT, ['batch_size'])],
    [valueInfo('waveform', FLOAT, ['batch_size', 'num_samples'])],
  );
}

/** IPA symbols espeak-ng emits for English (plus stress, length and punctuation), as Piper/Kokoro vocabularies hold them. */
export const IPA_SYMBOLS = [
  ...' !\'(),-.:;?'.split(''),
  ...'abcdefghijklmnopqrstuvwxyz'.split(''),
  ...'æçðøħŋœǀǁǂǃɐɑɒɓɔɕɖɗɘəɚɛɜɝɞɟɠɡɢɣɤɥɦɧɨɪɫɬɭɮɯɰɱɲɳɴɵɶɸɹɺɻɽɾʀʁʂʃʄʈʉʊʋʌʍʎʏʐʑʒʔʕʘʙʛʜʝʟʡʢʲˈˌːˑ˞βθχᵻⱱ'.split(''),
  '\u0303', // combining tilde (nasal vowels)
];

/** A Piper voice config as published (`<voice>.onnx.json`), trimmed to what engines read. */
export function piperConfig(opts: { sampleRate: number; espeakVoice?: string; speakers?: string[] }) {
  const map: Record<string, number[]> = { _: [0], '^': [1], $: [2] };
  IPA_SYMBOLS.forEach((s, i) => (map[s] = [3 + i]));
  const speakers = opts.speakers ?? [];
  return {
    audio: { sample_rate: opts.sampleRate, quality: 'medium' },
    espeak: { voice: opts.espeakVoice ?? 'en-us' },
    inference: { noise_scale: 0.667, length_scale: 1, noise_w: 0.8 },
    phoneme_type: 'espeak',
    phoneme_map: {},
    phoneme_id_map: map,
    num_symbols: 256,
    num_speakers: Math.max(1, speakers.length),
    speaker_id_map: Object.fromEntries(speakers.map((s, i) => [s, i])),
    piper_version: '1.0.0',
  };
}

/** A Kokoro voice file: 510 rows × 256 float32; each row differs (the row chosen by token count matters). */
export function kokoroVoice(seed: number): Buffer {
  const data = new Float32Array(510 * 256);
  for (let r = 0; r < 510; r++) for (let c = 0; c < 256; c++) data[r * 256 + c] = Math.sin(seed * 1.7 + r * 0.05 + c * 0.01) * 0.5 + seed * 0.1;
  return Buffer.from(data.buffer);
}

export interface GeneratedModels {
  dir: string;
  piperVoices: string[];
  kokoroVoices: string[];
}

/**
 * A MODELS_DIR with Piper voices `en_US-test-medium` (22,050 Hz), `en_US-test-low` (16 kHz), the multi-speaker
 * `en_US-multi-medium` (speakers `alice`, `bob`), and a Kokoro folder with voices af_bella, af_sky, bf_emma.
 */
export function generateModelsDir(opts: ComputeOptions & { dir?: string } = {}): GeneratedModels {
  const dir = opts.dir ?? mkdtempSync(path.join(tmpdir(), 'chorus-models-'));
  const piper = path.join(dir, 'piper');
  mkdirSync(piper, { recursive: true });
  const voices: [string, Uint8Array, object][] = [
    ['en_US-test-medium', piperModel(opts), piperConfig({ sampleRate: 22_050 })],
    ['en_US-test-low', piperModel(opts), piperConfig({ sampleRate: 16_000 })],
    ['en_US-multi-medium', piperModel({ ...opts, multiSpeaker: true }), piperConfig({ sampleRate: 22_050, speakers: ['alice', 'bob'] })],
  ];
  for (const [name, onnxBytes, config] of voices) {
    writeFileSync(path.join(piper, `${name}.onnx`), onnxBytes);
    writeFileSync(path.join(piper, `${name}.onnx.json`), JSON.stringify(config, null, 2));
  }
  const kokoro = path.join(dir, 'kokoro');
  mkdirSync(path.join(kokoro, 'onnx'), { recursive: true });
  mkdirSync(path.join(kokoro, 'voices'), { recursive: true });
  writeFileSync(path.join(kokoro, 'onnx', 'model.onnx'), kokoroModel(opts));
  const vocab: Record<string, number> = { $: 0 };
  IPA_SYMBOLS.forEach((s, i) => (vocab[s] = 1 + i));
  writeFileSync(path.join(kokoro, 'config.json'), JSON.stringify({ model_type: 'style_text_to_speech_2', vocab }, null, 2));
  const kokoroVoices = ['af_bella', 'af_sky', 'bf_emma'];
  kokoroVoices.forEach((v, i) => writeFileSync(path.join(kokoro, 'voices', `${v}.bin`), kokoroVoice(i + 1)));
  return { dir, piperVoices: ['en_US-test-medium', 'en_US-test-low', 'en_US-multi-medium', 'en_US-multi-medium/alice', 'en_US-multi-medium/bob'], kokoroVoices };
}

/**
 * Ways to break a generated MODELS_DIR: [engine, what, break it (returns the file now wrong), the message expected].
 */
export const BREAKAGES: [engine: 'piper' | 'kokoro', what: string, breakIt: (dir: string) => string, message: RegExp][] = [
  ['piper', 'no piper folder', (d) => (rmSync(path.join(d, 'piper'), { recursive: true }), path.join(d, 'piper')), /no such folder/],
  ['piper', 'voice config missing', (d) => { const f = path.join(d, 'piper', 'en_US-test-low.onnx.json'); unlinkSync(f); return f; }, /voice config missing/],
  ['piper', 'voice config not JSON', (d) => { const f = path.join(d, 'piper', 'en_US-test-low.onnx.json'); writeFileSync(f, '{"audio": '); return f; }, /not valid JSON/],
  ['piper', 'voice config without phoneme_id_map', (d) => {
    const f = path.join(d, 'piper', 'en_US-test-medium.onnx.json');
    const c = JSON.parse(readFileSync(f, 'utf8')) as Record<string, unknown>;
    delete c.phoneme_id_map;
    writeFileSync(f, JSON.stringify(c));
    return f;
  }, /phoneme_id_map missing/],
  ['piper', 'model not ONNX', (d) => { const f = path.join(d, 'piper', 'en_US-multi-medium.onnx'); writeFileSync(f, 'not a model'); return f; }, /not a loadable ONNX model/],
  ['piper', 'model file missing', (d) => { const f = path.join(d, 'piper', 'en_US-test-low.onnx'); unlinkSync(f); return f; }, /model file missing/],
  ['kokoro', 'voice file truncated', (d) => { const f = path.join(d, 'kokoro', 'voices', 'af_sky.bin'); truncateSync(f, 1000); return f; }, /1000 bytes, expected 522240/],
  ['kokoro', 'model missing', (d) => { const f = path.join(d, 'kokoro', 'onnx', 'model.onnx'); unlinkSync(f); return f; }, /model file missing/],
  ['kokoro', 'model not ONNX', (d) => { const f = path.join(d, 'kokoro', 'onnx', 'model.onnx'); writeFileSync(f, Buffer.alloc(64, 7)); return f; }, /not a loadable ONNX model/],
  ['kokoro', 'no voice files', (d) => { const f = path.join(d, 'kokoro', 'voices'); rmSync(f, { recursive: true }); mkdirSync(f); return f; }, /no voice files/],
  ['kokoro', 'vocabulary not a map', (d) => { const f = path.join(d, 'kokoro', 'config.json'); writeFileSync(f, '{"vocab": []}'); return f; }, /vocab is not a symbol/],
  ['kokoro', 'vocabulary missing', (d) => { const f = path.join(d, 'kokoro', 'config.json'); unlinkSync(f); return f; }, /vocabulary not found/],
];
