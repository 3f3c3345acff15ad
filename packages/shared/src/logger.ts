import { pino, type Logger, type LoggerOptions } from 'pino';

/** pino options shared by the API (Fastify's logger) and the worker's root logger. */
export function loggerOptions(level: string, name: string): LoggerOptions {
  return {
    level,
    name,
    redact: ['req.headers.authorization', 'headers.authorization'],
    base: { pid: process.pid },
  };
}

export function createLogger(level: string, name: string): Logger {
  return pino(loggerOptions(level, name));
}
