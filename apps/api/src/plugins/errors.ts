import fp from 'fastify-plugin';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { ChorusError, errorEnvelope, type ErrorName } from '@chorus/shared';

/** Fastify's own failures (body parsing, limits) mapped to our catalogue. */
const FASTIFY_CODES: Record<string, ErrorName> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'TTS_ERR_PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'TTS_ERR_UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'TTS_ERR_VALIDATION',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'TTS_ERR_INVALID_JSON',
  FST_ERR_CTP_INVALID_JSON_BODY: 'TTS_ERR_INVALID_JSON',
  FST_ERR_CTP_EMPTY_TYPE: 'TTS_ERR_UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_TYPE: 'TTS_ERR_UNSUPPORTED_MEDIA_TYPE',
};

/** ioredis/BullMQ messages that mean "Redis is not reachable right now". */
const REDIS_DOWN = /enableOfflineQueue|Connection is closed|ECONNREFUSED|ETIMEDOUT|MaxRetriesPerRequest|Reached the max retries|connect ETIMEDOUT|Stream isn't writeable|Command timed out|LOADING|READONLY|MASTERDOWN|Failed to refresh slots/i;

export function toChorusError(err: unknown): ChorusError {
  if (err instanceof ChorusError) return err;
  const e = err as Partial<FastifyError> & Error;
  const mapped = e.code ? FASTIFY_CODES[e.code] : undefined;
  if (mapped === 'TTS_ERR_INVALID_JSON') {
    return new ChorusError(mapped, `We could not parse the JSON body of your request. (${e.message})`);
  }
  if (mapped === 'TTS_ERR_UNSUPPORTED_MEDIA_TYPE') {
    return new ChorusError(mapped, 'Unsupported Content-Type: send application/json.');
  }
  if (mapped === 'TTS_ERR_PAYLOAD_TOO_LARGE') return new ChorusError(mapped, 'Request body is too large.');
  if (mapped) return new ChorusError(mapped, e.message);
  if (e instanceof SyntaxError && e.statusCode === 400) {
    return new ChorusError('TTS_ERR_INVALID_JSON', `We could not parse the JSON body of your request. (${e.message})`);
  }
  if (typeof e.message === 'string' && REDIS_DOWN.test(e.message)) {
    return new ChorusError('TTS_ERR_BACKEND_UNAVAILABLE', 'The service backend is unavailable; retry shortly.', {
      retryAfterS: 1,
      cause: err,
    });
  }
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return new ChorusError('TTS_ERR_VALIDATION', e.message);
  }
  return new ChorusError('TTS_ERR_INTERNAL', 'The server had an error while processing your request.', { cause: err });
}

export function sendError(reply: FastifyReply, error: ChorusError) {
  if (error.retryAfterS !== undefined) {
    reply.header('retry-after', String(Math.max(1, Math.ceil(error.retryAfterS))));
    reply.header('retry-after-ms', String(Math.round(error.retryAfterS * 1000)));
  }
  return reply.code(error.status).type('application/json; charset=utf-8').send(error.toEnvelope());
}

/** Every failure leaves as OpenAI's JSON envelope: no HTML, no stack traces. */
export const errorsPlugin = fp(
  async (app) => {
    app.setErrorHandler((err, request: FastifyRequest, reply) => {
      const error = toChorusError(err);
      if (error.status >= 500) request.log.error({ err: error.cause ?? err, code: error.errorName }, error.message);
      else request.log.info({ code: error.errorName, param: error.param }, error.message);
      request.server.metrics?.rejected.inc({ reason: error.code });
      return sendError(reply, error);
    });
    app.setNotFoundHandler((request, reply) => {
      sendError(
        reply,
        new ChorusError('TTS_ERR_NOT_FOUND', `Unknown request URL: ${request.method} ${request.url.split('?')[0]}.`),
      );
    });
  },
  { name: 'errors' },
);

export { errorEnvelope };
