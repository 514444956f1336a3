import type { EnvReader } from '@sluice/core';
import { type BreakerSettings, DEFAULT_BREAKER_SETTINGS } from './breaker';

/** Pool settings every service shares (DB_POOL_*, DB_PREPARED_STATEMENTS, DB_BREAKER_*). */
export interface PoolSettings {
  readonly max: number;
  readonly min: number;
  readonly idleTimeoutMs: number;
  readonly maxLifetimeSeconds: number;
  readonly acquireTimeoutMs: number;
  readonly preparedStatements: number;
  /**
   * PostgreSQL ends a session left idle inside a transaction this long (0: never). A backstop:
   * the services release connections themselves (stream stall timeout, statement timeouts).
   */
  readonly idleInTransactionTimeoutMs: number;
  /** The pool's circuit breaker: pass to the Database (DatabaseOptions.breaker). */
  readonly breaker: BreakerSettings;
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
    idleInTransactionTimeoutMs: r.int('DB_IDLE_IN_TRANSACTION_TIMEOUT_MS', 60_000, { max: 2_147_483_647 }),
    breaker: {
      failures: r.int('DB_BREAKER_FAILURES', DEFAULT_BREAKER_SETTINGS.failures, { max: 1000 }),
      resetMs: r.int('DB_BREAKER_RESET_MS', DEFAULT_BREAKER_SETTINGS.resetMs, { min: 10, max: 600_000 }),
    },
  };
  if (settings.min > settings.max) r.problem('DB_POOL_MIN must not exceed DB_POOL_MAX');
  return settings;
}

/**
 * The connection string a service's pool uses: `connectionString` with the session settings of
 * `settings` added as startup parameters (node-postgres sends `idle_in_transaction_session_timeout`
 * from the URL at connect, next to the pool's own `options`, which a URL `options` would
 * replace). A value the URL already sets wins, so an operator can still override it there.
 */
export function poolConnectionString(connectionString: string, settings: PoolSettings): string {
  const url = new URL(connectionString);
  if (
    settings.idleInTransactionTimeoutMs > 0 &&
    !url.searchParams.has('idle_in_transaction_session_timeout')
  ) {
    url.searchParams.set('idle_in_transaction_session_timeout', String(settings.idleInTransactionTimeoutMs));
  }
  return url.toString();
}
