import pg from 'pg';

export interface PoolConfig {
  readonly connectionString: string;
  readonly max: number;
  readonly min: number;
  readonly idleTimeoutMs: number;
  /** Connections are closed and replaced after this long (0: never). */
  readonly maxLifetimeSeconds: number;
  /** How long a request waits for a free connection before UNAVAILABLE. */
  readonly acquireTimeoutMs: number;
  readonly applicationName: string;
}

// Every column arrives as PostgreSQL's text; wire-values.ts decodes it by type OID. This keeps
// int8/numeric exact and timestamps at microsecond precision (pg's default parsers do neither).
const RAW_TEXT_TYPES = { getTypeParser: () => (value: string) => value };

// Session settings that fix the text forms wire-values.ts parses.
const SESSION_OPTIONS = '-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=iso_8601';

/**
 * A node-postgres pool for request traffic: raw text values, fixed session settings, and
 * pipelining on, so the statements of one request go out without waiting for each other.
 */
export function createPool(config: PoolConfig): pg.Pool {
  const pool = new pg.Pool({
    connectionString: config.connectionString,
    max: config.max,
    min: config.min,
    idleTimeoutMillis: config.idleTimeoutMs,
    maxLifetimeSeconds: config.maxLifetimeSeconds,
    connectionTimeoutMillis: config.acquireTimeoutMs,
    application_name: config.applicationName,
    options: SESSION_OPTIONS,
    types: RAW_TEXT_TYPES,
    // biome-ignore lint/suspicious/noExplicitAny: `pipeline` is newer than @types/pg.
    ...({ pipeline: true } as any),
  });
  // An idle client's error (server restart, network) must not crash the process; the pool drops it.
  pool.on('error', () => {});
  return pool;
}
