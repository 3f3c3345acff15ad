import type { FastifyPluginAsync } from 'fastify';
import { PresetList, SpeakerList } from '@chorus/shared';

export const legacyCatalogRoutes: FastifyPluginAsync = async (app) => {
  app.get('/api/speakers', {
    schema: { tags: ['legacy'], summary: 'Configured speakers', response: { 200: SpeakerList.describe('The speakers.') } },
  }, async () => ({
    speakers: app.voices.speakers().map((s) => ({
      id: s.id,
      name: s.name,
      engine: s.engine,
      language: s.language,
      gender: s.gender ?? null,
      openai_voices: app.voices.openaiVoicesFor(s.id),
    })),
  }));

  app.get('/api/presets', {
    schema: { tags: ['legacy'], summary: 'Configured presets', response: { 200: PresetList.describe('The presets.') } },
  }, async () => ({
    presets: Object.entries(app.voices.presets).map(([id, values]) => ({ id, ...values })),
  }));
};
