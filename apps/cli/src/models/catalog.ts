import { CliError } from '../errors.ts';

/*
 * What `chorus models pull|rm <name>` means, in the MODELS_DIR layout the worker loads (see README "Command line"):
 *   piper:<voice>   rhasspy/piper-voices  <lang>/<lang_REGION>/<name>/<quality>/<voice>.onnx[.json] → piper/<voice>.onnx[.json]
 *   kokoro          onnx-community/Kokoro-82M-v1.0-ONNX  onnx/model.onnx, config.json, tokenizer.json and
 *                   DEFAULT_KOKORO_VOICES                                                          → kokoro/<same path>
 *   kokoro:<voice>  the same repo, voices/<voice>.bin                                              → kokoro/voices/<voice>.bin
 */

export const PIPER_REPO = 'rhasspy/piper-voices';
export const KOKORO_REPO = 'onnx-community/Kokoro-82M-v1.0-ONNX';

/** The best-known English Kokoro voices, including those the OpenAI voice names map to. */
export const DEFAULT_KOKORO_VOICES = [
  'af_heart',
  'af_alloy',
  'af_bella',
  'af_nova',
  'af_sky',
  'am_echo',
  'am_michael',
  'am_onyx',
  'bf_emma',
  'bm_george',
] as const;

const KOKORO_MODEL_FILES = ['onnx/model.onnx', 'config.json', 'tokenizer.json'] as const;

export interface CatalogFile {
  repo: string;
  /** Path inside the repo. */
  path: string;
  /** Path under MODELS_DIR (forward slashes). */
  dest: string;
}

export type ModelName =
  | { kind: 'piper'; voice: string }
  | { kind: 'kokoro' }
  | { kind: 'kokoro-voice'; voice: string };

/** `en_US-lessac-medium`: language_REGION, dataset name, quality (as in piper-voices' voices.json). */
const PIPER_VOICE = /^([a-z]{2,3})_([A-Za-z0-9]{2,4})-([A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)*)-(x_low|low|medium|high)$/;
/** Names become file names: letters, digits, `_` and `-` only (no path separators, no dot files). */
const KOKORO_VOICE = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;

export const NAME_HELP = 'piper:<voice> (e.g. piper:en_US-lessac-medium), kokoro, or kokoro:<voice> (e.g. kokoro:af_bella)';

export function parseModelName(name: string): ModelName {
  if (name === 'kokoro') return { kind: 'kokoro' };
  const colon = name.indexOf(':');
  const prefix = colon < 0 ? name : name.slice(0, colon);
  const rest = colon < 0 ? '' : name.slice(colon + 1);
  if (prefix === 'piper') {
    if (!PIPER_VOICE.test(rest)) {
      throw new CliError(`invalid Piper voice name "${rest}": expected <lang>_<REGION>-<name>-<quality>, e.g. en_US-lessac-medium`);
    }
    return { kind: 'piper', voice: rest };
  }
  if (prefix === 'kokoro') {
    if (!KOKORO_VOICE.test(rest)) throw new CliError(`invalid Kokoro voice name "${rest}": expected e.g. af_bella`);
    return { kind: 'kokoro-voice', voice: rest };
  }
  throw new CliError(`unknown model "${name}": expected ${NAME_HELP}`);
}

export function piperFiles(voice: string): CatalogFile[] {
  const m = PIPER_VOICE.exec(voice);
  if (!m) throw new CliError(`invalid Piper voice name "${voice}"`);
  const [, lang, region, dataset, quality] = m;
  const dir = `${lang}/${lang}_${region}/${dataset}/${quality}`;
  return ['.onnx', '.onnx.json'].map((ext) => ({ repo: PIPER_REPO, path: `${dir}/${voice}${ext}`, dest: `piper/${voice}${ext}` }));
}

export function kokoroVoiceFile(voice: string): CatalogFile {
  return { repo: KOKORO_REPO, path: `voices/${voice}.bin`, dest: `kokoro/voices/${voice}.bin` };
}

/** The files `pull <name>` downloads. */
export function filesToPull(name: ModelName): CatalogFile[] {
  switch (name.kind) {
    case 'piper':
      return piperFiles(name.voice);
    case 'kokoro':
      return [
        ...KOKORO_MODEL_FILES.map((path) => ({ repo: KOKORO_REPO, path, dest: `kokoro/${path}` })),
        ...DEFAULT_KOKORO_VOICES.map(kokoroVoiceFile),
      ];
    case 'kokoro-voice':
      return [kokoroVoiceFile(name.voice)];
  }
}

/** Whether a MODELS_DIR-relative path belongs to `name` (what `rm <name>` removes). */
export function belongsTo(name: ModelName, rel: string): boolean {
  switch (name.kind) {
    case 'piper':
      return rel === `piper/${name.voice}.onnx` || rel === `piper/${name.voice}.onnx.json`;
    case 'kokoro':
      return rel.startsWith('kokoro/');
    case 'kokoro-voice':
      return rel === `kokoro/voices/${name.voice}.bin`;
  }
}
