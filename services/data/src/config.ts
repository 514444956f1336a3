import { deepFreeze, type Env, EnvReader } from '@sluice/core';

/** Everything the data service reads from its environment, validated and frozen at startup. */
export interface DataConfig {
  readonly env: string;
  readonly logLevel: string;
  /** host:port the gRPC server listens on. */
  readonly grpcAddress: string;
  readonly databaseUrl: string;
  readonly pool: {
    readonly max: number;
    readonly min: number;
    readonly idleTimeoutMs: number;
    readonly maxLifetimeSeconds: number;
    readonly acquireTimeoutMs: number;
    readonly preparedStatements: number;
  };
  readonly schemas: readonly string[];
  readonly auth: {
    readonly jwtSecret: string | undefined;
    readonly jwksUrl: string | undefined;
    readonly audience: string | undefined;
    readonly issuer: string | undefined;
    readonly clockToleranceSeconds: number;
    readonly allowAnonymous: boolean;
    readonly anonRole: string;
    readonly defaultRole: string;
    readonly allowedRoles: readonly string[];
  };
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
  const anonRole = r.string('DB_ANON_ROLE', 'anon');
  const defaultRole = r.string('DB_DEFAULT_ROLE', 'authenticated');
  const allowedRoles = r.list('DB_ROLES', ['anon', 'authenticated', 'service_role']);
  for (const role of [anonRole, defaultRole]) {
    if (!allowedRoles.includes(role)) r.problem(`DB_ROLES must include ${role}`);
  }
  if (allowedRoles.some((role) => /^(postgres|pg_)/.test(role)))
    r.problem('DB_ROLES must not list postgres or pg_* roles');
  const config: DataConfig = {
    env: r.string('SLUICE_ENV', 'local'),
    logLevel: r.oneOf('LOG_LEVEL', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], 'info'),
    grpcAddress: r.string('DATA_GRPC_ADDRESS', '127.0.0.1:50051'),
    databaseUrl: databaseUrl ?? '',
    pool: {
      max: r.int('DB_POOL_MAX', 10, { min: 1, max: 1000 }),
      min: r.int('DB_POOL_MIN', 0, { min: 0, max: 1000 }),
      idleTimeoutMs: r.int('DB_POOL_IDLE_TIMEOUT_MS', 30_000),
      maxLifetimeSeconds: r.int('DB_POOL_MAX_LIFETIME_S', 1800),
      acquireTimeoutMs: r.int('DB_POOL_ACQUIRE_TIMEOUT_MS', 5_000, { min: 1 }),
      preparedStatements: r.int('DB_PREPARED_STATEMENTS', 200, { max: 10_000 }),
    },
    schemas: r.list('DB_SCHEMAS', ['public']),
    auth: {
      jwtSecret: r.string('JWT_SECRET'),
      jwksUrl: r.url('JWKS_URL'),
      audience: r.string('JWT_AUDIENCE'),
      issuer: r.string('JWT_ISSUER'),
      clockToleranceSeconds: r.int('JWT_CLOCK_TOLERANCE_S', 30, { max: 600 }),
      allowAnonymous: r.bool('ALLOW_ANONYMOUS', true),
      anonRole,
      defaultRole,
      allowedRoles,
    },
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
  const secret = config.auth.jwtSecret;
  if (secret !== undefined && secret.length < 32) r.problem('JWT_SECRET must be at least 32 characters');
  if (config.pool.min > config.pool.max) r.problem('DB_POOL_MIN must not exceed DB_POOL_MAX');
  r.done();
  return deepFreeze(config);
}
