import type { FastifyPluginAsync } from 'fastify';
import { OPENAI_VOICES, VoiceList } from '@chorus/shared';
import { describeEngineVoice, hasLoadedVoices, routeRequest } from '../../services/voice-router.ts';

/** The alias whose routing the OpenAI names are listed under. */
const LISTED_MODEL = 'tts-1';

export const voiceRoutes: FastifyPluginAsync = async (app) => {
  /**
   * `{id, name}` is what Open WebUI reads; the rest says what a request with that voice gets now: the OpenAI names
   * as `tts-1` routes them (engine and engine voice), every configured speaker, and every voice a live worker
   * loaded (with the devices it runs on).
   */
  app.get('/v1/audio/voices', {
    config: { auth: 'discovery' },
    schema: {
      tags: ['models'],
      summary: 'List voices',
      description:
        'The 13 OpenAI names as `tts-1` routes them, every configured speaker, and every voice a live worker loaded. ' +
        '`{id, name}` is the shape Open WebUI reads.',
      response: { 200: VoiceList.describe('The voices.') },
    },
  }, async () => {
    const live = await app.directory.liveEngines();
    const voices = [];
    for (const name of OPENAI_VOICES) {
      let speaker = app.voices.resolve(name)!;
      try {
        speaker = routeRequest(LISTED_MODEL, name, { models: app.models, voices: app.voices, live }).speaker;
      } catch {
        // no live worker for the alias: describe the configured speaker
      }
      voices.push({
        id: name, name, engine: speaker.engine, language: speaker.language, gender: speaker.gender ?? null,
        speaker: speaker.id,
      });
    }
    for (const speaker of app.voices.speakers()) {
      voices.push({
        id: speaker.id, name: speaker.name, engine: speaker.engine, language: speaker.language,
        gender: speaker.gender ?? null, speaker: speaker.id,
      });
    }
    for (const [engine, { voices: loaded, devices }] of live) {
      if (!hasLoadedVoices(engine)) continue;
      for (const voice of [...(loaded ?? [])].sort()) {
        const { language, gender } = describeEngineVoice(engine, voice);
        voices.push({
          id: voice, name: voice, engine, language, gender: gender ?? null, speaker: `${engine}:${voice}`,
          devices: [...devices].sort(),
        });
      }
    }
    return { voices };
  });
};
