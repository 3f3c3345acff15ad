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
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  app.draining = true;
  app.log.info({ signal }, 'shutting down: readiness off, finishing in-flight streams');
  // fastify.close() waits for in-flight streams and idle keep-alive sockets; bound it by the grace period.
  const timer = setTimeout(() => {
    app.log.warn('grace period over; exiting with streams still open');
    process.exit(0);
  }, config.shutdownGraceS * 1000);
  timer.unref();
  await app.close();
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
