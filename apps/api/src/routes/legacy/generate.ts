import { Readable } from 'node:stream';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import {
  FORMAT_INFO, legacySynthesisOptions, legacyTtsRequestSchema, OUTPUT_SAMPLE_RATE, parseOrThrow, type LegacyTtsRequest,
} from '@chorus/shared';
import { awaitFirstRecord } from '../../relay/first-record.ts';
import { awaitEnd, legacySse, replayFile, withFirst } from '../../relay/framing.ts';
import { cancelOnDisconnect } from '../openai/speech.ts';

/**
 * The service's own API, kept stable for existing integrations. It has no `model`: the speaker's engine is the
 * model. Both routes ride the same job pipeline as the OpenAI route.
 */
export const legacyGenerateRoutes: FastifyPluginAsync = async (app) => {
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
  app.post('/api/generate_tts', async (request, reply) => {
    const body = parseOrThrow(schema, request.body);
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
  app.post('/api/generate_tts/stream', async (request, reply) => {
    const body = parseOrThrow(schema, request.body);
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
