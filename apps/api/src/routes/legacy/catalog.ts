import type { FastifyPluginAsync } from 'fastify';

export const legacyCatalogRoutes: FastifyPluginAsync = async (app) => {
  app.get('/api/speakers', async () => ({
    speakers: app.voices.speakers().map((s) => ({
      id: s.id,
      name: s.name,
      engine: s.engine,
      language: s.language,
      gender: s.gender ?? null,
      openai_voices: app.voices.openaiVoicesFor(s.id),
    })),
  }));

  app.get('/api/presets', async () => ({
    presets: Object.entries(app.voices.presets).map(([id, values]) => ({ id, ...values })),
  }));
};
