import type { FastifyPluginAsync } from 'fastify';
import { ChorusError, errorResponses, ModelIdParams, ModelList, ModelObject } from '@chorus/shared';
import type { ZodRequestTypes } from '../../plugins/openapi.ts';
import type { LiveEngine } from '../../services/worker-directory.ts';

/** A fixed creation time: models here are configuration, not artefacts with a history. */
const CREATED = 1_700_000_000;

/**
 * OpenAI's model object, plus what live workers run it on: `engine` (where a request goes now, the first of the
 * model's engines a live worker serves) and `devices` (cpu / cuda, from the workers' heartbeats).
 */
function modelObject(id: string, engine: string, live: ReadonlyMap<string, LiveEngine>) {
  return {
    id, object: 'model' as const, created: CREATED, owned_by: 'chorus',
    engine, devices: [...(live.get(engine)?.devices ?? [])].sort(),
  };
}

export const modelRoutes: FastifyPluginAsync = async (instance) => {
  const app = instance.withTypeProvider<ZodRequestTypes>();
  const available = async () => {
    const live = await app.directory.liveEngines();
    const served = new Set(live.keys());
    return app.models.availableModels(served).map((id) => modelObject(id, app.models.routeFor(id, served)!, live));
  };

  app.get('/v1/models', {
    config: { auth: 'discovery' },
    schema: {
      tags: ['models'],
      summary: 'List models',
      description: 'The aliases and engine models some live worker serves.',
      response: { 200: ModelList.describe('The models.') },
    },
  }, async () => ({ object: 'list', data: await available() }));

  app.get('/v1/models/:id', {
    config: { auth: 'discovery' },
    schema: {
      tags: ['models'],
      summary: 'Retrieve a model',
      params: ModelIdParams,
      response: {
        200: { description: 'The model.', content: { 'application/json': { schema: ModelObject } } },
        ...errorResponses('TTS_ERR_MODEL_NOT_FOUND'),
      },
    },
  }, async (request) => {
    const model = (await available()).find((m) => m.id === request.params.id);
    if (!model) {
      throw new ChorusError('TTS_ERR_MODEL_NOT_FOUND', `The model '${request.params.id}' does not exist.`, { param: 'model' });
    }
    return model;
  });
};
