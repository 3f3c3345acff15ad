import type { FastifyPluginAsync } from 'fastify';
import { ChorusError } from '@chorus/shared';

/** A fixed creation time: models here are configuration, not artefacts with a history. */
const CREATED = 1_700_000_000;

function modelObject(id: string) {
  return { id, object: 'model' as const, created: CREATED, owned_by: 'chorus' };
}

export const modelRoutes: FastifyPluginAsync = async (app) => {
  app.get('/v1/models', { config: { auth: 'discovery' } }, async () => {
    const served = await app.directory.servedEngines();
    return { object: 'list', data: app.models.availableModels(served).map(modelObject) };
  });

  app.get<{ Params: { id: string } }>('/v1/models/:id', { config: { auth: 'discovery' } }, async (request) => {
    const served = await app.directory.servedEngines();
    const id = request.params.id;
    if (!app.models.availableModels(served).includes(id)) {
      throw new ChorusError('TTS_ERR_MODEL_NOT_FOUND', `The model '${id}' does not exist.`, { param: 'model' });
    }
    return modelObject(id);
  });
};
