import type { FastifyPluginAsync } from 'fastify';

export const voiceRoutes: FastifyPluginAsync = async (app) => {
  /** `{id, name}` is what Open WebUI reads; the rest describes the speaker behind the name. */
  app.get('/v1/audio/voices', { config: { auth: 'discovery' } }, async () => {
    const voices = [];
    for (const speaker of app.voices.speakers()) {
      for (const openai of app.voices.openaiVoicesFor(speaker.id)) {
        voices.push({
          id: openai, name: openai, engine: speaker.engine, language: speaker.language,
          gender: speaker.gender ?? null, speaker: speaker.id,
        });
      }
    }
    for (const speaker of app.voices.speakers()) {
      voices.push({
        id: speaker.id, name: speaker.name, engine: speaker.engine, language: speaker.language,
        gender: speaker.gender ?? null, speaker: speaker.id,
      });
    }
    return { voices };
  });
};
