import type { EnvReader } from '@sluice/core';

/** Pool settings every service shares (DB_POOL_*, DB_PREPARED_STATEMENTS). */
export interface PoolSettings {
  readonly max: number;
  readonly min: number;
  readonly idleTimeoutMs: number;
  readonly maxLifetimeSeconds: number;
  readonly acquireTimeoutMs: number;
  readonly preparedStatements: number;
}

/** Reads the pool settings through a service's EnvReader; problems are recorded on the reader. */
export function readPoolSettings(r: EnvReader, defaults: { max?: number } = {}): PoolSettings {
  const settings = {
    max: r.int('DB_POOL_MAX', defaults.max ?? 10, { min: 1, max: 1000 }),
    min: r.int('DB_POOL_MIN', 0, { min: 0, max: 1000 }),
    idleTimeoutMs: r.int('DB_POOL_IDLE_TIMEOUT_MS', 30_000),
    maxLifetimeSeconds: r.int('DB_POOL_MAX_LIFETIME_S', 1800),
    acquireTimeoutMs: r.int('DB_POOL_ACQUIRE_TIMEOUT_MS', 5_000, { min: 1 }),
    preparedStatements: r.int('DB_PREPARED_STATEMENTS', 200, { max: 10_000 }),
  };
  if (settings.min > settings.max) r.problem('DB_POOL_MIN must not exceed DB_POOL_MAX');
  return settings;
}
