import type { EnvReader } from './config';

/** Settings every Sluice service reads the same way. */
export interface ServiceSettings {
  /** SLUICE_ENV: the `env` field of every log line. */
  readonly env: string;
  readonly logLevel: string;
  readonly databaseUrl: string;
  /** DB_SCHEMAS: schemas exposed through the APIs. */
  readonly schemas: readonly string[];
  readonly maxMessageBytes: number;
  readonly shutdownGraceMs: number;
}

/**
 * Reads SLUICE_ENV, LOG_LEVEL, DATABASE_URL (required), DB_SCHEMAS, MAX_MESSAGE_BYTES and
 * SHUTDOWN_GRACE_MS through a service's EnvReader; problems are recorded on the reader.
 */
export function readServiceSettings(r: EnvReader): ServiceSettings {
  const databaseUrl = r.url('DATABASE_URL');
  if (!databaseUrl) r.problem('DATABASE_URL is required (npm start sets it to the embedded PostgreSQL)');
  return {
    env: r.string('SLUICE_ENV', 'local'),
    logLevel: r.oneOf('LOG_LEVEL', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], 'info'),
    databaseUrl: databaseUrl ?? '',
    schemas: r.list('DB_SCHEMAS', ['public']),
    maxMessageBytes: r.int('MAX_MESSAGE_BYTES', 4 * 1024 * 1024, { min: 1024 }),
    shutdownGraceMs: r.int('SHUTDOWN_GRACE_MS', 10_000),
  };
}
