import type { Readable } from 'node:stream';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { ZipFile } from 'yazl';
import { z } from 'zod';
import { BATCH_ID_PATTERN, ChorusError, completionWindowSeconds, FORMAT_INFO, parseOrThrow, StorageKeys } from '@chorus/shared';
import { BATCH_ENDPOINT, batchObject } from '../../services/batch-service.ts';

const CreateBody = z.object({
  input_file_id: z.string().min(1).max(100),
  endpoint: z.string(),
  completion_window: z.string(),
  // OpenAI: up to 16 pairs, keys up to 64 characters, values up to 512.
  metadata: z.record(z.string().max(64), z.string().max(512)).refine((m) => Object.keys(m).length <= 16, 'at most 16 keys').nullish(),
});

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
export const batchRoutes: FastifyPluginAsync = async (app) => {
  /** Another key's batch is the same 404 as no batch, so ids cannot be probed. */
  const lookup = async (id: string, request: FastifyRequest) => {
    const h = await app.batches.get(id);
    if (!h || !(await app.identity.mayRead(request, h.owner || undefined))) throw notFound(id);
    return h;
  };

  app.post('/v1/batches', async (request) => {
    const body = parseOrThrow(CreateBody, request.body ?? {});
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

  app.get<{ Querystring: Record<string, string | undefined> }>('/v1/batches', async (request) => {
    const q = request.query;
    const limit = q.limit === undefined ? 20 : Number(q.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 100) {
      throw new ChorusError('TTS_ERR_VALIDATION', 'limit must be an integer from 1 to 100.', { param: 'limit' });
    }
    if (q.after !== undefined && !BATCH_ID_PATTERN.test(q.after)) {
      throw new ChorusError('TTS_ERR_VALIDATION', 'after must be a batch id from a previous page.', { param: 'after' });
    }
    const { data, hasMore } = await app.batches.list(await app.identity.owner(request), q.after, limit);
    return { object: 'list' as const, data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: hasMore };
  });

  app.get<{ Params: { id: string } }>('/v1/batches/:id', async (request) => batchObject(await lookup(request.params.id, request)));

  app.post<{ Params: { id: string } }>('/v1/batches/:id/cancel', async (request) => {
    const h = await lookup(request.params.id, request);
    await app.batches.cancel(h.id!);
    return batchObject((await app.batches.get(h.id!)) ?? h);
  });

  /**
   * A zip of every completed item's audio, named by custom_id. Entries are stored (audio is compressed already),
   * and each file is opened only when yazl reaches it, so the zip streams with one storage read open at a time.
   */
  app.get<{ Params: { id: string } }>('/v1/batches/:id/archive', async (request, reply) => {
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
