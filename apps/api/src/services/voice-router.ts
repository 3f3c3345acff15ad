import {
  ChorusError, parseVoiceBlend, VoiceBlendError, type ModelTable, type Speaker, type VoiceCatalog,
} from '@chorus/shared';
import type { LiveEngine } from './worker-directory.ts';

/** Where one request goes: the engine, and the speaker (with its engine-native voice) the job carries. */
export interface Route {
  engine: string;
  speaker: Speaker;
}

/** Engines whose voices are configured speakers (voices file), not files a worker loaded. */
const SPEAKER_ENGINES = new Set(['espeak', 'bench']);

/** Whether an engine's voices are the files its workers loaded (listed and accepted by name). */
export function hasLoadedVoices(engine: string): boolean {
  return !SPEAKER_ENGINES.has(engine);
}

const KOKORO_LANGUAGES: Record<string, string> = {
  a: 'en-US', b: 'en-GB', e: 'es', f: 'fr-FR', h: 'hi', i: 'it', j: 'ja', p: 'pt-BR', z: 'zh',
};

/** Language and gender as far as a voice's own name tells them (Kokoro `af_bella`, Piper `en_US-lessac-medium`). */
export function describeEngineVoice(engine: string, voice: string): Pick<Speaker, 'language' | 'gender'> {
  if (engine === 'kokoro') {
    const m = /^([a-z])([fm])_/.exec(voice);
    if (m) return { language: KOKORO_LANGUAGES[m[1]!] ?? 'und', gender: m[2] === 'f' ? 'female' : 'male' };
  }
  if (engine === 'piper') {
    const m = /^([a-z]{2,3})_([A-Z]{2})-/.exec(voice);
    if (m) return { language: `${m[1]}-${m[2]}`, gender: undefined };
  }
  return { language: 'und', gender: undefined };
}

function nativeSpeaker(engine: string, voice: string): Speaker {
  return { id: `${engine}:${voice}`, name: voice, engine, voice, ...describeEngineVoice(engine, voice) };
}

/**
 * Picks the engine and voice for a request: the model's engines in order, the first one a live worker serves.
 * - A configured speaker id pins its own engine (which must be one of the model's).
 * - An OpenAI name uses the chosen engine's mapping from the voices file, else that engine's default voice
 *   (`engine_defaults`, else the first voice its workers loaded); on espeak-ng, the mapped speaker as before.
 * - Anything else must be a voice a live worker loaded for one of the model's engines (Kokoro blends: every part).
 */
export function routeRequest(
  model: string,
  voice: string,
  opts: { models: ModelTable; voices: VoiceCatalog; live: ReadonlyMap<string, LiveEngine>; param?: string },
): Route {
  const { models, voices, live } = opts;
  const param = opts.param ?? 'voice';
  const chain = models.enginesFor(model);
  if (!chain) throw new ChorusError('TTS_ERR_MODEL_NOT_FOUND', `The model '${model}' does not exist.`, { param: 'model' });
  const served = chain.filter((e) => live.has(e));
  const unavailable = () =>
    new ChorusError('TTS_ERR_MODEL_UNAVAILABLE', `No worker is serving model '${model}' right now.`, { retryAfterS: 2 });

  if (!voices.isOpenAiName(voice)) {
    const configured = voices.speaker(voice);
    if (configured) {
      if (!chain.includes(configured.engine)) {
        throw new ChorusError(
          'TTS_ERR_VOICE_UNKNOWN',
          `Voice '${voice}' is a ${configured.engine} speaker; model '${model}' runs ${chain.join(', ')}.`,
          { param },
        );
      }
      if (!live.has(configured.engine)) throw unavailable();
      return { engine: configured.engine, speaker: configured };
    }
    if (served.length === 0) throw unavailable();
    let blendProblem: string | undefined;
    for (const engine of served) {
      const loaded = live.get(engine)!.voices;
      if (!loaded || SPEAKER_ENGINES.has(engine)) continue;
      if (engine === 'kokoro' && /[+(]/.test(voice)) {
        try {
          parseVoiceBlend(voice, loaded);
          return { engine, speaker: nativeSpeaker(engine, voice) };
        } catch (err) {
          if (!(err instanceof VoiceBlendError)) throw err;
          blendProblem = `Invalid voice '${err.part}' in blend '${voice}': ${err.message}.`;
        }
        continue;
      }
      if (loaded.has(voice)) return { engine, speaker: nativeSpeaker(engine, voice) };
    }
    throw new ChorusError(
      'TTS_ERR_VOICE_UNKNOWN',
      `${blendProblem ?? `Invalid voice '${voice}'.`} Valid voices: ${validVoices(voices, served, live).join(', ')}.`,
      { param },
    );
  }

  const engine = served[0];
  if (!engine) throw unavailable();
  const mappedSpeaker = voices.resolve(voice)!;
  if (mappedSpeaker.engine === engine) return { engine, speaker: mappedSpeaker };
  const loaded = live.get(engine)!.voices;
  // Engines that report no voices (espeak-ng's are configured speakers) keep the configured speaker's voice.
  if (!loaded || SPEAKER_ENGINES.has(engine)) return { engine, speaker: mappedSpeaker };
  const mapped = voices.engineVoiceFor(voice, engine);
  const fallback = voices.engineDefault(engine);
  const pick = [mapped, fallback].find((v) => v !== undefined && loaded.has(v)) ?? [...loaded].sort()[0]!;
  return { engine, speaker: { ...nativeSpeaker(engine, pick), name: voice } };
}

/** Names accepted as `voice` for these engines, for error messages. */
function validVoices(voices: VoiceCatalog, engines: readonly string[], live: ReadonlyMap<string, LiveEngine>): string[] {
  const names = new Set(voices.validVoiceNames());
  for (const e of engines) if (!SPEAKER_ENGINES.has(e)) for (const v of live.get(e)?.voices ?? []) names.add(v);
  return [...names];
}
