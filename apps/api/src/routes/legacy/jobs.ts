import { Readable } from 'node:stream';
import { z } from 'zod';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import {
  ChorusError, decodeRecord, errorResponses, isTerminal, JobIdParams, LegacyJob, LegacyStreamEvent, OUTPUT_SAMPLE_RATE,
} from '@chorus/shared';
import { docsOnly, responseHeaders, type ZodRequestTypes } from '../../plugins/openapi.ts';
import { legacySse } from '../../relay/framing.ts';
import { watchJob } from '../../relay/job-watchdog.ts';
import { findJob, legacyJobBody, type StreamOutcome } from '../../services/job-lookup.ts';

/** Last-Event-ID, documented; checked by the route (its 400 names the header as sent). */
const EventsHeaders = docsOnly(z.object({
  'last-event-id': z.string().optional().describe('Resume after this event id (a sequence number).'),
}));

export const legacyJobRoutes: FastifyPluginAsync = async (instance) => {
  const app = instance.withTypeProvider<ZodRequestTypes>();
  /** Another key's job is the same 404 as no job at all, so job ids cannot be probed. */
  const lookup = async (id: string, request: FastifyRequest) => {
    const found = await findJob(id, app.models.engines, (e, lane) => app.speech.queue(e, lane));
    const view = found && (await app.identity.mayRead(request, found.data.owner)) ? found : undefined;
    if (!view) throw new ChorusError('TTS_ERR_NOT_FOUND', `No job with id '${id}'.`, { param: 'job_id' });
    return view;
  };

  app.get('/api/jobs/:job_id', {
    schema: {
      tags: ['legacy'],
      summary: 'A job’s status',
      params: JobIdParams,
      response: { 200: LegacyJob.describe('The job.'), ...errorResponses('TTS_ERR_NOT_FOUND') },
    },
  }, async (request) => {
    const view = await lookup(request.params.job_id, request);
    let outcome: StreamOutcome | undefined;
    if (view.status === 'queued' || view.status === 'running') {
      const [last] = await app.redis.xrevrangeBuffer(view.data.streamKey, '+', '-', 'COUNT', 1);
      if (last) {
        const record = decodeRecord(last[1]);
        if (isTerminal(record)) outcome = { record, atMs: Number(last[0].toString().split('-')[0]) };
      }
    }
    return legacyJobBody(view, outcome);
  });

  /** Replays the job's stream from the start, or resumes after `Last-Event-ID`, while it is retained. */
  app.get('/api/jobs/:job_id/events', {
    schema: {
      tags: ['legacy'],
      summary: 'A job’s events, replayed or resumed',
      description: 'Replays the job’s stream from the start, or resumes after `Last-Event-ID`, while it is retained (STREAM_TTL_S).',
      params: JobIdParams,
      headers: EventsHeaders,
      response: {
        200: {
          description: 'The same events as POST /api/generate_tts/stream (no `start` on a resume).',
          headers: responseHeaders('x-request-id', 'x-job-id'),
          content: { 'text/event-stream': { schema: LegacyStreamEvent } },
        },
        ...errorResponses('TTS_ERR_VALIDATION', 'TTS_ERR_NOT_FOUND'),
      },
    },
  }, async (request, reply) => {
    const view = await lookup(request.params.job_id, request);
    const lastEventId = request.headers['last-event-id'];
    let afterSeq: number | undefined;
    if (lastEventId !== undefined) {
      afterSeq = Number(lastEventId);
      if (!/^\d+$/.test(String(lastEventId)) || !Number.isSafeInteger(afterSeq)) {
        throw new ChorusError('TTS_ERR_VALIDATION', 'Last-Event-ID must be an event id (a sequence number).', {
          param: 'Last-Event-ID',
        });
      }
    }
    const finished = view.status !== 'queued' && view.status !== 'running';
    if (finished && (await app.redis.exists(view.data.streamKey)) === 0) {
      throw new ChorusError('TTS_ERR_NOT_FOUND', `The events of job '${view.job.id}' are no longer retained.`, {
        param: 'job_id',
      });
    }
    const stream = app.hub.subscribe(view.data.streamKey, '0-0', { mustExist: finished });
    reply.raw.once('close', () => stream.close());
    // A job that ends without a terminal record on its stream must still end this response (an error event).
    if (!finished) watchJob(stream, app.speech.queue(view.data.engine, view.data.priority), view.job.id!);
    reply
      .type('text/event-stream; charset=utf-8')
      .header('cache-control', 'no-store')
      .header('x-accel-buffering', 'no')
      .header('x-job-id', view.job.id!);
    return reply.send(
      Readable.from(
        legacySse(stream, { jobId: view.job.id!, format: view.data.format, sampleRate: OUTPUT_SAMPLE_RATE, afterSeq }),
      ),
    );
  });
};
