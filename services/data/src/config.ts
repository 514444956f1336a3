import { type AuthSettings, readAuthSettings } from '@sluice/auth';
import { deepFreeze, type Env, EnvReader, readServiceSettings, type ServiceSettings } from '@sluice/core';
import { type PoolSettings, readPoolSettings } from '@sluice/db';

/** Everything the data service reads from its environment, validated and frozen at startup. */
export interface DataConfig extends ServiceSettings {
  /** host:port the gRPC server listens on. */
  readonly grpcAddress: string;
  readonly pool: PoolSettings;
  readonly auth: AuthSettings;
  readonly limits: {
    readonly defaultLimit: number;
    readonly maxRows: number;
    readonly estimateThreshold: number;
    readonly statementTimeoutMs: number;
    readonly streamChunkRows: number;
  };
}

/**
 * Reads the data service's configuration. Every variable is documented in the README
 * ("Configuration"); a bad value is reported with all the others, at startup.
 *
 * @throws ConfigError listing every problem.
 */
export function loadDataConfig(env: Env): DataConfig {
  const r = new EnvReader(env);
  const config: DataConfig = {
    ...readServiceSettings(r),
    grpcAddress: r.string('DATA_GRPC_ADDRESS', '127.0.0.1:50051'),
    pool: readPoolSettings(r),
    auth: readAuthSettings(r),
    limits: {
      defaultLimit: r.int('DEFAULT_LIMIT', 100, { min: 1 }),
      maxRows: r.int('MAX_ROWS', 1000, { min: 1 }),
      estimateThreshold: r.int('COUNT_ESTIMATE_THRESHOLD', 10_000),
      statementTimeoutMs: r.int('STATEMENT_TIMEOUT_MS', 10_000, { min: 1 }),
      streamChunkRows: r.int('STREAM_CHUNK_ROWS', 500, { min: 1, max: 100_000 }),
    },
  };
  r.done();
  return deepFreeze(config);
}
