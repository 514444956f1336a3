import { type AuthSettings, readAuthSettings } from '@sluice/auth';
import { deepFreeze, type Env, EnvReader } from '@sluice/core';
import { type PoolSettings, readPoolSettings } from '@sluice/db';

/** Everything the data service reads from its environment, validated and frozen at startup. */
export interface DataConfig {
  readonly env: string;
  readonly logLevel: string;
  /** host:port the gRPC server listens on. */
  readonly grpcAddress: string;
  readonly databaseUrl: string;
  readonly pool: PoolSettings;
  readonly schemas: readonly string[];
  readonly auth: AuthSettings;
  readonly limits: {
    readonly defaultLimit: number;
    readonly maxRows: number;
    readonly estimateThreshold: number;
    readonly statementTimeoutMs: number;
    readonly maxMessageBytes: number;
    readonly streamChunkRows: number;
  };
  readonly shutdownGraceMs: number;
}

/**
 * Reads the data service's configuration. Every variable is documented in the README
 * ("Configuration"); a bad value is reported with all the others, at startup.
 *
 * @throws ConfigError listing every problem.
 */
export function loadDataConfig(env: Env): DataConfig {
  const r = new EnvReader(env);
  const databaseUrl = r.url('DATABASE_URL');
  if (!databaseUrl) r.problem('DATABASE_URL is required (npm start sets it to the embedded PostgreSQL)');
  const config: DataConfig = {
    env: r.string('SLUICE_ENV', 'local'),
    logLevel: r.oneOf('LOG_LEVEL', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], 'info'),
    grpcAddress: r.string('DATA_GRPC_ADDRESS', '127.0.0.1:50051'),
    databaseUrl: databaseUrl ?? '',
    pool: readPoolSettings(r),
    schemas: r.list('DB_SCHEMAS', ['public']),
    auth: readAuthSettings(r),
    limits: {
      defaultLimit: r.int('DEFAULT_LIMIT', 100, { min: 1 }),
      maxRows: r.int('MAX_ROWS', 1000, { min: 1 }),
      estimateThreshold: r.int('COUNT_ESTIMATE_THRESHOLD', 10_000),
      statementTimeoutMs: r.int('STATEMENT_TIMEOUT_MS', 10_000, { min: 1 }),
      maxMessageBytes: r.int('MAX_MESSAGE_BYTES', 4 * 1024 * 1024, { min: 1024 }),
      streamChunkRows: r.int('STREAM_CHUNK_ROWS', 500, { min: 1, max: 100_000 }),
    },
    shutdownGraceMs: r.int('SHUTDOWN_GRACE_MS', 10_000),
  };
  r.done();
  return deepFreeze(config);
}
