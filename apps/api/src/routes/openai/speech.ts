import { Readable } from 'node:stream';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import {
  FORMAT_INFO, parseOrThrow, SPEECH_FIELDS, speechRequestSchema, type SpeechRequest,
} from '@chorus/shared';
import { awaitFirstRecord } from '../../relay/first-record.ts';
import { collectAll, fixWavSizes, openaiSse, rawAudio } from '../../relay/framing.ts';
import type { StartedJob } from '../../services/speech-service.ts';
import { countQueuedCancel } from '../../count-queued-cancel.ts';

const ROUTE = '/v1/audio/speech';

/** `?stream=false` as existing integrations send it; the body's `stream` wins when both are present. */
function streamFromQuery(query: unknown): boolean | undefined {
  const v = (query as Record<string, unknown> | undefined)?.stream;
  if (v === 'false' || v === '0') return false;
  if (v === 'true' || v === '1') return true;
  return undefined;
}

export const speechRoutes: FastifyPluginAsync = async (app) => {
  const schema = speechRequestSchema(app.config.maxInputChars);

  app.post(ROUTE, async (request, reply) => {
    const raw = request.body;
    const body: SpeechRequest = parseOrThrow(schema, raw);
    const ignored = Object.keys(raw as object).filter((k) => !(SPEECH_FIELDS as readonly string[]).includes(k));
    if (ignored.length > 0) reply.header('x-chorus-ignored-params', ignored.join(','));
    const streaming = (raw as { stream?: unknown }).stream === undefined
      ? (streamFromQuery(request.query) ?? body.stream)
      : body.stream;

    const started = await app.speech.start({
      model: body.model,
      text: body.input,
      voice: typeof body.voice === 'string' ? body.voice : body.voice.id,
      format: body.response_format,
      speed: body.speed,
      lang: body.lang,
      instructions: body.instructions,
      seed: body.seed,
      temperature: body.temperature,
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
      const { body: audio } = await collectAll(first, started.stream, hooks);
      const file = body.response_format === 'wav' ? fixWavSizes(audio) : audio;
      return reply.type(info.contentType).header('content-length', file.length).send(file);
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
