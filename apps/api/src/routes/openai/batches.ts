import type { Readable } from 'node:stream';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { ZipFile } from 'yazl';
import { z } from 'zod';
import {
  BatchCreateBody, BatchIdParams, BatchList, BatchListQuery, BatchObject, ChorusError, completionWindowSeconds,
  errorResponses, FORMAT_INFO, StorageKeys,
} from '@chorus/shared';
import { BATCH_ENDPOINT, batchObject } from '../../services/batch-service.ts';
import type { ZodRequestTypes } from '../../plugins/openapi.ts';

const batchResponse = (description: string) => ({ description, content: { 'application/json': { schema: BatchObject } } });
const notFoundResponse = errorResponses('TTS_ERR_NOT_FOUND');

const notFound = (id: string) => new ChorusError('TTS_ERR_NOT_FOUND', `No such Batch object: ${id}`, { param: 'batch_id' });

/** Archive entry names: the custom_id with characters no file system argues about, unique within the zip. */
function entryNames() {
  const used = new Set<string>();
  return (customId: string, ext: string) => {
    const base = customId.replace(/[^A-Za-z0-9._ -]/g, '_').replace(/^[.\s]+/, '_').slice(0, 200) || '_';
    let name = `${base}.${ext}`;
    for (let n = 2; used.has(name); n++) name = `${base}~${n}.${ext}`;
    used.add(name);
    return name;
  };
}

const EXT_BY_TYPE = new Map(Object.values(FORMAT_INFO).map((f) => [f.contentType, f.extension]));

/** OpenAI's Batch API, with `/v1/audio/speech` as the endpoint (SPEC §2 Batch); batches belong to their key. */
export const batchRoutes: FastifyPluginAsync = async (instance) => {
  const app = instance.withTypeProvider<ZodRequestTypes>();
  /** Another key's batch is the same 404 as no batch, so ids cannot be probed. */
  const lookup = async (id: string, request: FastifyRequest) => {
    const h = await app.batches.get(id);
    if (!h || !(await app.identity.mayRead(request, h.owner || undefined))) throw notFound(id);
    return h;
  };

  app.post('/v1/batches', {
    schema: {
      tags: ['batches'],
      summary: 'Create a batch',
      description:
        'Runs every line of the input file (`{custom_id, method: "POST", url: "/v1/audio/speech", body}`) at batch ' +
        'priority. Output lines: `{id, custom_id, response: {status_code: 200, request_id, body: {file_id, content_type, ' +
        'bytes, duration_s}}, error: null}`; the audio is GET /v1/files/{file_id}/content.',
      body: BatchCreateBody,
      response: {
        200: batchResponse('The batch (status `validating`).'),
        ...errorResponses(
          'TTS_ERR_VALIDATION', 'TTS_ERR_MISSING_FIELD', 'TTS_ERR_INVALID_TYPE', 'TTS_ERR_INPUT_TOO_LONG', 'TTS_ERR_INVALID_JSON',
          'TTS_ERR_NOT_FOUND', 'TTS_ERR_PAYLOAD_TOO_LARGE', 'TTS_ERR_UNSUPPORTED_MEDIA_TYPE', 'TTS_ERR_TOO_MANY_BATCHES',
        ),
      },
    },
    // No body reads as an empty one, so the 400 names the first missing field.
    preValidation: async (request) => {
      (request as { body: unknown }).body ??= {};
    },
  }, async (request) => {
    const body = request.body;
    if (body.endpoint !== BATCH_ENDPOINT) {
      throw new ChorusError('TTS_ERR_VALIDATION', `Chorus runs batches for '${BATCH_ENDPOINT}' only.`, { param: 'endpoint' });
    }
    const windowS = completionWindowSeconds(body.completion_window);
    if (windowS === undefined) {
      throw new ChorusError(
        'TTS_ERR_VALIDATION', "completion_window must be '24h' (or a duration from '1s' to '168h', such as '30m').",
        { param: 'completion_window' },
      );
    }
    const owner = await app.identity.owner(request);
    const file = await app.files.get(body.input_file_id);
    if (!file || !(await app.identity.mayRead(request, file.owner))) {
      throw new ChorusError('TTS_ERR_NOT_FOUND', `No such File object: ${body.input_file_id}`, { param: 'input_file_id' });
    }
    if (file.purpose !== 'batch') {
      throw new ChorusError('TTS_ERR_VALIDATION', `The file ${file.id} has purpose '${file.purpose}'; upload it with purpose 'batch'.`, {
        param: 'input_file_id',
      });
    }
    return app.batches.create({
      inputFileId: file.id, completionWindow: body.completion_window, windowS, metadata: body.metadata ?? null, owner,
    });
  });

  app.get('/v1/batches', {
    schema: {
      tags: ['batches'],
      summary: 'List batches',
      querystring: BatchListQuery,
      response: { 200: BatchList.describe('A page of batches, newest first.'), ...errorResponses('TTS_ERR_VALIDATION') },
    },
  }, async (request) => {
    const { limit, after } = request.query;
    const { data, hasMore } = await app.batches.list(await app.identity.owner(request), after, limit);
    return { object: 'list' as const, data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: hasMore };
  });

  app.get('/v1/batches/:id', {
    schema: { tags: ['batches'], summary: 'Retrieve a batch', params: BatchIdParams, response: { 200: batchResponse('The batch.'), ...notFoundResponse } },
  }, async (request) => batchObject(await lookup(request.params.id, request)));

  app.post('/v1/batches/:id/cancel', {
    schema: {
      tags: ['batches'],
      summary: 'Cancel a batch',
      description: 'Items still waiting are dropped; the batch goes `cancelling`, then `cancelled` with what finished.',
      params: BatchIdParams,
      response: { 200: batchResponse('The batch.'), ...notFoundResponse },
    },
  }, async (request) => {
    const h = await lookup(request.params.id, request);
    await app.batches.cancel(h.id!);
    return batchObject((await app.batches.get(h.id!)) ?? h);
  });

  /**
   * A zip of every completed item's audio, named by custom_id. Entries are stored (audio is compressed already),
   * and each file is opened only when yazl reaches it, so the zip streams with one storage read open at a time.
   */
  app.get('/v1/batches/:id/archive', {
    schema: {
      tags: ['batches'],
      summary: 'All audio of a batch as a zip',
      description: 'Chorus extension: every completed item’s audio, named by `custom_id`, streamed.',
      params: BatchIdParams,
      response: {
        200: { description: 'A zip archive.', content: { 'application/zip': { schema: z.string().meta({ format: 'binary' }) } } },
        ...notFoundResponse,
      },
    },
  }, async (request, reply) => {
    const h = await lookup(request.params.id, request);
    const items = await app.batches.completedItems(h.id!);
    const zip = new ZipFile();
    const name = entryNames();
    for (const item of items) {
      zip.addReadStreamLazy(name(item.customId, EXT_BY_TYPE.get(item.contentType) ?? 'bin'), { compress: false }, (cb) => {
        app.files.storage.get(StorageKeys.file(item.fileId)).then(
          (o) => (o ? cb(null, o.body) : cb(new Error(`audio of ${item.customId} is missing`), undefined as never)),
          (err: Error) => cb(err, undefined as never),
        );
      });
    }
    // An entry that cannot be read (storage down, bytes gone) is an 'error' on the ZipFile itself: unhandled it
    // would throw; the response is cut instead (the client sees a truncated transfer, never a hang).
    zip.on('error', (err: Error) => {
      request.log.warn({ err, batchId: h.id }, 'archive stream failed');
      (zip.outputStream as Readable).destroy(err);
    });
    zip.end();
    return reply
      .type('application/zip')
      .header('content-disposition', `attachment; filename="${h.id}.zip"`)
      .header('cache-control', 'no-store')
      .send(zip.outputStream);
  });
};
