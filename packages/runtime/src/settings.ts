import { type AuthSettings, readAuthSettings } from '@sluice/auth';
import { type EnvReader, readServiceSettings, type ServiceSettings } from '@sluice/core';
import { type PoolSettings, readPoolSettings } from '@sluice/db';
import {
  type LogSettings,
  readLogSettings,
  readTracingSettings,
  type TracingSettings,
} from '@sluice/observability';

/** The settings every gRPC service reads the same way (each service's config extends these). */
export interface GrpcServiceSettings extends ServiceSettings {
  /** host:port the gRPC server listens on (port 0: any free port). */
  readonly grpcAddress: string;
  /**
   * DATABASE_SESSION_URL: a direct connection (not through a transaction-mode pooler such as
   * PgBouncer) for the sessions that LISTEN — the catalog's reload after DDL, the events feed's
   * wake-ups. Defaults to DATABASE_URL.
   */
  readonly sessionDatabaseUrl: string;
  readonly pool: PoolSettings;
  readonly auth: AuthSettings;
  /** LOKI_*: where log lines are shipped besides stdout. */
  readonly log: LogSettings;
  /** OTEL_*: traces (off unless an OTLP endpoint is set). */
  readonly tracing: TracingSettings;
}

/**
 * Reads the shared settings through a service's EnvReader: SLUICE_ENV, LOG_LEVEL, DATABASE_URL,
 * DATABASE_SESSION_URL, DB_SCHEMAS, MAX_MESSAGE_BYTES, SHUTDOWN_GRACE_MS, the service's listen address, DB_POOL_*,
 * the JWT settings, LOKI_* and OTEL_*. Problems are recorded on the reader.
 */
export function readGrpcServiceSettings(
  r: EnvReader,
  listen: { readonly variable: string; readonly fallback: string },
): GrpcServiceSettings {
  const service = readServiceSettings(r);
  return {
    ...service,
    sessionDatabaseUrl: r.url('DATABASE_SESSION_URL') ?? service.databaseUrl,
    grpcAddress: r.string(listen.variable, listen.fallback),
    pool: readPoolSettings(r),
    auth: readAuthSettings(r),
    log: readLogSettings(r),
    tracing: readTracingSettings(r),
  };
}
