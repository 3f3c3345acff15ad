import type { FastifyPluginAsync } from 'fastify';

export const healthRoutes: FastifyPluginAsync = async (app) => {
  // Probes and scrapes arrive every few seconds from every replica: keep them out of the info-level request log.
  app.get('/healthz', { config: { auth: 'public' }, logLevel: 'warn' }, async () => ({ status: 'ok' }));

  /** Ready = not draining, Redis answers, and at least one live worker. */
  app.get('/readyz', { config: { auth: 'public' } }, async (_request, reply) => {
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

  app.get('/metrics', { config: { auth: 'metrics' }, logLevel: 'warn' }, async (_request, reply) => {
    app.metrics.activeStreams.set(app.hub.size);
    const text = await app.metrics.registry.metrics();
    return reply.type(app.metrics.registry.contentType).send(text);
  });
};
