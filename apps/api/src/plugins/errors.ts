import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import fp from 'fastify-plugin';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ChorusError, errorEnvelope, type ErrorName } from '@chorus/shared';
import { RequestValidationError, toValidationError } from './openapi.ts';

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
const REDIS_DOWN = /enableOfflineQueue|Connection is closed|ECONNREFUSED|ETIMEDOUT|MaxRetriesPerRequest|Reached the max retries|connect ETIMEDOUT|Stream isn't writeable|Command timed out|LOADING|READONLY|MASTERDOWN|Failed to refresh slots|CLUSTERDOWN|TRYAGAIN|Too many Cluster redirections|Cluster isn't ready|Cluster is ended/i;

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
      // A declared schema refused the request: the same 400 the route would have given parsing it itself.
      const error = err instanceof RequestValidationError ? toValidationError(err, request) : toChorusError(err);
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

/**
 * Fastify's `frameworkErrors`: failures found while routing, before any hook runs (a malformed URL such as
 * `/v1/%zz`, a path parameter longer than maxParamLength), in the envelope instead of Fastify's own JSON.
 */
export function frameworkErrorHandler(err: FastifyError, request: FastifyRequest, reply: FastifyReply) {
  const error =
    err.code === 'FST_ERR_BAD_URL'
      ? new ChorusError('TTS_ERR_VALIDATION', 'The request URL is malformed (bad percent-encoding).')
      : err.code === 'FST_ERR_MAX_PARAM_LENGTH'
        ? new ChorusError('TTS_ERR_URI_TOO_LONG', 'A path parameter of the request URL is too long.')
        : toChorusError(err);
  request.log.info({ code: error.errorName }, error.message);
  reply.header('x-request-id', request.id);
  return sendError(reply, error);
}

/**
 * Node's `clientError`: requests Node itself refuses (request timeout, oversized headers, unparsable HTTP) never
 * reach Fastify. Answered on the socket with a full HTTP/1.1 response carrying the envelope, as Node does with
 * its plain one: only when no response to this connection has started, then the connection is closed.
 */
export function clientErrorHandler(this: FastifyInstance, err: NodeJS.ErrnoException, socket: Socket) {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const error =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? new ChorusError('TTS_ERR_REQUEST_TIMEOUT', 'The request was not received in time.')
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? new ChorusError('TTS_ERR_HEADERS_TOO_LARGE', 'The request headers are too large.')
        : new ChorusError('TTS_ERR_VALIDATION', 'The request is not valid HTTP.');
  this.log.info({ code: error.errorName, err: err.code }, error.message);
  const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (socket.writable && !inFlight?.headersSent) {
    const body = JSON.stringify(error.toEnvelope());
    socket.end(
      `HTTP/1.1 ${error.status} ${STATUS_CODES[error.status]}\r\n` +
        'Content-Type: application/json; charset=utf-8\r\n' +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
    // A client that keeps sending and never reads must not hold the socket open.
    setTimeout(() => socket.destroy(), 1000).unref();
  } else {
    socket.destroy();
  }
}

/**
 * @fastify/cors answers an OPTIONS request that is not a CORS preflight (no Origin or no
 * Access-Control-Request-Method) with a plain-text 400; this hook, registered before it, answers it with the
 * envelope instead.
 */
export async function preflightCheck(request: FastifyRequest, reply: FastifyReply) {
  if (request.method !== 'OPTIONS') return;
  if (request.headers.origin && request.headers['access-control-request-method']) return;
  return sendError(
    reply,
    new ChorusError(
      'TTS_ERR_VALIDATION',
      'OPTIONS is only answered as a CORS preflight: send Origin and Access-Control-Request-Method.',
    ),
  );
}

export { errorEnvelope };
