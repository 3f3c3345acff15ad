import { Readable } from 'node:stream';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import {
  audioContent, errorResponses, FORMAT_INFO, SPEECH_FIELDS, speechRequestSchema, speechSynthesisOptions, SpeechQuery,
  SpeechStreamEvent,
} from '@chorus/shared';
import { responseHeaders, type ZodRequestTypes } from '../../plugins/openapi.ts';
import { awaitFirstRecord } from '../../relay/first-record.ts';
import { awaitEnd, openaiSse, rawAudio, replayFile } from '../../relay/framing.ts';
import type { StartedJob } from '../../services/speech-service.ts';
import { countQueuedCancel } from '../../count-queued-cancel.ts';

const ROUTE = '/v1/audio/speech';

/** `?stream=false` as existing integrations send it; the body's `stream` wins when both are present. */
function streamFromQuery(v: string | undefined): boolean | undefined {
  if (v === 'false' || v === '0') return false;
  if (v === 'true' || v === '1') return true;
  return undefined;
}

/** The body as sent: validation replaces it with the parsed one (defaults in, unknown fields out). */
const rawBodies = new WeakMap<FastifyRequest, unknown>();

export const speechRoutes: FastifyPluginAsync = async (app) => {
  const schema = speechRequestSchema(app.config.maxInputChars);

  app.withTypeProvider<ZodRequestTypes>().post(ROUTE, {
    schema: {
      tags: ['speech'],
      summary: 'Create speech',
      description:
        'Synthesizes `input`. `stream_format: "audio"` (default) streams the container bytes chunked as they are made; ' +
        '`"sse"` sends Server-Sent Events; `stream: false` answers once complete, with Content-Length. A failure after ' +
        'raw bytes were sent closes the connection without the final chunk (a truncated transfer).',
      body: schema,
      querystring: SpeechQuery,
      response: {
        200: {
          description: 'The audio, or (stream_format `sse`) its events.',
          headers: responseHeaders('x-request-id', 'x-job-id', 'x-chorus-engine', 'x-chorus-ignored-params'),
          content: {
            ...audioContent('the audio in the requested container.'),
            'text/event-stream': { schema: SpeechStreamEvent },
          },
        },
        ...errorResponses(
          'TTS_ERR_VALIDATION', 'TTS_ERR_MISSING_FIELD', 'TTS_ERR_INVALID_TYPE', 'TTS_ERR_INPUT_TOO_LONG',
          'TTS_ERR_INVALID_JSON', 'TTS_ERR_AUDIO_TOO_LONG', 'TTS_ERR_MODEL_NOT_FOUND', 'TTS_ERR_PAYLOAD_TOO_LARGE',
          'TTS_ERR_UNSUPPORTED_MEDIA_TYPE', 'TTS_ERR_QUEUE_FULL', 'TTS_ERR_ENGINE_FAILED', 'TTS_ERR_MODEL_UNAVAILABLE',
          'TTS_ERR_BACKEND_UNAVAILABLE', 'TTS_ERR_QUEUE_TIMEOUT',
        ),
      },
    },
    preValidation: async (request) => {
      rawBodies.set(request, request.body);
    },
  }, async (request, reply) => {
    const raw = rawBodies.get(request) as Record<string, unknown>;
    const body = request.body;
    // Unknown fields are ignored, and named so a client can see its typo.
    const ignored = Object.keys(raw).filter((k) => !(SPEECH_FIELDS as readonly string[]).includes(k));
    if (ignored.length > 0) reply.header('x-chorus-ignored-params', ignoredParamsHeader(ignored));
    const streaming = raw.stream === undefined ? (streamFromQuery(request.query.stream) ?? body.stream) : body.stream;

    const started = await app.speech.start({
      model: body.model,
      text: body.input,
      voice: typeof body.voice === 'string' ? body.voice : body.voice.id,
      format: body.response_format,
      options: speechSynthesisOptions(body),
      preset: body.preset,
      route: body.stream_format === 'sse' ? 'speech_sse' : 'speech',
      requestId: request.id,
      owner: await app.identity.owner(request),
    });
    cancelOnDisconnect(reply, started, () => app.speech.cancel(started.job.engine, started.jobId));
    const first = await awaitFirstRecord(started, app.speech, app.config.queueTimeoutS);

    const labels = { route: started.job.route, format: body.response_format, model: body.model };
    const hooks = {
      onFirstAudio: () => app.metrics.ttfb.observe(labels, (performance.now() - request.startedAt) / 1000),
      onError: (code: string) => app.metrics.streamFailures.inc({ code }),
    };
    const info = FORMAT_INFO[body.response_format];
    reply.header('x-job-id', started.jobId).header('x-chorus-engine', started.job.engine);

    if (!streaming) {
      // Not held in memory: the size comes from the end record, the bytes from a replay (relay/framing.ts).
      const end = await awaitEnd(first, started.stream, hooks);
      const file = app.hub.subscribe(started.job.streamKey, '0-0', { mustExist: true });
      reply.raw.once('close', () => file.close());
      return reply
        .type(info.contentType)
        .header('content-length', end.bytes)
        .send(Readable.from(replayFile(file, end, body.response_format === 'wav'), { objectMode: false }));
    }
    if (body.stream_format === 'sse') {
      reply
        .type('text/event-stream; charset=utf-8')
        .header('cache-control', 'no-store')
        .header('x-accel-buffering', 'no');
      return reply.send(Readable.from(openaiSse(first, started.stream, body.input.length, hooks)));
    }
    reply.type(info.contentType).header('x-accel-buffering', 'no').header('cache-control', 'no-store');
    return reply.send(Readable.from(rawAudio(first, started.stream, hooks), { objectMode: false }));
  });
};

/** Longest `x-chorus-ignored-params` value: clients cap response headers (undici: 16 KiB in all). */
const IGNORED_HEADER_MAX = 1024;

/**
 * Names of ignored body fields as a header value. A JSON key can hold anything (control characters, non-Latin-1),
 * which Node refuses in a header (a 500): each name is percent-encoded (plain names stay as they are), and names
 * past IGNORED_HEADER_MAX characters (and lone surrogates) are left out.
 */
export function ignoredParamsHeader(names: string[]): string {
  let out = '';
  for (const name of names) {
    let encoded: string;
    try {
      encoded = encodeURIComponent(name);
    } catch {
      continue; // a lone UTF-16 surrogate has no encoding
    }
    const next = out === '' ? encoded : `${out},${encoded}`;
    if (next.length > IGNORED_HEADER_MAX) break;
    out = next;
  }
  return out;
}

declare module 'fastify' {
  interface FastifyRequest {
    startedAt: number;
  }
}

/**
 * A client that goes away cancels its job. `reply.raw` 'close' before the response finished is the reliable
 * signal on POST (request 'close' fires early on Node 20, fastify#4690).
 */
export function cancelOnDisconnect(reply: FastifyReply, started: StartedJob, cancel: () => Promise<void>) {
  reply.raw.once('close', () => {
    started.stream.close();
    if (!reply.raw.writableFinished) {
      reply.log.info({ jobId: started.jobId }, 'client disconnected; cancelling job');
      const { speech, metrics } = reply.server;
      countQueuedCancel(speech.queue(started.job.engine), started.jobId, started.job.engine, metrics, cancel)
        .catch((err: Error) => reply.log.warn({ err: err.message }, 'cancel failed'));
    }
  });
}
