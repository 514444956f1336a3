import { deepFreeze, type Env, EnvReader } from '@sluice/core';
import { type GrpcServiceSettings, readGrpcServiceSettings } from '@sluice/runtime';

/** Everything the data service reads from its environment, validated and frozen at startup. */
export interface DataConfig extends GrpcServiceSettings {
  readonly limits: {
    readonly defaultLimit: number;
    readonly maxRows: number;
    readonly estimateThreshold: number;
    readonly statementTimeoutMs: number;
    readonly streamChunkRows: number;
    /** A SelectStream whose client does not take the next message within this ends (RESOURCE_EXHAUSTED). */
    readonly streamStallTimeoutMs: number;
  };
  /**
   * Calls that hold a pooled connection for long (SelectStream, Transaction): at most this many
   * per identity (role + `sub`; service_role is bounded by the total only) and in total, so the
   * rest of the pool always remains for other callers. Beyond either: RESOURCE_EXHAUSTED at once.
   */
  readonly longCalls: {
    readonly perIdentity: number;
    readonly total: number;
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
  const base = readGrpcServiceSettings(r, { variable: 'DATA_GRPC_ADDRESS', fallback: '127.0.0.1:50051' });
  const { pool } = base;
  const streamStallTimeoutMs = r.int('STREAM_STALL_TIMEOUT_MS', 30_000, { min: 10, max: 3_600_000 });
  // Defaults: three quarters of the pool in total, a quarter of it per identity.
  const longCallsTotal = r.int('MAX_LONG_CALLS', Math.max(1, Math.floor((pool.max * 3) / 4)), { min: 1 });
  const longCalls = {
    perIdentity: r.int(
      'MAX_LONG_CALLS_PER_IDENTITY',
      Math.min(longCallsTotal, Math.max(1, Math.ceil(pool.max / 4))),
      { min: 1 },
    ),
    total: longCallsTotal,
  };
  if (longCalls.total > pool.max) r.problem('MAX_LONG_CALLS must not exceed DB_POOL_MAX');
  if (longCalls.perIdentity > longCalls.total) {
    r.problem('MAX_LONG_CALLS_PER_IDENTITY must not exceed MAX_LONG_CALLS');
  }
  if (pool.idleInTransactionTimeoutMs > 0 && pool.idleInTransactionTimeoutMs <= streamStallTimeoutMs) {
    // The backstop would end a slow but live stream's session before the stall timeout does.
    r.problem('DB_IDLE_IN_TRANSACTION_TIMEOUT_MS must be 0 or greater than STREAM_STALL_TIMEOUT_MS');
  }
  const config: DataConfig = {
    ...base,
    limits: {
      defaultLimit: r.int('DEFAULT_LIMIT', 100, { min: 1 }),
      maxRows: r.int('MAX_ROWS', 1000, { min: 1 }),
      estimateThreshold: r.int('COUNT_ESTIMATE_THRESHOLD', 10_000),
      statementTimeoutMs: r.int('STATEMENT_TIMEOUT_MS', 10_000, { min: 1 }),
      streamChunkRows: r.int('STREAM_CHUNK_ROWS', 500, { min: 1, max: 100_000 }),
      streamStallTimeoutMs,
    },
    longCalls,
  };
  r.done();
  return deepFreeze(config);
}
