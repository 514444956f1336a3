import pino, { type Logger } from 'pino';

export interface LoggerConfig {
  readonly service: string;
  readonly level: string;
  /** Deployment environment label (e.g. "local", "production"). */
  readonly env: string;
}

/**
 * The process's root pino logger: JSON lines with `service` and `env` on every line and ISO
 * timestamps. Handlers get child loggers with request fields (see @sluice/grpc), never build
 * log strings themselves. Loki shipping and OpenTelemetry attach here in a later change.
 */
export function createLogger(config: LoggerConfig): Logger {
  return pino({
    level: config.level,
    base: { service: config.service, env: config.env },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  });
}
