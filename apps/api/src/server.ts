import { ConfigError, loadApiConfig, type ApiConfig } from '@chorus/shared';
import { buildApp } from './app.ts';

let config: ApiConfig;
try {
  config = loadApiConfig();
} catch (err) {
  console.error(err instanceof ConfigError ? err.message : err);
  process.exit(2);
}

const app = await buildApp(config);

process.on('uncaughtException', (err) => {
  app.log.fatal({ err }, 'uncaught exception');
  process.exit(1);
});

await app.listen({ host: config.host, port: config.port });

let stopping = false;
/**
 * SIGTERM: readiness fails first (/readyz 503) and new requests get a JSON 503 `shutting_down`, while we keep
 * listening until the streams in flight have finished; then close and exit 0. SHUTDOWN_GRACE_S bounds the
 * whole thing: fastify.close() alone would also wait for idle keep-alive sockets.
 */
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  app.draining = true;
  app.log.info({ signal, streams: app.hub.size }, 'shutting down: readiness off, finishing in-flight streams');
  const timer = setTimeout(() => {
    app.log.warn({ streams: app.hub.size }, 'grace period over; exiting with streams still open');
    process.exit(0);
  }, config.shutdownGraceS * 1000);
  timer.unref();
  while (app.hub.size > 0) await new Promise((r) => setTimeout(r, 100));
  await app.close();
  app.log.info('api stopped');
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
