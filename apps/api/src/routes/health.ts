import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import { Liveness, Readiness } from '@chorus/shared';

export const healthRoutes: FastifyPluginAsync = async (app) => {
  // Probes and scrapes arrive every few seconds from every replica: keep them out of the info-level request log.
  app.get('/healthz', {
    config: { auth: 'public' },
    logLevel: 'warn',
    schema: { tags: ['operations'], summary: 'Liveness', response: { 200: Liveness.describe('The process is alive.') } },
  }, async () => ({ status: 'ok' }));

  /** Ready = not draining, Redis answers, and at least one live worker. */
  app.get('/readyz', {
    config: { auth: 'public' },
    schema: {
      tags: ['operations'],
      summary: 'Readiness',
      response: {
        200: Readiness.describe('Ready: not draining, Redis answers, at least one live worker.'),
        503: Readiness.describe('Not ready (the checks say why).'),
      },
    },
  }, async (_request, reply) => {
    const checks = { redis: false, workers: 0, draining: app.draining };
    try {
      await app.redis.ping();
      checks.redis = true;
      await app.directory.refresh();
      checks.workers = (await app.directory.workers()).length;
    } catch {
      // reported through the checks object
    }
    const ready = checks.redis && checks.workers > 0 && !app.draining;
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not_ready', ...checks });
  });

  app.get('/metrics', {
    config: { auth: 'metrics' },
    logLevel: 'warn',
    schema: {
      tags: ['operations'],
      summary: 'Prometheus metrics',
      description: 'Prometheus text format; who may read it follows METRICS_AUTH.',
      response: {
        200: {
          description: 'The metrics.',
          content: { 'text/plain; version=0.0.4; charset=utf-8': { schema: z.string().describe('Prometheus exposition text.') } },
        },
      },
    },
  }, async (_request, reply) => {
    app.metrics.activeStreams.set(app.hub.size);
    const text = await app.metrics.registry.metrics();
    return reply.type(app.metrics.registry.contentType).send(text);
  });
};
