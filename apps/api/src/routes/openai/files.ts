import { finished, Transform, type TransformCallback } from 'node:stream';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import multipart from '@fastify/multipart';
import { z } from 'zod';
import {
  ChorusError, errorResponses, FileDeleted, FileIdParams, FileList, FileListQuery, FileObject, FileUploadBody, StorageKeys,
} from '@chorus/shared';
import { fileObject, type FileMeta } from '../../services/file-store.ts';
import { docsOnly, type ZodRequestTypes } from '../../plugins/openapi.ts';

/** Purposes POST /v1/files accepts (batch output files are made by Chorus itself). */
const UPLOAD_PURPOSES = new Set(['batch']);
/** Room for the multipart framing around the file in a request's Content-Length. */
const FRAMING_SLACK = 64 * 1024;
const MIME = /^[A-Za-z0-9!#$&^_.+-]+\/[A-Za-z0-9!#$&^_.+-]+$/;

/** Passes bytes through until there are more than `max`, then fails (the storage driver then keeps nothing). */
class ByteLimit extends Transform {
  #seen = 0;
  constructor(readonly max: number) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback) {
    this.#seen += chunk.length;
    if (this.#seen > this.max) done(tooLarge(this.max));
    else done(null, chunk);
  }
}

const tooLarge = (max: number) =>
  new ChorusError('TTS_ERR_PAYLOAD_TOO_LARGE', `The file is larger than the limit of ${max} bytes (MAX_BATCH_FILE_BYTES).`, {
    param: 'file',
  });

const notFound = (id: string) => new ChorusError('TTS_ERR_NOT_FOUND', `No such File object: ${id}`, { param: 'file_id' });

/** OpenAI's Files API (SPEC §2 Batch): JSONL batch input files, kept per FILE_RETENTION_S, owned by their key. */
export const fileRoutes: FastifyPluginAsync = async (instance) => {
  const app = instance.withTypeProvider<ZodRequestTypes>();
  const max = app.config.maxBatchFileBytes;
  // Registered here, so multipart bodies are parsed on these routes only (elsewhere they stay a 415).
  await app.register(multipart, {
    // One byte over the limit lets ByteLimit see the overflow; busboy would silently truncate at the limit itself.
    limits: { fileSize: max + 1, files: 1, fields: 20, parts: 24, fieldSize: 64 * 1024, fieldNameSize: 200 },
  });

  /** Another key's file is the same 404 as no file, so ids cannot be probed. */
  const lookup = async (id: string, request: FastifyRequest): Promise<FileMeta> => {
    const meta = await app.files.get(id);
    if (!meta || !(await app.identity.mayRead(request, meta.owner))) throw notFound(id);
    return meta;
  };

  app.post('/v1/files', {
    schema: {
      tags: ['files'],
      summary: 'Upload a file',
      description: 'A JSONL batch input file, as multipart/form-data (`file`, `purpose=batch`).',
      consumes: ['multipart/form-data'],
      // Documented only: the handler reads the multipart stream itself (a validator would have to buffer it).
      body: docsOnly(FileUploadBody),
      response: {
        200: { description: 'The stored file.', content: { 'application/json': { schema: FileObject } } },
        ...errorResponses(
          'TTS_ERR_VALIDATION', 'TTS_ERR_MISSING_FIELD', 'TTS_ERR_PAYLOAD_TOO_LARGE', 'TTS_ERR_UNSUPPORTED_MEDIA_TYPE',
          'TTS_ERR_BACKEND_UNAVAILABLE',
        ),
      },
    },
  }, async (request, reply) => {
    if (!request.isMultipart()) {
      throw new ChorusError('TTS_ERR_UNSUPPORTED_MEDIA_TYPE', 'Send the file as multipart/form-data (fields `file` and `purpose`).');
    }
    const declared = Number(request.headers['content-length']);
    if (Number.isFinite(declared) && declared > max + FRAMING_SLACK) {
      reply.header('connection', 'close'); // do not read the rest of a body we refuse
      throw tooLarge(max);
    }
    const owner = await app.identity.owner(request);
    const fields = new Map<string, string>();
    let stored: { id: string; bytes: number; filename: string; contentType: string } | undefined;
    try {
      for await (const part of request.parts()) {
        if (part.type === 'field') {
          // A field sent as application/json arrives parsed; keep it as text so it is reported as sent.
          fields.set(part.fieldname, typeof part.value === 'string' ? part.value : JSON.stringify(part.value));
          continue;
        }
        if (part.fieldname !== 'file' || stored) {
          part.file.resume();
          throw new ChorusError('TTS_ERR_VALIDATION', `Unexpected file field '${part.fieldname}': send one file as \`file\`.`, {
            param: part.fieldname,
          });
        }
        const filename = part.filename || 'upload.jsonl';
        if (filename.length > 255) {
          part.file.resume();
          throw new ChorusError('TTS_ERR_VALIDATION', 'The file name is longer than 255 characters.', { param: 'file' });
        }
        const contentType = MIME.test(part.mimetype) ? part.mimetype : 'application/octet-stream';
        const id = app.files.newId();
        const limited = new ByteLimit(max);
        let cutShort: Error | undefined;
        // finished(), not an 'error' listener: busboy may have destroyed the part already (a body that ended
        // mid-file), without an error event, and a plain pipe from it would then never end.
        finished(part.file, (err) => {
          if (err) limited.destroy((cutShort = err));
        });
        // A failed put (too large, client gone, storage down) leaves nothing stored.
        const { bytes } = await app.files.putBytes(id, part.file.pipe(limited), contentType).catch((err: unknown) => {
          part.file.resume(); // let busboy finish the request so the error can be answered
          if (err instanceof ChorusError) throw err;
          if (cutShort) throw new ChorusError('TTS_ERR_VALIDATION', 'The upload ended before the file did.', { param: 'file' });
          throw storageFailure(err, request);
        });
        stored = { id, bytes, filename, contentType };
        if (part.file.truncated) throw tooLarge(max); // busboy's own cap: never expected below ByteLimit's
      }
    } catch (err) {
      if (stored) await app.files.discardBytes(stored.id);
      throw multipartError(err);
    }

    try {
      const purpose = fields.get('purpose');
      if (purpose === undefined) {
        throw new ChorusError('TTS_ERR_MISSING_FIELD', "Missing required parameter: 'purpose'.", { param: 'purpose' });
      }
      if (!UPLOAD_PURPOSES.has(purpose)) {
        throw new ChorusError('TTS_ERR_VALIDATION', `Invalid purpose '${purpose.slice(0, 100)}': Chorus accepts 'batch'.`, {
          param: 'purpose',
        });
      }
      if (!stored) throw new ChorusError('TTS_ERR_MISSING_FIELD', "Missing required parameter: 'file'.", { param: 'file' });
      const now = Math.floor(Date.now() / 1000);
      const meta: FileMeta = {
        id: stored.id, bytes: stored.bytes, created_at: now, expires_at: now + app.files.retentionS,
        filename: stored.filename, purpose, content_type: stored.contentType, ...(owner ? { owner } : {}),
      };
      await app.files.commit(meta);
      return fileObject(meta);
    } catch (err) {
      if (stored) await app.files.discardBytes(stored.id);
      throw err;
    }
  });

  app.get('/v1/files', {
    schema: {
      tags: ['files'],
      summary: 'List files',
      description: 'A key lists its own files (keys off: every file).',
      querystring: FileListQuery,
      response: { 200: FileList.describe('A page of files.'), ...errorResponses('TTS_ERR_VALIDATION') },
    },
  }, async (request) => {
    const { limit, order, after, purpose } = request.query;
    // Keys on: a key lists its own files. Keys off: every file (all are owner-less).
    const index = app.keys.ownerFiles(await app.identity.owner(request));
    const { data, hasMore } = await app.files.list({ index, after, limit, order, purpose });
    return {
      object: 'list' as const,
      data: data.map(fileObject),
      first_id: data[0]?.id ?? null,
      last_id: data.at(-1)?.id ?? null,
      has_more: hasMore,
    };
  });

  const notFoundResponse = errorResponses('TTS_ERR_NOT_FOUND');

  app.get('/v1/files/:id', {
    schema: {
      tags: ['files'],
      summary: 'Retrieve a file',
      params: FileIdParams,
      response: { 200: { description: 'The file.', content: { 'application/json': { schema: FileObject } } }, ...notFoundResponse },
    },
  }, async (request) => fileObject(await lookup(request.params.id, request)));

  app.get('/v1/files/:id/content', {
    schema: {
      tags: ['files'],
      summary: 'A file’s content',
      params: FileIdParams,
      response: {
        200: {
          description: 'The bytes, with the file’s own Content-Type (JSONL for batch files, audio for batch audio).',
          content: { 'application/octet-stream': { schema: z.string().meta({ format: 'binary' }) } },
        },
        ...errorResponses('TTS_ERR_NOT_FOUND', 'TTS_ERR_BACKEND_UNAVAILABLE'),
      },
    },
  }, async (request, reply) => {
    const meta = await lookup(request.params.id, request);
    const object = await app.files.storage.get(StorageKeys.file(meta.id)).catch((err: unknown) => {
      throw storageFailure(err, request);
    });
    if (!object) throw notFound(meta.id); // expired between the two reads, or its bytes were lost
    object.body.on('error', (err) => request.log.warn({ err, fileId: meta.id }, 'file content stream failed'));
    return reply
      .type(meta.content_type)
      .header('content-length', String(object.bytes))
      .header('cache-control', 'no-store')
      .send(object.body);
  });

  app.delete('/v1/files/:id', {
    schema: {
      tags: ['files'],
      summary: 'Delete a file',
      params: FileIdParams,
      response: { 200: FileDeleted.describe('Deleted.'), ...notFoundResponse },
    },
  }, async (request) => {
    const meta = await lookup(request.params.id, request);
    await app.files.delete(meta);
    return { id: meta.id, object: 'file' as const, deleted: true };
  });
};

/** Storage that cannot be reached is the backend being unavailable (503), as Redis is. */
function storageFailure(err: unknown, request: FastifyRequest): ChorusError {
  request.log.error({ err }, 'file storage failed');
  return new ChorusError('TTS_ERR_BACKEND_UNAVAILABLE', 'File storage is unavailable; retry shortly.', { retryAfterS: 1, cause: err });
}

/** @fastify/multipart's own limits and parse errors, in the catalogue. */
function multipartError(err: unknown): unknown {
  const code = (err as { code?: string }).code;
  if (code === 'FST_REQ_FILE_TOO_LARGE') return err; // not raised: ByteLimit fires first
  if (code === 'FST_FILES_LIMIT') {
    return new ChorusError('TTS_ERR_VALIDATION', 'Send one file per request, as `file`.', { param: 'file' });
  }
  if (code === 'FST_PARTS_LIMIT' || code === 'FST_FIELDS_LIMIT') {
    return new ChorusError('TTS_ERR_VALIDATION', 'Too many form fields: send `file` and `purpose`.');
  }
  if (err instanceof ChorusError) return err;
  // Everything else the parse loop throws is busboy's or the plugin's verdict on the body (no boundary, a body that
  // ends mid-part, a bad JSON field): the client's error.
  return new ChorusError('TTS_ERR_VALIDATION', `The multipart body is malformed: ${(err as Error).message}.`, { cause: err });
}
