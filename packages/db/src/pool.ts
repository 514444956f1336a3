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
    keepAlive: true,
    // biome-ignore lint/suspicious/noExplicitAny: `pipeline` is newer than @types/pg.
    ...({ pipeline: true } as any),
  });
  // A connection can break at any time (server shutdown, a terminated backend, the network).
  // pg-pool listens for that only while a client is idle: a checked-out client's 'error' event
  // would have no listener and crash the process. So every client gets a listener of its own for
  // its whole life; the failure reaches the caller through the query that fails, and the pool
  // discards the client when it is released (releaseClient, or pg-pool's own queryable check).
  pool.on('connect', (client) => {
    client.on('error', () => {});
  });
  // An idle client's error: the pool drops the client.
  pool.on('error', () => {});
  return pool;
}
