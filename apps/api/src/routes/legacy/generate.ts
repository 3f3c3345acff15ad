import { Readable } from 'node:stream';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import {
  audioContent, errorResponses, FORMAT_INFO, legacySynthesisOptions, legacyTtsRequestSchema, LegacyStreamEvent,
  OUTPUT_SAMPLE_RATE, type ErrorName, type LegacyTtsRequest,
} from '@chorus/shared';
import { responseHeaders, type ZodRequestTypes } from '../../plugins/openapi.ts';
import { awaitFirstRecord } from '../../relay/first-record.ts';
import { awaitEnd, legacySse, replayFile, withFirst } from '../../relay/framing.ts';
import { cancelOnDisconnect } from '../openai/speech.ts';

/**
 * The service's own API, kept stable for existing integrations. It has no `model`: the speaker's engine is the
 * model. Both routes ride the same job pipeline as the OpenAI route.
 */
const GENERATE_ERRORS: ErrorName[] = [
  'TTS_ERR_VALIDATION', 'TTS_ERR_MISSING_FIELD', 'TTS_ERR_INVALID_TYPE', 'TTS_ERR_INPUT_TOO_LONG', 'TTS_ERR_INVALID_JSON',
  'TTS_ERR_AUDIO_TOO_LONG', 'TTS_ERR_PAYLOAD_TOO_LARGE', 'TTS_ERR_UNSUPPORTED_MEDIA_TYPE', 'TTS_ERR_QUEUE_FULL',
  'TTS_ERR_ENGINE_FAILED', 'TTS_ERR_MODEL_UNAVAILABLE', 'TTS_ERR_BACKEND_UNAVAILABLE', 'TTS_ERR_QUEUE_TIMEOUT',
];

export const legacyGenerateRoutes: FastifyPluginAsync = async (instance) => {
  const app = instance.withTypeProvider<ZodRequestTypes>();
  const schema = legacyTtsRequestSchema(app.config.maxInputChars);

  async function start(body: LegacyTtsRequest, request: FastifyRequest, route: string) {
    const voice = body.speaker ?? app.voices.defaultSpeaker;
    const speaker = app.speech.resolveVoice(voice, 'speaker');
    return app.speech.start({
      model: speaker.engine,
      text: body.text,
      voice,
      format: body.format,
      options: legacySynthesisOptions(body),
      preset: body.preset,
      route,
      requestId: request.id,
      owner: await app.identity.owner(request),
    });
  }

  /** Whole file with exact sizes, as downloads expect; relayed, not held in memory (relay/framing.ts). */
  app.post('/api/generate_tts', {
    schema: {
      tags: ['legacy'],
      summary: 'Synthesize a whole file',
      body: schema,
      response: {
        200: {
          description: 'The complete audio file.',
          headers: responseHeaders(
            'x-request-id', 'x-job-id', 'x-chorus-engine', 'x-audio-duration', 'content-disposition', 'content-length',
          ),
          content: audioContent('the whole file, exact sizes.'),
        },
        ...errorResponses(...GENERATE_ERRORS),
      },
    },
  }, async (request, reply) => {
    const body = request.body;
    const started = await start(body, request, 'legacy');
    cancelOnDisconnect(reply, started, () => app.speech.cancel(started.job.engine, started.jobId));
    const first = await awaitFirstRecord(started, app.speech, app.config.queueTimeoutS);
    const end = await awaitEnd(first, started.stream);
    const file = app.hub.subscribe(started.job.streamKey, '0-0', { mustExist: true });
    reply.raw.once('close', () => file.close());
    const info = FORMAT_INFO[body.format];
    return reply
      .type(info.contentType)
      .header('content-length', end.bytes)
      .header('content-disposition', `attachment; filename="${started.jobId}.${info.extension}"`)
      .header('x-job-id', started.jobId)
      .header('x-chorus-engine', started.job.engine)
      .header('x-audio-duration', end.durationS.toFixed(3))
      .send(Readable.from(replayFile(file, end, body.format === 'wav'), { objectMode: false }));
  });

  /**
   * SSE with JSON events. A disconnect does not cancel this job: the client may resume it from
   * GET /api/jobs/{id}/events with Last-Event-ID while the stream is retained.
   */
  app.post('/api/generate_tts/stream', {
    schema: {
      tags: ['legacy'],
      summary: 'Synthesize as Server-Sent Events',
      description: 'A disconnect does not cancel the job: resume from GET /api/jobs/{job_id}/events with Last-Event-ID.',
      body: schema,
      response: {
        200: {
          description: 'JSON events, one per `data:` line, each with `id: <seq>`.',
          headers: responseHeaders('x-request-id', 'x-job-id', 'x-chorus-engine'),
          content: { 'text/event-stream': { schema: LegacyStreamEvent } },
        },
        ...errorResponses(...GENERATE_ERRORS),
      },
    },
  }, async (request, reply) => {
    const body = request.body;
    const started = await start(body, request, 'legacy_sse');
    reply.raw.once('close', () => started.stream.close());
    // Validation and failures before the first chunk are plain JSON errors, not a stream.
    const first = await awaitFirstRecord(started, app.speech, app.config.queueTimeoutS);
    reply
      .type('text/event-stream; charset=utf-8')
      .header('cache-control', 'no-store')
      .header('x-accel-buffering', 'no')
      .header('x-job-id', started.jobId)
      .header('x-chorus-engine', started.job.engine);
    const labels = { route: 'legacy_sse', format: body.format, model: started.job.model };
    return reply.send(
      Readable.from(
        legacySse(
          withFirst(first, started.stream),
          { jobId: started.jobId, format: body.format, sampleRate: OUTPUT_SAMPLE_RATE },
          {
            onFirstAudio: () => app.metrics.ttfb.observe(labels, (performance.now() - request.startedAt) / 1000),
            onError: (code) => app.metrics.streamFailures.inc({ code }),
          },
        ),
      ),
    );
  });
};
